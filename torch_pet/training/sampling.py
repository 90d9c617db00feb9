"""The batches of an epoch: by structure count, or packed up to an atom budget, and shared out
to the ranks of a data-parallel run.

An epoch is a list of *steps*; a step holds one index list per rank, and its *global batch*
is their union (one optimizer step). Every rank plans the whole epoch from the same seed,
so all agree without communicating, and every structure is used exactly once per epoch.

* By count (``max_atoms=None``): the shuffled order is cut into global batches of
  ``batch_size * world_size`` structures, each split into ``world_size`` contiguous parts
  (sizes differ by at most one). The global batches do not depend on ``world_size`` at a
  fixed global batch size: N processes with ``batch_size`` b follow the same trajectory as
  one process with ``batch_size`` N*b.
* By atoms (``max_atoms``): the shuffled order is packed, in order, into batches of at most
  ``max_atoms`` atoms (and at most ``batch_size`` structures); ``world_size`` consecutive
  batches form a step, so every rank gets the same number of batches of about the same
  size. A structure larger than the budget raises (nothing is dropped).

A rank whose share of the last step is empty gets ``[]``: the Trainer gives it a stand-in
structure with weight 0, so that every rank takes part in every step.
"""
import hashlib
from typing import List, Optional, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["epoch_order", "plan_epoch", "shard", "structure_sizes", "RankBatches",
           "seeded_generator", "Batching"]

Step = List[List[int]]


def epoch_order(num: int, generator: Optional[torch.Generator]) -> List[int]:
    """The order of an epoch: ``torch.randperm(num, generator)``, or ``0..num-1`` without a
    generator (no shuffling)."""
    if generator is None:
        return list(range(num))
    return torch.randperm(num, generator=generator).tolist()


def _split(items: Sequence[int], parts: int) -> Step:
    base, extra = divmod(len(items), parts)
    out, start = [], 0
    for part in range(parts):
        stop = start + base + (part < extra)
        out.append(list(items[start:stop]))
        start = stop
    return out


def _pack(order: Sequence[int], sizes: torch.Tensor, max_atoms: int,
          batch_size: int) -> List[List[int]]:
    too_big = [i for i in order if int(sizes[i]) > max_atoms]
    if too_big:
        i = too_big[0]
        raise ValueError(f"max_atoms_per_batch={max_atoms} is smaller than structure {i} "
                         f"({int(sizes[i])} atoms; {len(too_big)} structure(s) exceed it); "
                         f"raise max_atoms_per_batch to at least {int(sizes.max())}")
    batches, current, atoms = [], [], 0
    for i in order:
        n = int(sizes[i])
        if current and (atoms + n > max_atoms or len(current) == batch_size):
            batches.append(current)
            current, atoms = [], 0
        current.append(i)
        atoms += n
    if current:
        batches.append(current)
    return batches


def plan_epoch(order: Sequence[int], batch_size: int, world_size: int = 1,
               max_atoms: Optional[int] = None,
               sizes: Optional[torch.Tensor] = None) -> List[Step]:
    """The steps of an epoch over ``order`` (see the module docstring).

    Args:
        order: structure indices in the order of the epoch.
        batch_size: structures per batch and rank (with ``max_atoms``: at most).
        world_size: number of ranks.
        max_atoms: atom budget per batch and rank (None: batches by count).
        sizes: atoms per structure [num_structures] (needed with ``max_atoms``).

    Shapes:
        returns ``steps[k][rank] -> list of indices``
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"plan_epoch: batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"plan_epoch: world_size must be an integer >= 1, got {world_size!r}")
    if max_atoms is None:
        size = batch_size * world_size
        return [_split(order[i:i + size], world_size) for i in range(0, len(order), size)]
    if not isinstance(max_atoms, int) or max_atoms < 1:
        raise ValueError(f"plan_epoch: max_atoms must be an integer >= 1, got {max_atoms!r}")
    if sizes is None:
        raise ValueError("plan_epoch: batching by atoms (max_atoms) needs the atom count of "
                         "every structure (sizes)")
    batches = _pack(order, sizes, max_atoms, batch_size)
    steps = [batches[i:i + world_size] for i in range(0, len(batches), world_size)]
    if steps and len(steps[-1]) < world_size:
        steps[-1] = steps[-1] + [[] for _ in range(world_size - len(steps[-1]))]
    return steps


def shard(num: int, rank: int, world_size: int) -> List[int]:
    """The structures ``rank`` evaluates when ``num`` are shared out (``rank::world_size``;
    no padding, so every structure is counted once)."""
    return list(range(rank, num, world_size))


def structure_sizes(dataset) -> torch.Tensor:
    """Atoms per structure of ``dataset`` [num_structures] (long): from the dataset's own
    ``structure_sizes()`` or an in-memory dataset's slices, else by reading each item."""
    if hasattr(dataset, "structure_sizes"):
        return torch.as_tensor(dataset.structure_sizes(), dtype=torch.long)
    slices = getattr(dataset, "slices", None)
    if isinstance(slices, dict) and "pos" in slices:
        counts = slices["pos"].diff()
        return counts[torch.as_tensor(list(dataset.indices()), dtype=torch.long)]
    return torch.tensor([dataset[i].num_nodes for i in range(len(dataset))], dtype=torch.long)


class RankBatches(Sampler):
    """A ``batch_sampler`` yielding one rank's batch of every step; an empty share yields
    ``[stand_in]``, the first structure of the step (the Trainer weighs it 0)."""

    def __init__(self, steps: Sequence[Step], rank: int):
        self.steps, self.rank = steps, rank

    def __iter__(self):
        for step in self.steps:
            mine = step[self.rank]
            yield mine if mine else [next(i for b in step for i in b)]

    def __len__(self) -> int:
        return len(self.steps)


def seeded_generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, *stream)`` (e.g. seed, epoch, step) by hashing,
    so that neighbouring streams are unrelated."""
    digest = hashlib.sha256(":".join(map(str, (seed,) + stream)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class Batching:
    """How a run cuts datasets into batches: the training epochs (shuffled with ``seed``,
    every rank's batches planned) and a rank's shard of an evaluation set.

    Args:
        batch_size, max_atoms: structures (at most, with ``max_atoms``) and atoms per batch
            and rank.
        rank, world_size: this process and how many there are.
        seed: shuffles epoch k with ``seeded_generator(seed, k, 0)``.
        num_workers: data-loader worker processes.
    """

    def __init__(self, batch_size: int, max_atoms: Optional[int] = None, *, rank: int = 0,
                 world_size: int = 1, seed: int = 0, num_workers: int = 0):
        self.batch_size, self.max_atoms = batch_size, max_atoms
        self.rank, self.world_size = rank, world_size
        self.seed, self.num_workers = seed, num_workers
        self._sizes, self._plan = {}, (None, None)

    def sizes(self, dataset) -> Optional[torch.Tensor]:
        """Atoms per structure (only when batching by atoms), read once per dataset."""
        if self.max_atoms is None:
            return None
        if id(dataset) not in self._sizes:
            self._sizes[id(dataset)] = (dataset, structure_sizes(dataset))
        return self._sizes[id(dataset)][1]

    def epoch(self, dataset, epoch: int) -> List[Step]:
        """The steps of training epoch ``epoch`` (the last one planned is cached)."""
        if self._plan[0] != (id(dataset), epoch):
            order = epoch_order(len(dataset), seeded_generator(self.seed, epoch, 0))
            self._plan = ((id(dataset), epoch), plan_epoch(
                order, self.batch_size, self.world_size, self.max_atoms, self.sizes(dataset)))
        return self._plan[1]

    def loader(self, dataset, steps: Sequence[Step], rank: Optional[int] = None):
        """A PyG loader of ``rank``'s (default: this rank's) batch of every step."""
        from torch_geometric.loader import DataLoader

        rank = self.rank if rank is None else rank
        return DataLoader(dataset, batch_sampler=RankBatches(steps, rank),
                          num_workers=self.num_workers)

    def shard_loader(self, dataset):
        """This rank's share of ``dataset`` in order, in batches (evaluation)."""
        mine = shard(len(dataset), self.rank, self.world_size)
        steps = plan_epoch(mine, self.batch_size, 1, self.max_atoms, self.sizes(dataset))
        return self.loader(dataset, steps, 0)
