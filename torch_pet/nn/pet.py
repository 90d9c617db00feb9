"""PET, the Point Edge Transformer (Pozdnyakov & Ceriotti, arXiv:2305.19302)."""
import dataclasses
import inspect
from typing import Optional

import torch
from torch import Tensor

from torch_pet.config import fields_doc
from torch_pet.nn.attention import resolve_attention
from torch_pet.nn.cutoff import Cutoff
from torch_pet.nn.pet_config import PETConfig
from torch_pet.nn.pet_graph import PETGraph, PETInputs, build_graph, graph_edge_vectors, species_of
from torch_pet.nn.pet_conv import PETConv, sequence_weights
from torch_pet.nn.rows import add_rows, sum_rows


def _head(channels: int, head_channels: int, out_channels: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(channels, head_channels), torch.nn.SiLU(),
        torch.nn.Linear(head_channels, head_channels), torch.nn.SiLU(),
        torch.nn.Linear(head_channels, out_channels))


class PET(torch.nn.Module):
    r"""The Point Edge Transformer of `"Smooth, exact rotational symmetrization for deep
    learning on point clouds" <https://arxiv.org/abs/2305.19302>`_.

    A stack of :class:`~torch_pet.nn.pet_conv.PETConv` blocks on edge tokens. The first
    block's input messages are the neighbour species embeddings; after block :math:`k` the
    output token of edge :math:`i \to j` updates the message of the reverse edge,

    .. math::
        m_{ji}^{(k)} = \tfrac12\big(m_{ji}^{(k-1)} + x_{ij}^{(k)}\big), \qquad
        \varepsilon_i = s \sum_k \Big[H_c^{(k)}(c_i^{(k)})
            + \sum_j f_c(r_{ij})\, H_b^{(k)}(x_{ij}^{(k)})\Big] + e_{\mathrm{self}}(Z_i),

    and the prediction is :math:`\sum_{i \in b} \varepsilon_i` per structure :math:`b`
    (or :math:`\varepsilon_i` with ``per_atom=True``); :math:`s` is the output scale (buffer
    ``output_scale`` [out], default 1), fitted by the Trainer so that the heads' terms start
    at the targets' scale (:mod:`torch_pet.training.output_scale`). The raw backbone is not
    rotationally invariant (it sees Cartesian edge vectors); wrap it in
    :class:`~torch_pet.ECSESymmetrizer` for exact symmetry, or use ``distance_only=True``.

    Call it as ``model(data)`` on a PyG ``Data``/``Batch`` with ``z`` [N] (long), ``pos``
    [N, 3], optional ``batch`` [N], optional ``cell`` [B, 3, 3] and ``pbc`` [B, 3] (periodic
    structures), and optionally a neighbour list built with this model's cutoff in
    ``pet_edge_index`` [2, E] / ``pet_shifts`` [E, 3]; or as
    ``model.forward_tensors(z, pos, batch, ...)`` with plain tensors.

    Build it as ``PET(species=..., cutoff=...)`` (keyword arguments: the fields of
    :class:`~torch_pet.nn.pet_config.PETConfig`, the one definition of PET's
    hyperparameters) or ``PET(config)``; ``model.config`` holds them, and each is also an
    attribute (``model.cutoff``, ...).

    Args:
{config_args}

    Shapes:
        - **input:** z :math:`[N]`, pos :math:`[N, 3]`, batch :math:`[N]`,
          cell :math:`[B, 3, 3]`, pbc :math:`[B, 3]`
        - **output:** :math:`[B, \mathrm{out}]`, or :math:`[N, \mathrm{out}]` if per_atom
    """

    #: state_dict entries that weights saved by older versions may lack (loaded as 1)
    optional_state = ("output_scale",)

    def __init__(self, config: Optional[PETConfig] = None, **options):
        super().__init__()
        if config is None:
            config = PETConfig(**options)
        elif not isinstance(config, PETConfig):
            raise TypeError(f"PET: config must be a PETConfig (or pass keyword arguments), "
                            f"got {type(config).__name__}")
        elif options:
            config = config.replace(**options)
        self.config = config
        for field in dataclasses.fields(config):  # model.cutoff, model.num_blocks, ...
            setattr(self, field.name, getattr(config, field.name))
        self.species = list(config.species)
        species = self.species
        hidden_channels, out_channels = config.hidden_channels, config.out_channels
        num_blocks, distance_only = config.num_blocks, config.distance_only
        self.cutoff_fn = Cutoff(config.cutoff, config.cutoff_width, config.cutoff_function)

        lookup = torch.full((max(species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", lookup, persistent=False)
        self.register_buffer("self_energies", torch.zeros(len(species), out_channels))
        # s of every output channel, on all the heads' terms (fitted by the Trainer)
        self.register_buffer("output_scale", torch.ones(out_channels))

        self.neighbour_embedding = torch.nn.Embedding(len(species), hidden_channels)
        self.blocks = torch.nn.ModuleList([
            PETConv(hidden_channels, len(species), config.num_heads, config.num_layers,
                    config.ff_channels, geometry_channels=1 if distance_only else 4,
                    attention=config.attention, block=config.block)
            for _ in range(num_blocks)])
        self.atomic_heads = torch.nn.ModuleList(
            [_head(hidden_channels, config.head_channels, out_channels)
             for _ in range(num_blocks)])
        self.bond_heads = torch.nn.ModuleList(
            [_head(hidden_channels, config.head_channels, out_channels)
             for _ in range(num_blocks)])

    @property
    def receptive_field(self) -> float:
        return self.num_blocks * self.cutoff

    @property
    def hyperparameters(self) -> dict:
        """The constructor arguments, ``config`` as a plain dict (checkpoints rebuild the
        model from them)."""
        return self.config.to_dict()

    def reset_parameters(self):
        self.neighbour_embedding.reset_parameters()
        for block, atomic, bond in zip(self.blocks, self.atomic_heads, self.bond_heads):
            block.reset_parameters()
            for layer in (*atomic, *bond):
                if isinstance(layer, torch.nn.Linear):
                    layer.reset_parameters()

    def forward(self, data) -> Tensor:
        """``model(data)`` on a PyG ``Data``/``Batch`` (see the class docstring); its
        ``batch`` or ``ptr`` (or both, agreeing) give the structure of each atom."""
        return self.forward_inputs(self.prepare(data))

    def forward_tensors(self, z: Tensor, pos: Tensor, batch: Optional[Tensor] = None, *,
                        cell: Optional[Tensor] = None, pbc: Optional[Tensor] = None,
                        edge_index: Optional[Tensor] = None, shifts: Optional[Tensor] = None,
                        num_graphs: Optional[int] = None, ptr: Optional[Tensor] = None) -> Tensor:
        """The prediction from plain tensors; ``edge_index``/``shifts`` skip the graph build
        (checked by :func:`torch_pet.inputs.check_graph`: in range, within a structure, no
        duplicate, no self-loop without a shift, none longer than the cutoff). The structure
        of each atom comes from ``batch`` and/or ``ptr`` (:mod:`torch_pet.inputs`).

        Shapes:
            z [N], pos [N, 3], batch [N], ptr [B+1], cell [B, 3, 3] or [3, 3], pbc [B, 3] or
            [3], edge_index [2, E], shifts [E, 3] -> [B, out] (or [N, out] if per_atom)
        """
        from torch_pet.inputs import structure_index

        species = species_of(z, pos, self.species_index, self.species, self.self_energies)
        index = structure_index(batch, ptr, pos.shape[0], pos.device, num_structures=num_graphs)
        return self.forward_inputs(self._inputs(species, pos, index, cell, pbc, edge_index,
                                                shifts, ("edge_index", "shifts")))

    def prepare(self, data) -> PETInputs:
        """Step 1 of the forward pass (eager, see :mod:`torch_pet.nn.pet_graph`): the checked
        species and structure index of ``data`` and its graph (``data.pet_edge_index`` /
        ``data.pet_shifts`` if given, else ``radius_graph`` at the cutoff).

        Shapes:
            data.z [N], data.pos [N, 3] -> :class:`~torch_pet.nn.pet_graph.PETInputs`
        """
        from torch_pet.inputs import read_structure_index

        z, pos = getattr(data, "z", None), getattr(data, "pos", None)
        species = species_of(z, pos, self.species_index, self.species, self.self_energies,
                             prefix="data.")
        index = read_structure_index(data, pos, prefix="data.")
        return self._inputs(species, pos, index, getattr(data, "cell", None),
                            getattr(data, "pbc", None), getattr(data, "pet_edge_index", None),
                            getattr(data, "pet_shifts", None),
                            ("data.pet_edge_index", "data.pet_shifts"))

    def _inputs(self, species: Tensor, pos: Tensor, index, cell, pbc, edge_index, shifts,
                names) -> PETInputs:
        if isinstance(cell, Tensor) and cell.dim() == 2:
            cell = cell.unsqueeze(0)
        if isinstance(pbc, Tensor) and pbc.dim() == 1:
            pbc = pbc.unsqueeze(0)
        graph = build_graph(pos, index, cell, pbc, self.cutoff, edge_index, shifts, names)
        if cell is not None:  # one cell per structure (a shared [1, 3, 3] cell too)
            cell = cell.expand(index.num_structures, 3, 3)
        return PETInputs(species, pos, cell, index.batch, index.num_structures, graph)

    def forward_inputs(self, inputs: PETInputs, attention: Optional[str] = None) -> Tensor:
        """Step 2 of the forward pass: the prediction from prepared inputs, with tensor
        operations only (no data-dependent shapes, no host reads), so torch.export and
        ``torch.compile(fullgraph=True)`` capture it (:mod:`torch_pet.export`).

        Args:
            inputs: from :meth:`prepare` (or rebuilt inside an exported program).
            attention: "fused" or "explicit"; default: PET's own choice
                (:func:`~torch_pet.nn.attention.resolve_attention`).

        Shapes:
            inputs -> [B, out] (or [N, out] if per_atom)
        """
        graph = inputs.graph
        vectors = graph_edge_vectors(inputs.pos, inputs.cell, inputs.batch, graph.neighbour,
                                     graph.centre, graph.shifts)  # [E, 3]
        if attention is None:
            attention = resolve_attention(self.attention, self.training)
        atomic = self.atomic_contributions(inputs.species, graph, vectors, attention)
        if self.per_atom:
            return atomic
        return sum_rows(atomic, inputs.batch, inputs.num_structures)

    def atomic_contributions(self, species: Tensor, graph: PETGraph, vectors: Tensor,
                             attention: str) -> Tensor:
        """ε_i of every atom, self energies included.

        Shapes:
            species [N], graph (E edges, K slots), vectors [E, 3] -> [N, out]
        """
        centre, layout = graph.centre, graph.layout
        edge_index = torch.stack([graph.neighbour, centre])  # [2, E]
        length = vectors.norm(dim=-1)  # [E]
        cutoff_weight = self.cutoff_fn(length)  # [E]
        features = length[:, None] if self.distance_only else \
            torch.cat([vectors, length[:, None]], dim=1)  # [E, 1 or 4]
        key_weight = sequence_weights(cutoff_weight, layout)  # [N, K+1]

        message = self.neighbour_embedding(species.index_select(0, graph.neighbour))  # [E, C]
        atomic = self.self_energies.index_select(0, species)  # [N, out]
        for k, (block, atomic_head, bond_head) in enumerate(
                zip(self.blocks, self.atomic_heads, self.bond_heads)):
            central, tokens = block(species, edge_index, features, message, cutoff_weight,
                                    layout=layout, key_weight=key_weight, attention=attention)
            bonds = cutoff_weight[:, None] * bond_head(tokens)  # [E, out]
            atomic = atomic + self.output_scale * add_rows(atomic_head(central), centre, bonds)
            if k + 1 < self.num_blocks:
                message = 0.5 * (message + tokens.index_select(0, layout.reverse))
        return atomic

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before output scaling existed: output_scale = 1 (what they computed)
        if prefix + "self_energies" in state_dict and prefix + "output_scale" not in state_dict:
            state_dict[prefix + "output_scale"] = torch.ones_like(self.output_scale)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __repr__(self) -> str:
        shown = [f"species={len(self.species)}"] + [
            f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config)
            if f.name != "species"]
        return f"{type(self).__name__}({', '.join(shown)})"


# The signature and the Args section are generated from PETConfig, the one definition.
PET.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                       annotation=Optional[PETConfig])]
    + [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                         annotation=f.type) for f in dataclasses.fields(PETConfig)])
PET.__doc__ = PET.__doc__.replace("{config_args}", fields_doc(PETConfig))
