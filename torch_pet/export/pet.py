"""torch.compile / torch.export of PET: the differentiable part after the graph build.

:class:`PETGraphModel` — PET from positions *plus* the integer structure (neighbour list,
reverse-edge map, padded slots) to energies — has no data-dependent shapes or control flow:
``torch.compile(..., fullgraph=True, dynamic=True)`` captures it in one graph, and
``torch.export`` exports it with dynamic N (atoms), E (edges), K (max neighbours) and B
(structures). Forces and stress are autograd derivatives of the exported program
(``exported.module()`` is differentiable w.r.t. ``pos`` and ``cell``). :func:`graph_inputs`
builds the integer structure eagerly (compiled C++ ops, no graph); :class:`ExportedPET`
pairs it with an exported (or compiled) :class:`PETGraphModel` into a drop-in
``model(data)``.

Shapes: N atoms, E edges, K max neighbours, B structures.
"""
from typing import Dict, Optional

import torch
from torch import Tensor

from torch_pet.nn.attention import resolve_attention
from torch_pet.nn.edge_layout import EdgeLayout, build_edge_layout
from torch_pet.nn.pet_conv import sequence_weights
from torch_pet.nn.rows import add_rows, sum_rows

__all__ = ["graph_inputs", "graph_edge_vectors", "PETGraphModel", "export_pet", "ExportedPET",
           "GRAPH_INPUTS"]

#: Argument order of :meth:`PETGraphModel.forward` (the exported program's inputs).
GRAPH_INPUTS = ("species", "pos", "cell", "batch", "neighbour", "centre", "shifts", "reverse",
                "slot", "slot_mask")


def graph_inputs(model, data) -> Dict[str, Tensor]:
    """The integer structure PET needs for ``data``, built eagerly, plus pos and cell.

    Non-periodic structures get a zero cell (their shifts are zero). ``slot_mask`` [N, K]
    carries K, the padded per-centre width, as a shape. The two rows of ``edge_index`` are
    passed as two separate tensors (copies, not views): under torch.compile's duck shaping
    a [2, E] input (or its base) would share its size-2 dimension with B = 2, and PyG's
    ``edge_index.size(0) != 2`` check would then specialise B.

    Shapes:
        -> species [N], pos [N, 3], cell [B, 3, 3], batch [N], neighbour [E], centre [E]
        (sorted), shifts [E, 3], reverse [E], slot [E], slot_mask [N, K]
    """
    from torch_pet import ops
    from torch_pet.inputs import check_graph, read_structure_index

    pos = getattr(data, "pos", None)
    species = model._species_index(getattr(data, "z", None), pos, prefix="data.")
    index = read_structure_index(data, pos)  # batch derived from ptr if dropped
    batch, num_graphs = index.batch, index.num_structures
    cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
    if getattr(data, "pet_edge_index", None) is None:
        with torch.no_grad():
            edge_index, shifts = ops.radius_graph(pos.detach(), model.cutoff, batch, cell=cell,
                                                  pbc=pbc)
    else:  # the user's neighbour list, checked as PET checks it
        edge_index, shifts = check_graph(data.pet_edge_index, getattr(data, "pet_shifts", None),
                                         pos, index, cell, pbc, model.cutoff,
                                         names=("data.pet_edge_index", "data.pet_shifts"))
    reverse = ops.reverse_edge_index(edge_index, shifts)
    layout = build_edge_layout(edge_index[1], pos.shape[0])
    if cell is None:
        cell = pos.new_zeros(num_graphs, 3, 3)
    cell = cell.reshape(-1, 3, 3).expand(num_graphs, 3, 3)  # a shared [3, 3] cell too
    return dict(species=species, pos=pos, cell=cell, batch=batch,
                neighbour=edge_index[0].clone(), centre=edge_index[1].clone(),  # not views
                shifts=shifts, reverse=reverse, slot=layout.slot,
                slot_mask=layout.mask)


def graph_edge_vectors(pos: Tensor, cell: Tensor, batch: Tensor, neighbour: Tensor,
                       centre: Tensor, shifts: Tensor) -> Tensor:
    """r_ij = pos[j] - pos[i] + shift · cell[batch[i]] for every edge, with no branch on the
    sizes (zero cells for molecules).

    Shapes:
        pos [N, 3], cell [B, 3, 3], batch [N], neighbour, centre [E], shifts [E, 3] -> [E, 3]
    """
    edge_cell = cell.index_select(0, batch.index_select(0, centre))  # [E, 3, 3]
    return pos.index_select(0, neighbour) - pos.index_select(0, centre) + torch.bmm(
        shifts.to(pos.dtype).unsqueeze(1), edge_cell).squeeze(1)


class PETGraphModel(torch.nn.Module):
    """PET (shared weights) from positions and a prebuilt graph: no data-dependent shapes.

    Mirrors :meth:`torch_pet.PET._atomic_contributions` with the edge layout assembled from
    ``slot`` and ``slot_mask`` instead of counted from the data (``tests/test_export.py``
    checks that both agree).

    Args:
        model: a :class:`~torch_pet.PET`.
        attention: "fused" (inference, single backward: forces) or "explicit" (double
            backward); default: the mode PET itself picks for inference.

    Shapes:
        see :data:`GRAPH_INPUTS` and :func:`graph_inputs` -> [B, out] (or [N, out] if
        ``model.per_atom``)
    """

    def __init__(self, model, attention: Optional[str] = None):
        super().__init__()
        self.model = model
        self.attention = attention or resolve_attention(model.attention, training=False)

    def forward(self, species: Tensor, pos: Tensor, cell: Tensor, batch: Tensor,
                neighbour: Tensor, centre: Tensor, shifts: Tensor, reverse: Tensor,
                slot: Tensor, slot_mask: Tensor) -> Tensor:
        model = self.model
        num_nodes, max_neighbours = slot_mask.shape
        edge_index = torch.stack([neighbour, centre])  # [2, E]
        vectors = graph_edge_vectors(pos, cell, batch, neighbour, centre, shifts)
        index = centre * max_neighbours + slot
        layout = EdgeLayout(centre, slot, index, index + centre + 1, None, slot_mask,
                            num_nodes, max_neighbours, reverse)

        length = vectors.norm(dim=-1)  # [E]
        cutoff_weight = model.cutoff_fn(length)  # [E]
        features = length[:, None] if model.distance_only else \
            torch.cat([vectors, length[:, None]], dim=1)  # [E, 1 or 4]
        key_weight = sequence_weights(cutoff_weight, layout)  # [N, K+1]
        message = model.neighbour_embedding(species.index_select(0, neighbour))  # [E, C]
        atomic = model.self_energies.index_select(0, species)  # [N, out]
        for k, (block, atomic_head, bond_head) in enumerate(
                zip(model.blocks, model.atomic_heads, model.bond_heads)):
            central, tokens = block(species, edge_index, features, message, cutoff_weight,
                                    layout=layout, key_weight=key_weight,
                                    attention=self.attention)
            bonds = cutoff_weight[:, None] * bond_head(tokens)  # [E, out]
            atomic = atomic + add_rows(atomic_head(central), centre, bonds)
            if k + 1 < model.num_blocks:
                message = 0.5 * (message + tokens.index_select(0, reverse))
        if model.per_atom:
            return atomic
        return sum_rows(atomic, batch, cell.shape[0])


def export_pet(model, example, *, attention: Optional[str] = None):
    """``torch.export`` a :class:`PETGraphModel` of ``model`` with dynamic N, E, K, B.

    Args:
        model: a :class:`~torch_pet.PET`.
        example: a ``Data``/``Batch`` to trace with; it needs at least 2 atoms, 2 edges
            and K >= 2 (sizes 0 and 1 are specialised by torch.export).

    Returns:
        ``torch.export.ExportedProgram``; call ``program.module()(*inputs)`` with the
        tensors of :func:`graph_inputs` in :data:`GRAPH_INPUTS` order.
    """
    inputs = graph_inputs(model, example)
    n, e, k, b = (torch.export.Dim(name, min=1) for name in ("N", "E", "K", "B"))
    shapes = dict(species={0: n}, pos={0: n}, cell={0: b}, batch={0: n}, neighbour={0: e},
                  centre={0: e}, shifts={0: e}, reverse={0: e}, slot={0: e}, slot_mask={0: n, 1: k})
    if inputs["cell"].shape[0] == 1:
        shapes["cell"] = None  # a single-structure example cannot generalise B
    args = tuple(inputs[name] for name in GRAPH_INPUTS)
    return torch.export.export(PETGraphModel(model, attention), args,
                               dynamic_shapes=tuple(shapes[name] for name in GRAPH_INPUTS))


class ExportedPET(torch.nn.Module):
    """``model(data)`` running an exported (or compiled) :class:`PETGraphModel`.

    The integer structure is built eagerly by :func:`graph_inputs`; the rest runs
    ``graph_module`` (``export_pet(...).module()`` or ``torch.compile(PETGraphModel(...))``).
    Carries the PET attributes ECSE and the calculator look for (species, cutoff,
    receptive_field, per_atom, out_channels).

    Shapes:
        data.pos [N, 3] -> [B, out] (or [N, out] if the PET is per_atom)
    """

    def __init__(self, model, graph_module):
        super().__init__()
        self.pet = model
        self.graph_module = graph_module
        self.traced_dtype = traced_dtype(graph_module)
        self.species, self.cutoff = model.species, model.cutoff
        self.receptive_field, self.out_channels = model.receptive_field, model.out_channels

    @property
    def per_atom(self) -> bool:
        """Fixed by the exported graph (read-only)."""
        return self.pet.per_atom

    def forward(self, data) -> Tensor:
        check_traced_dtype(self.traced_dtype, data.pos)
        inputs = graph_inputs(self.pet, data)
        return self.graph_module(*(inputs[name] for name in GRAPH_INPUTS))


def traced_dtype(graph_module) -> Optional[torch.dtype]:
    """The floating dtype an exported program was traced in (None for other modules, e.g.
    compiled ones, which retrace for a new dtype)."""
    if not isinstance(graph_module, torch.fx.GraphModule):
        return None
    floating = [t.dtype for t in (*graph_module.parameters(), *graph_module.buffers())
                if t.is_floating_point()]
    return floating[0] if floating else None


def check_traced_dtype(dtype: Optional[torch.dtype], pos: Tensor) -> None:
    """Exported programs are specialised to the dtype they were traced in."""
    if dtype is not None and pos.dtype != dtype:
        raise TypeError(f"this exported program was traced in {dtype} but got {pos.dtype} "
                        f"positions; export it again in {pos.dtype} (or pass {dtype} data; "
                        "PETCalculator: dtype=...)")
