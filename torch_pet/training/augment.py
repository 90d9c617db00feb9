"""O(3) rotational augmentation: one uniformly random rotation per structure per step.

Following PET's training recipe, each structure of a batch gets its own rotation drawn
uniformly (Haar measure) from SO(3), made improper (multiplied by -1) with probability
1/2. Positions, forces, per-structure vectors, cells and stresses are rotated together:
row vectors v -> v R^T (pos, forces, cell rows, vector targets), rank-2 tensors
T -> R T R^T (stress). Scalars (energies) are unchanged.
"""
from typing import Optional, Sequence

import torch
from torch_geometric.data import Batch


def random_rotations(num: int, *, generator: Optional[torch.Generator] = None,
                     improper_probability: float = 0.0, dtype: torch.dtype = torch.float64,
                     device=None) -> torch.Tensor:
    """``num`` Haar-random rotations (``torch_pet.testing.random_rotation``), each made
    improper (times -1) with probability ``improper_probability``.

    Shapes:
        returns [num, 3, 3]
    """
    from torch_pet.testing import random_rotation

    improper = torch.rand(num, generator=generator, dtype=torch.float64) < improper_probability
    rotations = [random_rotation(generator, dtype=torch.float64, improper=bool(flip))
                 for flip in improper]
    if not rotations:
        return torch.zeros(0, 3, 3, dtype=dtype, device=device)
    return torch.stack(rotations).to(dtype=dtype, device=device)


def rotate_batch(batch: Batch, rotations: torch.Tensor, *,
                 atom_vector_keys: Sequence[str] = ("pos", "forces"),
                 structure_vector_keys: Sequence[str] = ("cell",),
                 structure_tensor_keys: Sequence[str] = ("stress",)) -> Batch:
    """A copy of ``batch`` with structure b rotated by ``rotations[b]``; absent keys skipped.

    Shapes:
        rotations [B, 3, 3]; atom vectors [N, 3]; structure vectors [B, ..., 3]
        (cell [B, 3, 3] rows, or [B, 3]); structure tensors [B, 3, 3].
    """
    out = batch.clone()
    rotations = rotations.to(batch.pos.dtype)
    per_atom = rotations[batch.batch]
    for key in atom_vector_keys:
        if key in batch:
            out[key] = torch.einsum("nij,nj->ni", per_atom, batch[key])
    for key in structure_vector_keys:
        if key in batch:
            value = batch[key]
            flat = value.reshape(value.shape[0], -1, 3)
            out[key] = torch.einsum("bij,bkj->bki", rotations, flat).reshape(value.shape)
    for key in structure_tensor_keys:
        if key in batch:
            out[key] = rotations @ batch[key] @ rotations.transpose(-1, -2)
    return out


def augment_batch(batch: Batch, generator: Optional[torch.Generator] = None, *,
                  structure_vector_keys: Sequence[str] = ("cell",)) -> Batch:
    """Rotate every structure of ``batch`` by its own random O(3) element."""
    rotations = random_rotations(batch.num_graphs, generator=generator,
                                 improper_probability=0.5)
    return rotate_batch(batch, rotations, structure_vector_keys=structure_vector_keys)
