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
    """``num`` Haar-random rotation matrices, each improper with ``improper_probability``.

    QR decomposition of a Gaussian matrix with the signs of R's diagonal moved into Q gives
    a Haar-random orthogonal matrix; multiplying by its determinant makes it proper.

    Shapes:
        returns [num, 3, 3]
    """
    gaussian = torch.randn(num, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q = q * torch.linalg.det(q).view(-1, 1, 1)  # proper: det = +1
    improper = torch.rand(num, generator=generator, dtype=torch.float64) < improper_probability
    q = torch.where(improper.view(-1, 1, 1), -q, q)
    return q.to(dtype=dtype, device=device)


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
