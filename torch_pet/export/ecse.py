"""torch.export / torch.compile of a whole ECSE-symmetrized PET as one graph.

:class:`~torch_pet.ECSESymmetrizer` decides eagerly which frames exist (pair lists,
pruning), how many copies to evaluate and how to chunk them: data-dependent sizes and
control flow. Here that integer part is built eagerly by :func:`ecse_graph_inputs` (C++ ops,
no gradients), and everything differentiable — the ECSE edge vectors, the adaptive inner
cutoff R_in, frame weights and smooth pruning, the rotated copies, PET on all copies at once,
the rotation back and the weighted average with the auxiliary model — is
:class:`ECSEGraphModel`, a module with no data-dependent shapes: ``torch.export`` exports it
with every size dynamic (atoms, edges, pairs, frames, copies, structures) and
``torch.compile(..., fullgraph=True, dynamic=True)`` captures it in one graph. Forces and
stress are autograd derivatives of the exported program.

Structure mode only (the default; atom mode's receptive-field subgraphs are not covered),
PET backbones (and PET or no auxiliary model), all copies in one backbone call (no chunks
and no activation checkpointing: memory grows with frames x atoms, as with
``checkpoint=False``). The differentiable body is the eager wrapper's own
(:func:`~torch_pet.ecse.average.average_copies`). Results agree with the eager wrapper to
round-off; with pruning on,
the frames eager pruning drops keep weights <= ``weight_eps`` inside the graph
(:func:`~torch_pet.ecse.frames.prune_weights` with ``drop=False``).

Shapes: N atoms, B structures, E PET edges, E_o ECSE edges (R_out), P inner-cutoff pairs,
F candidate frames, C copies (kept frames; 2x with o3), M copied atoms, E_c copied edges,
K max neighbours of the copies.
"""
from typing import Dict, Optional

import torch
from torch import Tensor

from torch_pet.ecse.average import CopyChunk, average_copies
from torch_pet.ecse.frame_structure import FrameStructure, frame_structure, frames_from_structure
from torch_pet.ecse.rotate import CopyLayout, copy_layout
from torch_pet.ecse.structures import read_structures
from torch_pet.ecse.symmetrizer import ECSESymmetrizer, call_model
from torch_pet.export.pet import (PETGraphModel, check_traced_dtype, graph_edge_vectors,
                                  graph_inputs, traced_dtype)
from torch_pet.ops.radius_graph import edge_vectors, radius_graph

__all__ = ["ECSEGraphModel", "ecse_graph_inputs", "export_ecse", "ExportedECSE"]

_PET_GRAPH = ("neighbour", "centre", "shifts", "reverse", "slot", "slot_mask")


def _check_exportable(wrapper) -> None:
    from torch_pet.nn.pet import PET

    if not isinstance(wrapper, ECSESymmetrizer):
        raise TypeError(f"expected an ECSESymmetrizer, got {type(wrapper).__name__}")
    if wrapper.mode != "structure":
        raise ValueError("ECSE export covers mode='structure' only; atom mode (per-atom "
                         "receptive-field subgraphs) runs eagerly")
    if not isinstance(wrapper.model, PET):
        raise TypeError(f"ECSE export needs a PET backbone, got {type(wrapper.model).__name__}; "
                        "other backbones run with the eager ECSESymmetrizer")
    if wrapper.aux_model is not None and not isinstance(wrapper.aux_model, PET):
        raise TypeError("ECSE export needs a PET auxiliary model (or none), got "
                        f"{type(wrapper.aux_model).__name__}")
    if wrapper.adapter is not call_model:
        raise ValueError("ECSE export calls PET directly; a custom adapter is not supported")
    if wrapper.per_atom != wrapper.model.per_atom:
        raise ValueError(f"ECSESymmetrizer(per_atom={wrapper.per_atom}) needs a PET with "
                         f"per_atom={wrapper.per_atom}")


def ecse_graph_inputs(wrapper: ECSESymmetrizer, data) -> Dict[str, Tensor]:
    """The integer structure :class:`ECSEGraphModel` needs for ``data``, plus pos and cell.

    Builds (eagerly, validating the input as the wrapper does) PET's graph of the input,
    the ECSE neighbour list at R_out, the frame pairs (:func:`frame_structure`) and the
    layout of the rotated copies: copy c of structure b repeats b's atoms and PET edges,
    which a rotation leaves unchanged (same neighbours, same cell shifts).

    Shapes:
        -> species, batch [N], pos [N, 3], cell [B, 3, 3]; ecse_neighbour, ecse_centre
        [E_o], ecse_shifts [E_o, 3]; inner_first, inner_second [P] and candidate_first,
        candidate_second [F] (the columns of the FrameStructure pairs), kept [C];
        copy_atom, copy_index [M]; copy_neighbour, copy_centre, copy_reverse, copy_slot
        [E_c], copy_shifts [E_c, 3], copy_slot_mask [M, K]; with an auxiliary model also
        aux_neighbour, ... (its own PET graph of the input)
    """
    _check_exportable(wrapper)
    s = read_structures(data)
    base = graph_inputs(wrapper.model, data)
    inputs = {key: base[key] for key in ("species", "pos", "cell", "batch")}
    pos = s.pos.detach()

    with torch.no_grad():
        edge_index, shifts = radius_graph(pos, wrapper.cutoff, s.batch, **s.periodic)
        vectors = edge_vectors(pos, edge_index, shifts, s.cell, s.batch)
    structure = frame_structure(vectors, edge_index[1], s.num_atoms, s.batch, s.num_structures,
                                outer_cutoff=wrapper.cutoff, options=wrapper.frame_options)
    if wrapper.aux_model is None:  # the wrapper's own check: degenerate structures need it
        wrapper.require_aux(structure.aux_weight * (s.counts > 0), s)
    # Pair columns as separate tensors: a [P, 2] input would be duck-sized with B = 2 under
    # torch.compile(dynamic=True) (see graph_inputs).
    inputs.update(ecse_neighbour=edge_index[0].clone(), ecse_centre=edge_index[1].clone(),
                  ecse_shifts=shifts, inner_first=structure.inner_pairs[:, 0].clone(),
                  inner_second=structure.inner_pairs[:, 1].clone(),
                  candidate_first=structure.candidates[:, 0].clone(),
                  candidate_second=structure.candidates[:, 1].clone(), kept=structure.kept)

    # Copies: structure of each kept frame (mirrors follow their frame with o3).
    copy_structure = s.batch[edge_index[1][structure.candidates[structure.kept, 0]]]
    if wrapper.o3:
        copy_structure = copy_structure.repeat_interleave(2)
    atoms = copy_layout(s.ptr, copy_structure)  # the structures' atoms are contiguous
    edge_count = torch.bincount(s.batch[base["centre"]], minlength=s.num_structures)
    edge_ptr = torch.cat([edge_count.new_zeros(1), edge_count.cumsum(0)])
    edges = copy_layout(edge_ptr, copy_structure)  # PET edges are grouped by structure too
    structure_of_edge = copy_structure[edges.copy]
    atom_offset = (atoms.ptr[:-1][edges.copy] - s.ptr[structure_of_edge])  # [E_c]
    edge_offset = (edges.ptr[:-1][edges.copy] - edge_ptr[structure_of_edge])
    e = edges.item
    inputs.update(copy_atom=atoms.item, copy_index=atoms.copy,
                  copy_neighbour=base["neighbour"][e] + atom_offset,
                  copy_centre=base["centre"][e] + atom_offset,
                  copy_shifts=base["shifts"][e], copy_reverse=base["reverse"][e] + edge_offset,
                  copy_slot=base["slot"][e], copy_slot_mask=base["slot_mask"][atoms.item])
    if wrapper.aux_model is not None:
        aux = graph_inputs(wrapper.aux_model, data)
        inputs.update({f"aux_{key}": aux[key] for key in _PET_GRAPH})
    return inputs


class ECSEGraphModel(torch.nn.Module):
    """An ECSE-symmetrized PET from positions and the integer structure of
    :func:`ecse_graph_inputs`: no data-dependent shapes, one graph.

    Args:
        wrapper: an :class:`~torch_pet.ECSESymmetrizer` around a PET (structure mode; its
            frame options, R_out, o3, extra rotation, per_atom and output kind are used, its
            chunking is not).
        attention: PET's attention mode (see :class:`~torch_pet.export.PETGraphModel`).

    Shapes:
        inputs (a dict, see :func:`ecse_graph_inputs`) -> [B, out] (or [N, out] per atom)
    """

    def __init__(self, wrapper: ECSESymmetrizer, attention: Optional[str] = None):
        super().__init__()
        _check_exportable(wrapper)
        self.backbone = PETGraphModel(wrapper.model, attention)
        self.aux = None if wrapper.aux_model is None else PETGraphModel(wrapper.aux_model, attention)
        self.outer_cutoff, self.o3 = wrapper.cutoff, wrapper.o3
        self.frame_options = wrapper.frame_options  # a FrameOptions: nothing to coerce in the graph
        self.output, self.per_atom = wrapper.output, wrapper.per_atom
        self.register_buffer("extra_rotation", None if wrapper.extra_rotation is None
                             else wrapper.extra_rotation.clone())

    def forward(self, inputs: Dict[str, Tensor]) -> Tensor:
        species, pos, cell, batch = (inputs[k] for k in ("species", "pos", "cell", "batch"))
        num_structures = cell.shape[0]
        vectors = graph_edge_vectors(pos, cell, batch, inputs["ecse_neighbour"],
                                     inputs["ecse_centre"], inputs["ecse_shifts"])
        structure = FrameStructure(
            torch.stack([inputs["inner_first"], inputs["inner_second"]], dim=1),
            torch.stack([inputs["candidate_first"], inputs["candidate_second"]], dim=1),
            inputs["kept"])
        frames = frames_from_structure(vectors, inputs["ecse_centre"], batch, num_structures,
                                       structure, outer_cutoff=self.outer_cutoff, o3=self.o3,
                                       options=self.frame_options)
        # All copies in one chunk: copy c of structure pool[c] repeats its atoms and PET edges.
        copy, atom = inputs["copy_index"], inputs["copy_atom"]  # [M]
        chunk = CopyChunk(0, frames.frames.shape[0], CopyLayout(copy, atom, None))

        def backbone(chunk, copy_pos, copy_cell):
            return self.backbone(species.index_select(0, atom), copy_pos, copy_cell, copy,
                                 *(inputs[f"copy_{key}"] for key in _PET_GRAPH))

        aux = None
        if self.aux is not None:
            def aux():
                return self.aux(species, pos, cell, batch,
                                *(inputs[f"aux_{key}"] for key in _PET_GRAPH))
        return average_copies(frames, self.extra_rotation, pos, cell, batch, num_structures,
                              [chunk], backbone, output=self.output, per_atom=self.per_atom,
                              aux=aux)


def export_ecse(wrapper: ECSESymmetrizer, example, *, attention: Optional[str] = None):
    """``torch.export`` an :class:`ECSEGraphModel` of ``wrapper`` with every size dynamic.

    Args:
        wrapper: an :class:`~torch_pet.ECSESymmetrizer` around a PET (structure mode).
        example: a ``Data``/``Batch`` to trace with; sizes 0 and 1 are specialised by
            torch.export, so use at least two structures and an example with at least two
            frames, copies, edges and pairs of every kind (e.g. two small molecules).

    Returns:
        ``torch.export.ExportedProgram``; call ``program.module()(ecse_graph_inputs(wrapper,
        data))``, or wrap it in :class:`ExportedECSE`.
    """
    inputs = ecse_graph_inputs(wrapper, example)
    dims = {}

    def dim(name):
        if name not in dims:
            dims[name] = torch.export.Dim(name, min=1)
        return dims[name]

    first = dict(species="N", pos="N", batch="N", cell="B", ecse_neighbour="E_o",
                 ecse_centre="E_o", ecse_shifts="E_o", inner_first="P", inner_second="P", candidate_first="F",
                 candidate_second="F", kept="C",
                 copy_atom="M", copy_index="M", copy_slot_mask="M")
    shapes = {}
    for key in inputs:
        if key in first:
            shapes[key] = {0: dim(first[key])}
        elif key.startswith("copy_"):
            shapes[key] = {0: dim("E_c")}
        else:  # aux_*: the auxiliary PET's own graph
            shapes[key] = {0: dim("N")} if key == "aux_slot_mask" else {0: dim("E_a")}
    shapes["copy_slot_mask"][1] = dim("K")
    if "aux_slot_mask" in shapes:
        shapes["aux_slot_mask"][1] = dim("K_a")
    if inputs["cell"].shape[0] == 1:
        shapes["cell"] = None  # a single-structure example cannot generalise B
    return torch.export.export(ECSEGraphModel(wrapper, attention), (inputs,),
                               dynamic_shapes=(shapes,))


class ExportedECSE(torch.nn.Module):
    """``model(data)`` running an exported (or compiled) :class:`ECSEGraphModel`.

    The integer structure is built eagerly by :func:`ecse_graph_inputs`; the rest runs
    ``graph_module`` (``export_ecse(...).module()`` or ``torch.compile(ECSEGraphModel(...))``).
    Drop-in for the wrapper in ``energy_and_forces`` and the ASE calculator.

    Shapes:
        data.pos [N, 3] -> [B, out] (or [N, out] per atom)
    """

    def __init__(self, wrapper: ECSESymmetrizer, graph_module):
        super().__init__()
        _check_exportable(wrapper)
        self.wrapper = wrapper
        self.graph_module = graph_module
        self.traced_dtype = traced_dtype(graph_module)
        self.species, self.cutoff = wrapper.model.species, wrapper.model.cutoff

    @property
    def per_atom(self) -> bool:
        """Fixed by the exported graph (read-only)."""
        return self.wrapper.per_atom

    def forward(self, data) -> Tensor:
        check_traced_dtype(self.traced_dtype, data.pos)
        return self.graph_module(ecse_graph_inputs(self.wrapper, data))
