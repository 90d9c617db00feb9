"""Rotated copies of structures for ECSE (outputs go back with ``OutputKind.rotate``).

Row-vector convention (ECSE.md): a copy presents the backbone with the points ``X·Q``
(Q = F·A: the frame F, columns e1, e2, e3, times the fixed extra rotation A), its cell
rows as ``cell·Q``. An output y computed on ``X·Q`` is brought back to the lab frame by
rotating it with Q as its :class:`~torch_pet.outputs.OutputKind` says (scalars unchanged,
vectors ``y·Qᵀ``, rank-2 tensors ``Q·y·Qᵀ``), with any channel dims between the leading
(copy or atom) dim and the Cartesian dims.

A batch of copies is built with index operations only: copy c repeats the items
``group_ptr[g] .. group_ptr[g+1]-1`` of group ``g = copy_group[c]`` (the atoms of one
structure in structure mode, the receptive-field subgraph of one atom in atom mode).

Shapes: C copies, M copied atoms (sum of the copy sizes).
"""
from typing import NamedTuple, Optional

import torch
from torch_geometric.data import Batch, Data


__all__ = ["CopyLayout", "copy_layout", "rotated_batch",
           "copies_batch", "atom_attribute_keys"]

# Attributes never copied into the backbone input: rebuilt (pos, batch, ptr), rotated
# separately (cell, pbc) or labels the backbone must not see.
_NOT_CARRIED = {"pos", "batch", "ptr", "cell", "pbc", "energy", "forces", "stress", "virial",
                "num_nodes"}


class CopyLayout(NamedTuple):
    """Where every copied atom comes from.

    Shapes:
        copy [M] (copy of each copied atom, sorted), item [M] (its index in the group
        arrays), ptr [C+1] (first copied atom of each copy)
    """

    copy: torch.Tensor
    item: torch.Tensor
    ptr: torch.Tensor


def copy_layout(group_ptr: torch.Tensor, copy_group: torch.Tensor) -> CopyLayout:
    """Index arrays of the copies ``copy_group`` of the contiguous groups ``group_ptr``.

    Shapes:
        group_ptr [G+1], copy_group [C] -> CopyLayout (M = sum of the copies' group sizes)
    """
    start = group_ptr[copy_group]
    sizes = group_ptr[copy_group + 1] - start  # [C]
    ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    copies = torch.arange(copy_group.numel(), device=copy_group.device)
    copy = torch.repeat_interleave(copies, sizes, output_size=int(ptr[-1]))
    item = torch.arange(copy.numel(), device=copy.device) - (ptr[:-1] - start)[copy]
    return CopyLayout(copy, item, ptr)


def atom_attribute_keys(data: Data) -> list:
    """Per-atom attributes of ``data`` that the backbone copies carry (z, x, ...)."""
    num_atoms = data.pos.shape[0]
    return [key for key in data.keys()
            if key not in _NOT_CARRIED and "edge" not in key
            and isinstance(data[key], torch.Tensor) and data[key].dim() > 0
            and data[key].shape[0] == num_atoms]


def rotated_batch(
    data: Data,
    atom: torch.Tensor,
    layout: CopyLayout,
    relative_pos: torch.Tensor,
    rotation: torch.Tensor,
    cell: Optional[torch.Tensor] = None,
    pbc: Optional[torch.Tensor] = None,
    keys: Optional[list] = None,
) -> Batch:
    """The backbone input: copy c holds the points ``relative_pos·rotation[c]``.

    Per-atom attributes (``keys``, default :func:`atom_attribute_keys`) are gathered from
    ``data`` with ``atom`` and treated as invariant; ``cell`` rows are rotated with the copy.

    Shapes:
        atom [M] (original atom of each copied atom), relative_pos [M, 3],
        rotation [C, 3, 3], cell [C, 3, 3], pbc [C, 3] -> Batch with C graphs, M atoms
    """
    pos = torch.bmm(relative_pos.unsqueeze(1), rotation[layout.copy]).squeeze(1)  # [M, 3]
    return copies_batch(data, atom, layout, pos, None if cell is None else cell @ rotation,
                        pbc, keys)


def copies_batch(data: Data, atom: torch.Tensor, layout: CopyLayout, pos: torch.Tensor,
                 cell: Optional[torch.Tensor] = None, pbc: Optional[torch.Tensor] = None,
                 keys: Optional[list] = None) -> Batch:
    """The backbone input of copies whose positions (and cells) are already rotated.

    Per-atom attributes (``keys``, default :func:`atom_attribute_keys`) are gathered from
    ``data`` with ``atom`` and treated as invariant.

    Shapes:
        atom [M], pos [M, 3], cell [C, 3, 3], pbc [C, 3] -> Batch with C graphs, M atoms
    """
    attributes = {key: data[key][atom] for key in (atom_attribute_keys(data) if keys is None else keys)}
    if cell is not None:
        attributes["cell"] = cell
    if pbc is not None:
        attributes["pbc"] = pbc
    return _make_batch(pos=pos, batch=layout.copy, ptr=layout.ptr, **attributes)


@torch.compiler.disable
def _make_batch(**attributes) -> Batch:
    """``Batch(**attributes)``, built outside torch.compile graphs: dynamo cannot rebuild a
    PyG Batch created inside a graph when the backbone it is passed to breaks the graph."""
    return Batch(**attributes)
