"""torch.compile / torch.export of PET: the differentiable part after the graph build.

PET's forward is two steps (:mod:`torch_pet.nn.pet_graph`): eager inputs, then the
tensor-only :meth:`PET.forward_inputs <torch_pet.PET.forward_inputs>`. Here the inputs are
flattened into tensors (:func:`graph_inputs`) and :class:`PETGraphModel` — PET from
positions *plus* the integer structure (neighbour list, reverse-edge map, padded slots) to
energies, by the same ``forward_inputs`` — has no data-dependent shapes or control flow:
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
from torch_pet.nn.edge_layout import layout_from_slots
from torch_pet.nn.pet_graph import PETGraph, PETInputs, graph_edge_vectors

__all__ = ["graph_inputs", "graph_edge_vectors", "PETGraphModel", "export_pet", "ExportedPET",
           "GRAPH_INPUTS", "pet_inputs"]

#: Argument order of :meth:`PETGraphModel.forward` (the exported program's inputs).
GRAPH_INPUTS = ("species", "pos", "cell", "batch", "neighbour", "centre", "shifts", "reverse",
                "slot", "slot_mask")


def graph_inputs(model, data) -> Dict[str, Tensor]:
    """:meth:`PET.prepare <torch_pet.PET.prepare>` of ``data`` as the tensors of
    :data:`GRAPH_INPUTS` (built eagerly).

    Non-periodic structures get a zero cell (their shifts are zero). ``slot_mask`` [N, K]
    carries K, the padded per-centre width, as a shape. The two rows of ``edge_index`` are
    separate tensors (copies, not views): under torch.compile's duck shaping a [2, E] input
    (or its base) would share its size-2 dimension with B = 2, and PyG's
    ``edge_index.size(0) != 2`` check would then specialise B.

    Shapes:
        -> species [N], pos [N, 3], cell [B, 3, 3], batch [N], neighbour [E], centre [E]
        (sorted), shifts [E, 3], reverse [E], slot [E], slot_mask [N, K]
    """
    inputs = model.prepare(data)
    graph, cell = inputs.graph, inputs.cell
    if cell is None:
        cell = inputs.pos.new_zeros(inputs.num_structures, 3, 3)
    return dict(species=inputs.species, pos=inputs.pos, cell=cell, batch=inputs.batch,
                neighbour=graph.neighbour, centre=graph.centre, shifts=graph.shifts,
                reverse=graph.layout.reverse, slot=graph.layout.slot,
                slot_mask=graph.layout.mask)


def pet_inputs(species: Tensor, pos: Tensor, cell: Tensor, batch: Tensor, neighbour: Tensor,
               centre: Tensor, shifts: Tensor, reverse: Tensor, slot: Tensor,
               slot_mask: Tensor) -> PETInputs:
    """The :class:`~torch_pet.nn.pet_graph.PETInputs` that :func:`graph_inputs` flattened
    (inside a traced graph: B is ``cell``'s first size, N and K ``slot_mask``'s shape)."""
    layout = layout_from_slots(centre, slot, slot_mask, reverse)
    return PETInputs(species, pos, cell, batch, cell.shape[0],
                     PETGraph(neighbour, centre, shifts, layout))


class PETGraphModel(torch.nn.Module):
    """PET (shared weights) from positions and a prebuilt graph: no data-dependent shapes.

    Calls :meth:`PET.forward_inputs <torch_pet.PET.forward_inputs>`, the body
    ``model(data)`` runs too, on the inputs :func:`pet_inputs` rebuilds from the tensors
    of :func:`graph_inputs`.

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
        inputs = pet_inputs(species, pos, cell, batch, neighbour, centre, shifts, reverse,
                            slot, slot_mask)
        return self.model.forward_inputs(inputs, attention=self.attention)


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
