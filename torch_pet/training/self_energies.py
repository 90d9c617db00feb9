"""Per-species self energies by linear least squares.

PET (and most ML potentials) predicts E = sum_i eps_i + sum_i e_self(Z_i); the self
energies absorb the large, composition-only part of the target so the network fits the
remainder. They solve

.. math::
    \\min_{e} \\sum_b \\Big(y_b - \\sum_s n_{bs} e_s\\Big)^2,

with n_bs the number of atoms of species s in structure b. When compositions are
collinear (every structure CH4), the minimum-norm solution is returned; the per-structure
sums, which are all that matter, are the same for every solution.
"""
from typing import Iterable, Sequence

import torch
from torch_geometric.loader import DataLoader


def species_counts(z: torch.Tensor, batch: torch.Tensor, num_structures: int,
                   species: Sequence[int]) -> torch.Tensor:
    """Atoms of each species per structure, on the device of ``z``.

    Shapes:
        z [N], batch [N] -> counts [B, num_species]
    """
    device = z.device
    lookup = torch.full((max(max(species), int(z.max()) if z.numel() else 0) + 1,), -1,
                        dtype=torch.long, device=device)
    lookup[torch.as_tensor(list(species), device=device)] = torch.arange(len(species), device=device)
    index = torch.where(z >= 0, lookup[z.clamp(min=0)], -1)  # negative z: unknown, not wrapped
    if (index < 0).any():
        unknown = sorted(set(z[index < 0].tolist()))
        raise ValueError(f"atomic numbers {unknown} are not among the model species "
                         f"{list(species)}; build the model with species that cover the data")
    counts = torch.zeros(num_structures, len(species), dtype=torch.float64, device=device)
    counts.index_put_((batch, index), torch.ones_like(batch, dtype=torch.float64),
                      accumulate=True)
    return counts


def fit_self_energies(dataset: Iterable, species: Sequence[int], key: str = "energy",
                      batch_size: int = 1024) -> torch.Tensor:
    """Least-squares self energies of ``dataset[key]`` (per-structure targets).

    Args:
        dataset: PyG dataset (or list of ``Data``) with ``z`` and the target ``key``.
        species: atomic numbers, in the order of the model's species axis.
        key: per-structure target, shape [1] or [1, C] per structure.

    Shapes:
        returns [num_species, C] (float64); species absent from the data get 0.
    """
    counts, targets = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        if key not in batch:
            raise KeyError(f"the dataset has no {key!r} to fit self energies on")
        counts.append(species_counts(batch.z, batch.batch, batch.num_graphs, species))
        targets.append(batch[key].reshape(batch.num_graphs, -1).double())
    if not counts:
        raise ValueError("cannot fit self energies on an empty dataset")
    counts, targets = torch.cat(counts), torch.cat(targets)
    present = counts.sum(0) > 0
    solution = torch.linalg.lstsq(counts[:, present], targets, driver="gelsd").solution
    out = torch.zeros(len(species), targets.shape[1], dtype=torch.float64)
    out[present] = solution
    return out
