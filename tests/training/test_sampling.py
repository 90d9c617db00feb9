"""Batches of an epoch: by count, by atom budget, shared out to ranks; and the Trainer
batching by atoms."""
import pytest
import torch
from toy_potential import ToyPotential
from torch_geometric.data import Data

from torch_pet.datasets import DistortedMethane
from torch_pet.training import Trainer, TrainingConfig
from torch_pet.training.sampling import (Batching, RankBatches, epoch_order, plan_epoch, shard,
                                         structure_sizes)


def _flat(steps):
    return [i for step in steps for batch in step for i in batch]


@pytest.mark.parametrize("num, batch_size, world", [(24, 4, 2), (23, 4, 2), (5, 2, 4),
                                                    (7, 3, 1)])
def test_count_batches_use_every_structure_once_in_global_batches(num, batch_size, world):
    order = epoch_order(num, torch.Generator().manual_seed(3))
    steps = plan_epoch(order, batch_size, world)
    assert _flat(steps) == order  # in order, nothing dropped or repeated
    assert all(len(step) == world for step in steps)
    # the global batches do not depend on how many ranks share them
    single = plan_epoch(order, batch_size * world, 1)
    assert [sum(step, []) for step in steps] == [step[0] for step in single]
    for step in steps:
        sizes = [len(b) for b in step]
        assert max(sizes) - min(sizes) <= 1


def _molecules(sizes):
    return [Data(z=torch.ones(n, dtype=torch.long), pos=torch.randn(n, 3)) for n in sizes]


def test_atom_budget_packs_batches_and_balances_ranks():
    sizes = torch.tensor([5, 30, 12, 7, 64, 3, 3, 40, 18, 9, 22, 50, 1])
    order = epoch_order(len(sizes), torch.Generator().manual_seed(0))
    steps = plan_epoch(order, batch_size=100, world_size=3, max_atoms=64, sizes=sizes)
    assert sorted(_flat(steps)) == list(range(len(sizes)))
    assert all(len(step) == 3 for step in steps)  # equal number of batches per rank
    for step in steps:
        for batch in step:
            assert int(sizes[batch].sum()) <= 64
    # structures keep the epoch order; a batch closes only when the next does not fit
    batches = [b for step in steps for b in step if b]
    for first, second in zip(batches, batches[1:]):
        assert int(sizes[first].sum() + sizes[second[0]]) > 64
    # batch_size still caps the structures per batch
    capped = plan_epoch(order, batch_size=2, max_atoms=1000, sizes=sizes)
    assert max(len(b[0]) for b in capped) == 2


def test_atom_budget_is_deterministic_with_the_seed():
    sizes = torch.randint(1, 20, (50,), generator=torch.Generator().manual_seed(1))
    plan = Batching(8, 60, rank=1, world_size=2, seed=7)
    data = _molecules(sizes.tolist())
    a, b = plan.epoch(data, 0), Batching(8, 60, rank=0, world_size=2, seed=7).epoch(data, 0)
    assert a == b and plan.epoch(data, 1) != a


def test_a_structure_larger_than_the_budget_raises():
    sizes = torch.tensor([3, 10, 4])
    with pytest.raises(ValueError, match=r"max_atoms_per_batch=8 is smaller than structure 1 "
                                         r"\(10 atoms"):
        plan_epoch([0, 1, 2], 4, max_atoms=8, sizes=sizes)
    with pytest.raises(ValueError, match="needs the atom count"):
        plan_epoch([0, 1, 2], 4, max_atoms=8)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        plan_epoch([0], 0)


def test_an_empty_share_gets_a_stand_in_and_shards_cover_everything():
    steps = plan_epoch([4, 1, 3], batch_size=1, world_size=2)  # last step: [[3], []]
    assert steps[-1] == [[3], []]
    assert list(RankBatches(steps, 1)) == [[1], [3]]  # rank 1 stands in with structure 3
    assert sorted(shard(7, 0, 3) + shard(7, 1, 3) + shard(7, 2, 3)) == list(range(7))


def test_structure_sizes_of_datasets():
    methane = DistortedMethane("val", num_structures=6)
    assert structure_sizes(methane[torch.tensor([5, 0, 2])]).tolist() == [5, 5, 5]
    assert structure_sizes(_molecules([2, 7])).tolist() == [2, 7]


def test_trainer_batches_by_atoms_without_dropping_structures(tmp_path):
    torch.manual_seed(0)
    data = []
    for n in [2, 3, 5, 4, 2, 6, 3, 5, 2, 4]:
        pos = torch.randn(n, 3) * 1.5
        data.append(Data(z=torch.tensor([6] + [1] * (n - 1)), pos=pos,
                         energy=pos.norm(dim=1).sum().reshape(1),
                         forces=torch.randn(n, 3) * 0.1))
    config = TrainingConfig(epochs=2, batch_size=32, max_atoms_per_batch=9, lr=1e-3,
                            progress=False, plot=False, checkpoints=False)
    trainer = Trainer(ToyPotential(), data, data[:3], config, str(tmp_path))
    steps = trainer.batching.epoch(data, 0)
    assert trainer.steps_per_epoch == len(steps) > 36 // 9
    history = trainer.fit()
    assert [r["train_structures"] for r in history] == [10, 10]
    with pytest.raises(ValueError, match="max_atoms_per_batch=4 is smaller than structure"):
        Trainer(ToyPotential(), data, None, config.replace(max_atoms_per_batch=4),
                str(tmp_path))
