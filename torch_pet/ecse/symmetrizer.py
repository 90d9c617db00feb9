"""ECSESymmetrizer: make any PyG point-cloud model exactly rotation-equivariant.

Pozdnyakov & Ceriotti, "Smooth, exact rotational symmetrization for deep learning on point
clouds", NeurIPS 2023 (arXiv:2305.19302). The backbone y_0 is evaluated on copies of the
structure rotated into an ensemble of local frames F_f (times a fixed rotation A), the
outputs are rotated back and averaged with smooth weights w_f:

.. math::
    y_S(X) = \\frac{\\sum_f w_f\\, B_f[y_0((X - x_{c_f}) F_f A)] + w_{aux}\\, y_{aux}(X)}
                  {\\sum_f w_f + w_{aux}}

where :math:`c_f` is the atom whose neighbours define F_f (centring on it makes any
backbone translation invariant) and :math:`B_f` rotates back with Q_f = F_f·A
(scalars unchanged, vectors v·Q_fᵀ, rank-2 tensors Q_f·T·Q_fᵀ). Frames, weights and
w_aux come from :func:`torch_pet.ecse.frames.ecse_frames`; y_S is exactly SO(3)
(or O(3)) equivariant, smooth and differentiable, so forces and stress follow by autograd.

Shapes: N atoms, B structures, E edges, F frames, C copies (one per frame), M copied atoms.
"""
import math
from typing import Callable, Optional

import torch
from torch_geometric.data import Batch, Data

from torch_pet.backbone import backbone_info
from torch_pet.ecse.average import CopyChunk, accumulate, average_copies, frame_rotations, normalise
from torch_pet.ecse.chunks import ChunkRunner, chunk_bounds
from torch_pet.ecse.frames import ECSEFrames, ecse_frames
from torch_pet.ecse.options import FrameOptions
from torch_pet.ecse.rotate import atom_attribute_keys, copies_batch, copy_layout, rotated_batch
from torch_pet.ecse.structures import Structures, read_structures
from torch_pet.inputs import with_structure_index
from torch_pet.ops.radius_graph import edge_vectors, radius_graph
from torch_pet.outputs import KindLike, OutputKind
from torch_pet.rotations import random_rotation

__all__ = ["ECSESymmetrizer"]

#: R_out never exceeds this (Å), whatever the backbone's cutoff.
MAX_OUTER_CUTOFF = 10.0
_EXTRA_ROTATION_SEED = 230519302


def call_model(model: torch.nn.Module, data: Batch) -> torch.Tensor:
    """Default adapter: ``model(data)``."""
    return model(data)


class ECSESymmetrizer(torch.nn.Module):
    """Exact rotational symmetrization (ECSE) of any backbone that takes PyG ``Data``.

    Args:
        model: the backbone y_0; ``model(batch)`` (or ``adapter(model, batch)``) on a
            :class:`~torch_geometric.data.Batch` of rotated copies returns one row per copy
            (per-structure output) or per copied atom (``per_atom``). The copies carry
            ``pos``, ``batch``, ``ptr``, every per-atom attribute of the input (``z``,
            ``x``, ...: treated as invariant) and, in structure mode, the rotated ``cell``
            and ``pbc``; edge attributes are not carried (the backbone builds its graph).
        output: how the output transforms: an :class:`~torch_pet.outputs.OutputKind` or
            its string, "scalar", "vector" (last dim 3) or "tensor" (last dims 3, 3);
            channel dims may sit between the first and the Cartesian dims. Stored as the
            kind of the wrapper's output (``self.output``, per atom if ``per_atom``).
        per_atom: structure mode: the backbone returns (and the wrapper returns) per-atom
            rows. Atom mode: the backbone must return per-atom rows; the wrapper returns the
            symmetrized atomic outputs (``per_atom=True``) or their sum per structure.
        mode: "structure" (the paper's: frames pooled over the structure, the whole
            structure rotated; O(N^2)) or "atom" (every atom's output symmetrized with its
            own frames on its receptive-field subgraph, periodic images as explicit atoms,
            non-periodic copies; linear scaling).
        cutoff: R_out of the frames; default ``min(model.cutoff, 10)``.
        receptive_field: atom mode: radius of the subgraph that determines an atom's
            output; default ``model.receptive_field`` (PET: num_blocks x cutoff).
        aux_model: intrinsically invariant/equivariant model blended in for degenerate
            geometries (w_aux > 0: dimers, linear molecules, single atoms), e.g.
            ``PET(distance_only=True)``; same call and output layout as the backbone
            (per-atom in atom mode), evaluated on the input itself.
        o3: also average over mirror frames (reflection invariance).
        extra_rotation: present the backbone with X·F·A for a fixed random rotation A
            (buffer ``extra_rotation``) instead of axis-aligned inputs.
        chunk_size: at most this many atoms per backbone call (copies are never split; a
            copy larger than chunk_size runs alone).
        checkpoint: recompute each chunk in the backward pass instead of keeping its
            activations (memory of one chunk instead of all copies, for about one extra
            forward pass): True, False or "auto": a first, small chunk (at most
            chunk_size / 8 atoms) runs without it while the bytes its backward pass keeps
            are counted; the other chunks are checkpointed only if keeping theirs too would
            exceed ``activation_budget``.
        activation_budget: bytes of kept activations "auto" allows (default 4 GiB).
        frame_options: a :class:`~torch_pet.ecse.options.FrameOptions`, or a dict of some
            of its fields (the others keep their defaults); stored as a ``FrameOptions``.
        adapter: ``adapter(model, batch) -> Tensor`` for other call signatures, e.g.
            ``lambda m, b: m(b.x, b.pos, b.batch)``.

    Shapes:
        data.pos [N, 3] -> [B, ...] or [N, ...] (per atom), with trailing (3,) for vectors
        and (3, 3) for tensors
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        output: KindLike = "scalar",
        per_atom: bool = False,
        mode: str = "structure",
        cutoff: Optional[float] = None,
        receptive_field: Optional[float] = None,
        aux_model: Optional[torch.nn.Module] = None,
        o3: bool = False,
        extra_rotation: bool = True,
        chunk_size: int = 4096,
        checkpoint="auto",
        activation_budget: float = 4 * 2 ** 30,
        frame_options=None,
        adapter: Optional[Callable] = None,
    ):
        super().__init__()
        output = OutputKind.parse(output, "ECSESymmetrizer: output")
        per_atom = bool(per_atom) or output.per_atom
        output = output.with_per_atom(per_atom)
        if mode not in ("structure", "atom"):
            raise ValueError(f"ECSESymmetrizer: mode must be 'structure' or 'atom', got {mode!r}")
        if not (isinstance(chunk_size, int) and chunk_size > 0):
            raise ValueError(f"ECSESymmetrizer: chunk_size must be a positive int (atoms per "
                             f"backbone call), got {chunk_size!r}")
        frame_options = FrameOptions.coerce(frame_options)
        self.model = model
        self.aux_model = aux_model
        self.output, self.per_atom, self.mode, self.o3 = output, bool(per_atom), mode, bool(o3)
        if checkpoint not in (True, False, "auto"):
            raise ValueError(f"ECSESymmetrizer: checkpoint must be True, False or 'auto', got {checkpoint!r}")
        if not activation_budget >= 0:
            raise ValueError(f"ECSESymmetrizer: activation_budget must be >= 0 bytes, got {activation_budget!r}")
        self.chunk_size, self.checkpoint = chunk_size, checkpoint
        self.activation_budget = float(activation_budget)
        self.frame_options = frame_options
        self.adapter = call_model if adapter is None else adapter
        self.cutoff = _outer_cutoff(model, cutoff)
        self.receptive_field = _receptive_field(model, receptive_field) if mode == "atom" else None
        if extra_rotation:
            self.register_buffer("extra_rotation", random_rotation(_EXTRA_ROTATION_SEED))
        else:
            self.register_buffer("extra_rotation", None)

    def extra_repr(self) -> str:
        return (f"output={self.output.name!r}, per_atom={self.per_atom}, mode={self.mode!r}, "
                f"cutoff={self.cutoff}, receptive_field={self.receptive_field}, o3={self.o3}, "
                f"chunk_size={self.chunk_size}")

    # -----------------------------------------------------------------------------------
    def forward(self, data: Data) -> torch.Tensor:
        structures = read_structures(data)
        data = with_structure_index(data, structures.index)  # batch derived from ptr if dropped
        if self.mode == "structure":
            return self._forward_structure(data, structures)
        return self._forward_atom(data, structures)

    def frames(self, data: Data) -> ECSEFrames:
        """The weighted frames this wrapper averages over for ``data`` (pools: structures in
        structure mode, atoms in atom mode)."""
        structures = read_structures(data)
        if self.mode == "structure":
            return self._structure_frames(structures)[0]
        return self._atom_frames(structures)[0]

    # -----------------------------------------------------------------------------------
    def _structure_frames(self, s: Structures):
        edge_index, shifts = radius_graph(s.pos, self.cutoff, s.batch, **s.periodic)
        vectors = edge_vectors(s.pos, edge_index, shifts, s.cell, s.batch)
        frames = ecse_frames(vectors, edge_index[1], s.num_atoms, s.batch, s.num_structures,
                             outer_cutoff=self.cutoff, o3=self.o3, options=self.frame_options)
        return frames, frames.aux_weight * (s.counts > 0)  # empty structures need nothing

    def _forward_structure(self, data: Data, s: Structures) -> torch.Tensor:
        """Builds the copies eagerly (chunks of at most chunk_size atoms) and the backbone
        and aux calls on PyG batches, then runs the shared body
        :func:`~torch_pet.ecse.average.average_copies`."""
        frames, aux_weight = self._structure_frames(s)
        self.require_aux(aux_weight, s)
        keys = atom_attribute_keys(data)
        sizes = s.counts[frames.pool]
        bounds = self._chunks(sizes)
        chunks = [CopyChunk(a, b, copy_layout(s.ptr, frames.pool[a:b])) for a, b in bounds]
        run = ChunkRunner(self.checkpoint, len(chunks), int(sizes.sum()), self.activation_budget)

        def backbone(chunk: CopyChunk, pos, cell):
            layout, copies = chunk.layout, chunk.stop - chunk.start
            pbc = s.pbc[frames.pool[chunk.start:chunk.stop]] if s.pbc is not None else None
            inputs = copies_batch(data, layout.item, layout, pos, cell, pbc, keys)
            return self._evaluate(self.model, inputs, layout.item.numel() if self.per_atom
                                  else copies, "model", copies)

        rows = s.num_atoms if self.per_atom else s.num_structures
        aux = None
        if bool((aux_weight > 0).any()):
            def aux():
                return self._evaluate(self.aux_model, data, rows, "aux_model", s.num_structures)
        return average_copies(frames, self.extra_rotation, s.pos, s.cell, s.batch,
                              s.num_structures, chunks, backbone, output=self.output,
                              per_atom=self.per_atom, aux=aux, run=run)

    # -----------------------------------------------------------------------------------
    def _atom_frames(self, s: Structures):
        """Frames pooled per atom, and each atom's receptive-field subgraph (flat layout)."""
        radius = max(self.receptive_field, self.cutoff)
        edge_index, shifts = radius_graph(s.pos, radius, s.batch, **s.periodic)
        vectors = edge_vectors(s.pos, edge_index, shifts, s.cell, s.batch)
        length = vectors.detach().norm(dim=-1)
        inner = length < self.cutoff
        atoms = torch.arange(s.num_atoms, device=s.pos.device)
        frames = ecse_frames(vectors[inner], edge_index[1][inner], s.num_atoms, atoms,
                             s.num_atoms, outer_cutoff=self.cutoff, o3=self.o3,
                             options=self.frame_options)
        # Subgraph of atom i: i itself (relative position 0), then its neighbours (j, shift)
        # within the receptive field, at sub_ptr[i] .. sub_ptr[i+1]-1.
        field = length < self.receptive_field
        neighbour, centre, vectors = edge_index[0][field], edge_index[1][field], vectors[field]
        degree = torch.bincount(centre, minlength=s.num_atoms)
        sub_ptr = torch.cat([degree.new_zeros(1), (degree + 1).cumsum(0)])
        edge_slot = torch.arange(centre.numel(), device=centre.device) + 1 \
            + (sub_ptr[:-1] - torch.cat([degree.new_zeros(1), degree.cumsum(0)[:-1]]))[centre]
        sub_atom = torch.empty(int(sub_ptr[-1]), dtype=torch.long, device=s.pos.device)
        sub_atom[sub_ptr[:-1]] = atoms
        sub_atom[edge_slot] = neighbour
        sub_pos = vectors.new_zeros(sub_atom.numel(), 3).index_copy(0, edge_slot, vectors)
        return frames, (sub_ptr, sub_atom, sub_pos)

    def _forward_atom(self, data: Data, s: Structures) -> torch.Tensor:
        frames, (sub_ptr, sub_atom, sub_pos) = self._atom_frames(s)
        aux_weight = frames.aux_weight  # [N]
        self.require_aux(aux_weight, s)
        rotation = frame_rotations(frames.frames, self.extra_rotation)
        keys = atom_attribute_keys(data)
        total = None
        sizes = sub_ptr.diff()[frames.centre]
        chunks = self._chunks(sizes)
        run = ChunkRunner(self.checkpoint, len(chunks), int(sizes.sum()), self.activation_budget)
        for a, b in chunks:
            centre = frames.centre[a:b]  # [C]
            layout = copy_layout(sub_ptr, centre)
            atom = sub_atom[layout.item]

            def centre_output(relative, rotation, atom=atom, layout=layout):
                inputs = rotated_batch(data, atom, layout, relative, rotation, keys=keys)
                y = self._evaluate(self.model, inputs, layout.item.numel(),
                                   "model (atom mode needs per-atom outputs)",
                                   layout.ptr.numel() - 1)
                return self.output.rotate(y[layout.ptr[:-1]], rotation)  # centre rows

            y = run(centre_output, atom.numel(), sub_pos[layout.item], rotation[a:b])
            total = accumulate(total, s.num_atoms, centre, frames.weights[a:b], y)
        weight_sum = aux_weight + aux_weight.new_zeros(s.num_atoms).index_add(
            0, frames.pool, frames.weights)
        total = self._add_aux(total, data, s.num_atoms, aux_weight, s.num_structures)
        atomic = normalise(total, weight_sum)  # [N, ...]
        if self.per_atom:
            return atomic
        return atomic.new_zeros(s.num_structures, *atomic.shape[1:]).index_add(0, s.batch, atomic)

    # -----------------------------------------------------------------------------------
    def _chunks(self, sizes: torch.Tensor) -> list:
        """Frame ranges [a, b) of :func:`~torch_pet.ecse.chunks.chunk_bounds`."""
        return chunk_bounds(sizes, self.chunk_size, self.checkpoint)

    def _evaluate(self, model, inputs: Batch, rows: int, name: str,
                  structures: int) -> torch.Tensor:
        y = self.adapter(model, inputs)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"ECSESymmetrizer: the {name} must return a tensor, got {type(y).__name__}; "
                            "use adapter= to extract it")
        per_atom = self.per_atom or self.mode == "atom"
        if y.dim() == 0 or y.shape[0] != rows:
            raise ValueError(
                f"ECSESymmetrizer: the {name} returned shape {tuple(y.shape)} for {structures} "
                f"structures of {inputs.pos.shape[0]} atoms, expected {rows} rows (one per "
                f"{'atom' if per_atom else 'structure'}); set per_atom to match the model "
                "(atom mode needs per-atom outputs, e.g. PET(per_atom=True))")
        if not self.output.has_shape(y):
            raise ValueError(f"ECSESymmetrizer: output={self.output.name!r} needs the {name}'s output "
                             f"to end with dims {self.output.shape}, got shape {tuple(y.shape)}")
        return y

    def require_aux(self, aux_weight: torch.Tensor, s: Structures) -> None:
        """Raise if a pool needs the auxiliary model (w_aux > 0) and there is none."""
        if self.aux_model is not None:
            return
        needed = (aux_weight > 0).nonzero().flatten().tolist()
        if not needed:
            return
        if self.mode == "structure":
            where = f"structure(s) {needed[:10]}"
        else:
            structure = s.batch[needed[:10]].tolist()
            where = ", ".join(f"atom {a} of structure {b}" for a, b in zip(needed[:10], structure))
        raise ValueError(
            f"ECSESymmetrizer: {where} of the batch need the auxiliary model (w_aux > 0: no "
            "well-conditioned ECSE frame, e.g. a dimer, a linear molecule or an isolated atom) "
            "but aux_model is None; pass aux_model=<an intrinsically invariant/equivariant model, "
            "e.g. PET(distance_only=True)>")

    def _add_aux(self, total, data, rows, aux_weight, structures: int):
        if not bool((aux_weight > 0).any()):
            return total
        y_aux = self._evaluate(self.aux_model, data, rows, "aux_model", structures)
        return accumulate(total, rows, torch.arange(rows, device=aux_weight.device), aux_weight,
                          y_aux)


def _outer_cutoff(model, cutoff) -> float:
    if cutoff is None:
        model_cutoff = backbone_info(model).cutoff
        if model_cutoff is None:
            raise ValueError("ECSESymmetrizer: the model has no `cutoff` attribute; pass cutoff= "
                             "(R_out of the ECSE frames, in Å; at most 10 is customary)")
        cutoff = min(float(model_cutoff), MAX_OUTER_CUTOFF)
    cutoff = float(cutoff)
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"ECSESymmetrizer: cutoff must be positive and finite, got {cutoff}")
    return cutoff


def _receptive_field(model, receptive_field) -> float:
    if receptive_field is None:
        receptive_field = backbone_info(model).receptive_field
        if receptive_field is None:
            raise ValueError("ECSESymmetrizer: mode='atom' needs the backbone's receptive field "
                             "(the radius beyond which atoms cannot change an atom's output: "
                             "n_layers x cutoff); the model has no `receptive_field` attribute, "
                             "so pass receptive_field=")
    receptive_field = float(receptive_field)
    if not (math.isfinite(receptive_field) and receptive_field > 0):
        raise ValueError(f"ECSESymmetrizer: receptive_field must be positive and finite, got {receptive_field}")
    return receptive_field
