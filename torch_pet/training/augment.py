"""O(3) rotational augmentation: one uniformly random rotation per structure per step.

Following PET's training recipe, each structure of a batch gets its own rotation drawn
uniformly (Haar measure) from SO(3), made improper (multiplied by -1) with probability
1/2 (:func:`torch_pet.rotations.random_rotations`). Positions, cells and the labels are
rotated together, each label as its :class:`~torch_pet.outputs.OutputKind` says
(:func:`torch_pet.rotations.rotate_structure`): forces and vector labels v -> v·Rᵀ,
stress R·σ·Rᵀ, scalars (energies) unchanged.
"""
from typing import Mapping, Optional

import torch
from torch_geometric.data import Batch

from torch_pet.outputs import KindLike
from torch_pet.rotations import DEFAULT_LABELS, random_rotations, rotate_structure

__all__ = ["augment_batch"]


def augment_batch(batch: Batch, generator: Optional[torch.Generator] = None, *,
                  labels: Optional[Mapping[str, KindLike]] = None,
                  improper_probability: float = 0.5, draws: Optional[int] = None,
                  offset: int = 0) -> Batch:
    """A copy of ``batch`` with every structure rotated by its own random O(3) element.

    Args:
        generator: the RNG of the rotations (one draw per structure).
        labels: ``{key: kind}`` of the labels to rotate besides positions and cells (default
            :data:`~torch_pet.rotations.DEFAULT_LABELS`, forces and stress); these are
            added to the defaults, e.g. ``{"dipole": OutputKind.VECTOR}``.
        draws, offset: draw ``draws`` rotations (default B) and use rows ``offset`` to
            ``offset + B``: a rank's part of the rotations of a global batch, the same
            whatever the number of processes.

    Shapes:
        batch with B structures -> the same shapes
    """
    num = batch.num_graphs
    draws = num if draws is None else draws
    if not 0 <= offset <= draws - num:
        raise ValueError(f"augment_batch: offset={offset} and the batch's {num} structures "
                         f"must fit in draws={draws}")
    rotations = random_rotations(draws, generator=generator,
                                 improper_probability=improper_probability)[offset:offset + num]
    return rotate_structure(batch, rotations, {**DEFAULT_LABELS, **(labels or {})})
