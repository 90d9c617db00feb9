"""PET's inputs, built eagerly: the checked atoms and the integer structure of the graph.

PET runs in two steps, the same for every entry point (STYLE 13: one body per computation):

1. :meth:`PET.prepare <torch_pet.PET.prepare>` (eager: host reads, data-dependent sizes):
   :func:`species_of` checks ``z`` and ``pos``, the structure index is read
   (:mod:`torch_pet.inputs`), :func:`build_graph` builds (or checks) the neighbour list, the
   reverse-edge map and the padded edge layout -> :class:`PETInputs`.
2. :meth:`PET.forward_inputs <torch_pet.PET.forward_inputs>` (tensors only, no
   data-dependent shapes or control flow): :func:`graph_edge_vectors`, the blocks, the heads
   and the sum per structure.

``model(data)`` is step 2 applied to step 1. The export path (:mod:`torch_pet.export.pet`)
flattens :class:`PETInputs` into the tensors of an exported program and, inside it, rebuilds
them (:func:`~torch_pet.nn.edge_layout.layout_from_slots`) and calls step 2.

Shapes: N atoms, E edges, K max neighbours, B structures.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch_pet.inputs import StructureIndex, check_graph
from torch_pet.nn.edge_layout import EdgeLayout, build_edge_layout

__all__ = ["PETGraph", "PETInputs", "graph_edge_vectors", "species_of", "build_graph"]


class PETGraph(NamedTuple):
    """PET's neighbour list with its padded layout (``layout.reverse``: the reverse edges).

    Shapes:
        neighbour [E] (j), centre [E] (i, sorted), shifts [E, 3] (integer cell shifts S),
        layout :class:`~torch_pet.nn.edge_layout.EdgeLayout` (slots [E], mask [N, K])
    """

    neighbour: Tensor
    centre: Tensor
    shifts: Tensor
    layout: EdgeLayout


class PETInputs(NamedTuple):
    """Everything :meth:`PET.forward_inputs <torch_pet.PET.forward_inputs>` reads.

    Shapes:
        species [N] (index into the model's species), pos [N, 3], cell [B, 3, 3] or None
        (no periodic structure), batch [N], num_structures B (an int, or a symbolic size
        under torch.export), graph :class:`PETGraph`
    """

    species: Tensor
    pos: Tensor
    cell: Optional[Tensor]
    batch: Tensor
    num_structures: int
    graph: PETGraph


def graph_edge_vectors(pos: Tensor, cell: Optional[Tensor], batch: Tensor, neighbour: Tensor,
                       centre: Tensor, shifts: Tensor) -> Tensor:
    """r_ij = pos[j] - pos[i] + S · cell[batch[i]] for every edge, with no branch on sizes
    (``cell=None``: no periodic structure, shifts are zero).

    Shapes:
        pos [N, 3], cell [B, 3, 3], batch [N], neighbour, centre [E], shifts [E, 3] -> [E, 3]
    """
    vectors = pos.index_select(0, neighbour) - pos.index_select(0, centre)
    if cell is None:
        return vectors
    edge_cell = cell.index_select(0, batch.index_select(0, centre))  # [E, 3, 3]
    return vectors + torch.bmm(shifts.to(pos.dtype).unsqueeze(1), edge_cell).squeeze(1)


def species_of(z, pos, lookup: Tensor, species: Sequence[int], reference: Tensor,
               prefix: str = "") -> Tensor:
    """Index of each atom's species in ``species`` (``lookup[Z]``, -1 if unknown); checks
    ``z`` and ``pos`` (types, shapes, finiteness, dtype and device of ``reference``, a
    floating tensor of the model).

    Shapes:
        z [N], pos [N, 3] -> [N]
    """
    if not isinstance(z, Tensor):
        raise TypeError(f"{prefix}z must be a torch.Tensor of atomic numbers [N], got "
                        f"{type(z).__name__}")
    if not isinstance(pos, Tensor):
        raise TypeError(f"{prefix}pos must be a torch.Tensor [N, 3], got {type(pos).__name__}")
    if z.dtype.is_floating_point or z.dtype.is_complex or z.dtype == torch.bool:
        raise TypeError(f"{prefix}z must be an integer tensor of atomic numbers, got "
                        f"{z.dtype}; convert it with z.long()")
    if z.dim() != 1:
        raise ValueError(f"{prefix}z must be a 1-D tensor of atomic numbers [N], got shape "
                         f"{tuple(z.shape)}")
    if pos.dim() != 2 or pos.shape[1] != 3 or pos.shape[0] != z.shape[0]:
        raise ValueError(f"{prefix}pos must have shape [N, 3] with N = len(z) = "
                         f"{z.shape[0]}, got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise TypeError(f"{prefix}pos must be floating point (the model's "
                        f"{reference.dtype}), got {pos.dtype}")
    if pos.dtype != reference.dtype:
        raise TypeError(f"{prefix}pos is {pos.dtype} but the model is {reference.dtype}; "
                        f"convert one (model.double() or pos.to(...))")
    if z.device != pos.device or pos.device != reference.device:
        raise ValueError(f"{prefix}z is on {z.device} and {prefix}pos on {pos.device}, the "
                         f"model on {reference.device}; move them to one device")
    z = z.long()
    known = (z >= 0) & (z < lookup.shape[0])
    index = lookup[z.clamp(0, lookup.shape[0] - 1)]
    unknown = ~known | (index < 0)
    not_finite, any_unknown = torch.stack([~torch.isfinite(pos).all(),
                                           unknown.any()]).tolist()  # one host sync
    if not_finite:
        atom = int((~torch.isfinite(pos).all(1)).nonzero()[0, 0])
        raise ValueError(f"{prefix}pos contains NaN or Inf (first at atom {atom}); check the "
                         "input structure")
    if any_unknown:
        bad = sorted(set(z[unknown].tolist()))
        raise ValueError(f"{prefix}z: atomic number(s) {bad} are not among the model's "
                         f"species {list(species)}; build the model (e.g. PET(species=...)) "
                         "with species covering the data")
    return index


def build_graph(pos: Tensor, index: StructureIndex, cell: Optional[Tensor],
                pbc: Optional[Tensor], cutoff: float, edge_index: Optional[Tensor] = None,
                shifts: Optional[Tensor] = None,
                names: Tuple[str, str] = ("edge_index", "shifts")) -> PETGraph:
    """PET's graph of a structure batch: ``radius_graph`` at ``cutoff``, or the user's
    ``edge_index``/``shifts`` (checked by :func:`torch_pet.inputs.check_graph`, whose
    messages call them ``names``); then the reverse edges and the padded layout.

    Shapes:
        pos [N, 3], cell [B, 3, 3], pbc [B, 3], edge_index [2, E], shifts [E, 3]
        -> :class:`PETGraph`
    """
    from torch_pet import ops

    if edge_index is None:
        if shifts is not None:
            raise ValueError(f"{names[1]} is given without {names[0]}; pass both or neither")
        with torch.no_grad():
            edge_index, shifts = ops.radius_graph(pos.detach(), cutoff, index.batch, cell=cell,
                                                  pbc=pbc)
    else:  # checked and sorted by centre
        edge_index, shifts = check_graph(edge_index, shifts, pos, index, cell, pbc, cutoff,
                                         names=names)
    reverse = ops.reverse_edge_index(edge_index, shifts)
    layout = build_edge_layout(edge_index[1], pos.shape[0], reverse, check=False)  # sorted
    # Two rows as two tensors (copies, not views): see torch_pet.export.pet.graph_inputs.
    return PETGraph(edge_index[0].clone(), edge_index[1].clone(), shifts, layout)
