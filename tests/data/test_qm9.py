import os

import pytest
import torch
from torch_geometric.datasets import QM9
from torch_geometric.loader import DataLoader

from torch_pet.datasets.qm9 import QM9_TARGETS, QM9ToPET, load_qm9, qm9_split, qm9_target

from qm9_fixture import MOLECULES, pyg_targets


def test_fixture_provides_the_raw_files_pyg_expects(qm9_root):
    expected = QM9(qm9_root).raw_file_names  # depends on whether rdkit is installed
    for name in expected:
        assert os.path.exists(os.path.join(qm9_root, "raw", name))


def test_pyg_qm9_reads_the_fixture_and_targets_keep_pyg_units(qm9_root):
    dataset = QM9(qm9_root)
    assert len(dataset) == len(MOLECULES)
    methane = dataset[0]
    assert methane.z.tolist() == [6, 1, 1, 1, 1]
    torch.testing.assert_close(methane.y, pyg_targets(MOLECULES[0][3]))
    # U0 of CH4: -40.4789 Ha in the raw csv, eV in PyG
    assert methane.y[0, 7].item() == pytest.approx(-40.4789 * 27.211386246, rel=1e-6)


@pytest.mark.parametrize("target,key", [("U0", "energy"), ("mu", "y"), ("G_atom", "energy")])
def test_qm9_to_pet_moves_the_target_to_our_convention(qm9_root, target, key):
    dataset = QM9(qm9_root, transform=QM9ToPET(target))
    data = dataset[1]
    expected = pyg_targets(MOLECULES[1][3])[0, QM9_TARGETS[target].index]
    value = data[key]
    assert value.shape == ((1,) if key == "energy" else (1, 1))
    assert value.flatten()[0].item() == pytest.approx(expected.item())
    assert set(data.keys()) == {"z", "pos", key, "idx"}
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch[key].shape[0] == 3


def test_units_stated_for_targets():
    assert qm9_target("U0").unit == "eV" and qm9_target("U0").energy
    assert qm9_target("mu").unit == "D" and not qm9_target("mu").energy
    with pytest.raises(ValueError, match="unknown QM9 target 'U7'"):
        qm9_target("U7")


def test_standard_split_sizes_and_disjointness():
    split = qm9_split(130_831)
    assert [len(split[k]) for k in ("train", "val", "test")] == [110_000, 10_000, 10_831]
    union = torch.cat(list(split.values()))
    assert union.unique().numel() == 130_831
    torch.testing.assert_close(qm9_split(130_831)["test"], split["test"])  # fixed seed
    with pytest.raises(ValueError, match="pass smaller num_train"):
        qm9_split(6)


def test_load_qm9_on_fixture(qm9_root):
    splits = load_qm9(qm9_root, "U0", num_train=3, num_val=1)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [3, 1, 2]
    seen = sorted(int(d.idx) for part in splits.values() for d in part)
    assert seen == list(range(6))


TINY = ["--hidden-channels", "8", "--num-heads", "2", "--num-layers", "1", "--num-blocks", "1",
        "--ff-channels", "16", "--head-channels", "8", "--no-progress"]


@pytest.mark.parametrize("target,metric", [("U0", "val_energy_mae_per_atom"),
                                           ("mu", "val_target_mae")])
def test_cli_trains_pet_on_the_local_qm9(qm9_root, tmp_path, target, metric):
    import json

    from torch_pet import cli

    out = str(tmp_path / target)
    code = cli.main(["train", "--dataset", "qm9", "--data", qm9_root, "--target", target,
                     "--qm9-split", "3", "1", "--epochs", "2", "--batch-size", "2", "--lr",
                     "1e-3", "--out", out, *TINY])
    assert code == 0
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert len(records) == 2 and metric in records[-1]
    from torch_pet.checkpoint import load_model
    model = load_model(os.path.join(out, "best.pt"))
    assert model.species == [1, 6, 7, 8]
    if target == "U0":  # self energies absorb the composition (species of the 3 train ones)
        assert (model.self_energies[:, 0] <= 0).all()
        assert int((model.self_energies[:, 0] < -10).sum()) >= 2
    else:  # an intensive target: no self energies
        assert torch.equal(model.self_energies, torch.zeros_like(model.self_energies))
