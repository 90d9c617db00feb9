"""The differentiable body of ECSE's structure mode, shared by eager and exported ECSE.

.. math::
    y_S(X) = \\frac{\\sum_f w_f\\, B_f[y_0((X - x_{c_f}) Q_f)] + w_{aux}\\, y_{aux}(X)}
                  {\\sum_f w_f + w_{aux}}, \\qquad Q_f = F_f A

:func:`average_copies` computes it from given frames and copy layouts with tensor operations
only; the backbone and the auxiliary model are callables. :class:`~torch_pet.ECSESymmetrizer`
calls it with frames from :func:`~torch_pet.ecse.frames.ecse_frames`, copies in chunks and a
backbone on PyG batches; :class:`~torch_pet.export.ECSEGraphModel` with frames from
:func:`~torch_pet.ecse.frame_structure.frames_from_structure`, one chunk and PET on a copied
graph (no data-dependent shapes: one traced graph).

Shapes: N atoms, B structures, F frames (one copy each), M copied atoms.
"""
from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from torch_pet.ecse.frames import ECSEFrames
from torch_pet.ecse.rotate import CopyLayout
from torch_pet.nn.rows import add_rows, sum_rows, take_rows
from torch_pet.outputs import OutputKind

__all__ = ["CopyChunk", "average_copies", "frame_rotations", "accumulate", "normalise",
           "run_plainly"]


class CopyChunk(NamedTuple):
    """The copies of frames ``start .. stop-1``: ``layout.copy`` [M] (copy of each copied
    atom, 0-based within the chunk), ``layout.item`` [M] (its atom in the input)."""

    start: int
    stop: int
    layout: CopyLayout


def frame_rotations(frames: Tensor, extra_rotation: Optional[Tensor]) -> Tensor:
    """Q_f = F_f · A (A: the fixed extra rotation, or none).

    Shapes:
        frames [F, 3, 3], extra_rotation [3, 3] -> [F, 3, 3]
    """
    if extra_rotation is None:
        return frames
    return frames @ extra_rotation.to(frames.dtype)


def run_plainly(fn: Callable, atoms: int, *tensors):
    """A chunk runner without activation checkpointing (see
    :class:`~torch_pet.ecse.chunks.ChunkRunner`)."""
    return fn(*tensors)


def average_copies(frames: ECSEFrames, extra_rotation: Optional[Tensor], pos: Tensor,
                   cell: Optional[Tensor], batch: Tensor, num_structures,
                   chunks: Sequence[CopyChunk], backbone: Callable, *, output: OutputKind,
                   per_atom: bool, aux: Optional[Callable[[], Tensor]] = None,
                   run: Callable = run_plainly) -> Tensor:
    """y_S of a batch, structure mode (frames pooled per structure).

    Copy f presents the backbone with ``(pos[atom] - pos[c_f]) · Q_f`` and the cell
    ``cell[b_f] · Q_f``; its output is rotated back as ``output`` says, weighted by w_f and
    summed per structure (per atom with ``per_atom``); the auxiliary model is blended in
    with w_aux (structures without atoms need none), and the sum is divided by the weights.

    Args:
        frames: the weighted frames (pools: structures).
        extra_rotation: A, or None.
        chunks: the copies, in chunks covering frames 0..F-1 in order.
        backbone: ``backbone(chunk, pos, cell) -> y`` on the rotated copies of a chunk
            (pos [M, 3], cell [C, 3, 3] or None) -> [C, ...] (or [M, ...] per atom), in the
            copies' frame.
        output: the kind of the backbone's output.
        aux: ``aux() -> [B, ...]`` (or [N, ...]), the auxiliary model on the input; None:
            not needed (every w_aux is 0).
        run: ``run(fn, atoms, *tensors)`` calls ``fn(*tensors)`` for each chunk
            (:class:`~torch_pet.ecse.chunks.ChunkRunner` adds checkpointing).

    Shapes:
        pos [N, 3], cell [B, 3, 3] or None, batch [N] -> [B, ...] (or [N, ...] per atom)
    """
    rotation = frame_rotations(frames.frames, extra_rotation)  # [F, 3, 3]
    rows = pos.shape[0] if per_atom else num_structures
    total = None
    for start, stop, layout in chunks:
        structure, copy, atom = frames.pool[start:stop], layout.copy, layout.item
        relative = pos.index_select(0, atom) - pos.index_select(
            0, frames.centre[start:stop]).index_select(0, copy)  # [M, 3]
        copy_cell = None if cell is None else cell.index_select(0, structure)

        def copies_output(relative, rotation, copy_cell, chunk=CopyChunk(start, stop, layout)):
            per_copy = rotation.index_select(0, chunk.layout.copy)  # [M, 3, 3]
            rotated = torch.bmm(relative.unsqueeze(1), per_copy).squeeze(1)
            y = backbone(chunk, rotated, None if copy_cell is None else copy_cell @ rotation)
            return output.rotate(y, per_copy if per_atom else rotation)

        y = run(copies_output, atom.shape[0], relative, rotation[start:stop], copy_cell)
        weights = frames.weights[start:stop]
        if per_atom:
            total = accumulate(total, rows, atom, weights.index_select(0, copy), y)
        else:
            total = accumulate(total, rows, structure, weights, y)
    occupied = sum_rows(torch.ones_like(batch), batch, num_structures) > 0
    aux_weight = frames.aux_weight * occupied  # [B]; structures without atoms need nothing
    weight_sum = aux_weight + sum_rows(frames.weights, frames.pool, num_structures)  # [B]
    if per_atom:
        aux_weight, weight_sum = take_rows(aux_weight, batch), take_rows(weight_sum, batch)
    if aux is not None:
        total = accumulate(total, rows, torch.arange(rows, device=pos.device), aux_weight,
                           aux())
    return normalise(total, weight_sum)


def accumulate(total: Optional[Tensor], rows: int, index: Tensor, weight: Tensor,
               y: Tensor) -> Tensor:
    """total[index[k]] += weight[k] * y[k] (total created on first use).

    Shapes:
        total [rows, ...], index [K], weight [K], y [K, ...] -> [rows, ...]
    """
    weighted = y * weight.to(y.dtype).reshape(-1, *([1] * (y.dim() - 1)))
    if total is None:
        total = weighted.new_zeros(rows, *y.shape[1:])
    return add_rows(total, index, weighted)


def normalise(total: Tensor, weight_sum: Tensor) -> Tensor:
    """total / weight_sum per row; rows without any weight (empty structures) stay 0.

    Shapes:
        total [R, ...], weight_sum [R] -> [R, ...]
    """
    weight_sum = torch.where(weight_sum > 0, weight_sum, torch.ones_like(weight_sum))
    return total / weight_sum.to(total.dtype).reshape(-1, *([1] * (total.dim() - 1)))
