"""PET, the Point Edge Transformer (Pozdnyakov & Ceriotti, arXiv:2305.19302)."""
from typing import Optional, Sequence

import torch
from torch import Tensor

from torch_pet.nn.attention import ATTENTION_MODES, resolve_attention
from torch_pet.nn.cutoff import Cutoff
from torch_pet.nn.edge_layout import build_edge_layout
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
        \varepsilon_i = \sum_k \Big[H_c^{(k)}(c_i^{(k)})
            + \sum_j f_c(r_{ij})\, H_b^{(k)}(x_{ij}^{(k)})\Big] + e_{\mathrm{self}}(Z_i),

    and the prediction is :math:`\sum_{i \in b} \varepsilon_i` per structure :math:`b`
    (or :math:`\varepsilon_i` with ``per_atom=True``). The raw backbone is not rotationally
    invariant (it sees Cartesian edge vectors); wrap it in
    :class:`~torch_pet.ECSESymmetrizer` for exact symmetry, or use ``distance_only=True``.

    Call it as ``model(data)`` on a PyG ``Data``/``Batch`` with ``z`` [N] (long), ``pos``
    [N, 3], optional ``batch`` [N], optional ``cell`` [B, 3, 3] and ``pbc`` [B, 3] (periodic
    structures), and optionally a neighbour list built with this model's cutoff in
    ``pet_edge_index`` [2, E] / ``pet_shifts`` [E, 3]; or as
    ``model.forward_tensors(z, pos, batch, ...)`` with plain tensors.

    Args:
        species: atomic numbers the model knows (others raise ``ValueError``).
        out_channels: width of the target (1 for energies, 3 for a dipole vector, ...).
        hidden_channels: token width d.
        num_heads: attention heads.
        num_layers: transformer layers per block.
        num_blocks: message-passing blocks (receptive field ``num_blocks * cutoff``).
        ff_channels: hidden width of the transformer feed-forward networks.
        head_channels: hidden width of the atomic and bond heads.
        cutoff: R_c in the units of ``pos``.
        cutoff_width: Δ, width of the switching shell of f_c.
        per_atom: return per-atom contributions [N, out] instead of sums [B, out].
        distance_only: embed only |r_ij| (an exactly rotation-invariant model).
        attention: ``"auto"``, ``"fused"`` or ``"explicit"`` (:mod:`torch_pet.nn.attention`).
        cutoff_function: ``"cosine"`` (the paper's) or ``"bump"``.

    Shapes:
        - **input:** z :math:`[N]`, pos :math:`[N, 3]`, batch :math:`[N]`,
          cell :math:`[B, 3, 3]`, pbc :math:`[B, 3]`
        - **output:** :math:`[B, \mathrm{out}]`, or :math:`[N, \mathrm{out}]` if per_atom
    """

    def __init__(self, species: Sequence[int] = tuple(range(1, 119)), out_channels: int = 1,
                 hidden_channels: int = 128, num_heads: int = 4, num_layers: int = 3,
                 num_blocks: int = 3, ff_channels: int = 512, head_channels: int = 128,
                 cutoff: float = 5.0, cutoff_width: float = 0.2, per_atom: bool = False,
                 distance_only: bool = False, attention: str = "auto",
                 cutoff_function: str = "cosine"):
        super().__init__()
        species = [int(s) for s in species]
        if not species or len(set(species)) != len(species) or min(species) < 1:
            raise ValueError(f"species must be distinct atomic numbers >= 1, got {species}")
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        for name, value in (("out_channels", out_channels), ("hidden_channels", hidden_channels),
                            ("num_heads", num_heads), ("num_layers", num_layers),
                            ("num_blocks", num_blocks), ("ff_channels", ff_channels),
                            ("head_channels", head_channels)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.species = species
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.num_blocks = num_blocks
        self.ff_channels = ff_channels
        self.head_channels = head_channels
        self.cutoff = float(cutoff)
        self.cutoff_width = float(cutoff_width)
        self.per_atom = per_atom
        self.distance_only = distance_only
        self.attention = attention
        self.cutoff_function = cutoff_function
        self.cutoff_fn = Cutoff(cutoff, cutoff_width, cutoff_function)

        lookup = torch.full((max(species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", lookup, persistent=False)
        self.register_buffer("self_energies", torch.zeros(len(species), out_channels))

        self.neighbour_embedding = torch.nn.Embedding(len(species), hidden_channels)
        self.blocks = torch.nn.ModuleList([
            PETConv(hidden_channels, len(species), num_heads, num_layers, ff_channels,
                    geometry_channels=1 if distance_only else 4, attention=attention)
            for _ in range(num_blocks)])
        self.atomic_heads = torch.nn.ModuleList(
            [_head(hidden_channels, head_channels, out_channels) for _ in range(num_blocks)])
        self.bond_heads = torch.nn.ModuleList(
            [_head(hidden_channels, head_channels, out_channels) for _ in range(num_blocks)])

    @property
    def receptive_field(self) -> float:
        return self.num_blocks * self.cutoff

    @property
    def hyperparameters(self) -> dict:
        """The constructor arguments (checkpoints rebuild the model from them)."""
        return dict(species=list(self.species), out_channels=self.out_channels,
                    hidden_channels=self.hidden_channels, num_heads=self.num_heads,
                    num_layers=self.num_layers, num_blocks=self.num_blocks,
                    ff_channels=self.ff_channels, head_channels=self.head_channels,
                    cutoff=self.cutoff, cutoff_width=self.cutoff_width,
                    per_atom=self.per_atom, distance_only=self.distance_only,
                    attention=self.attention, cutoff_function=self.cutoff_function)

    def reset_parameters(self):
        self.neighbour_embedding.reset_parameters()
        for block, atomic, bond in zip(self.blocks, self.atomic_heads, self.bond_heads):
            block.reset_parameters()
            for layer in (*atomic, *bond):
                if isinstance(layer, torch.nn.Linear):
                    layer.reset_parameters()

    def forward(self, data) -> Tensor:
        """``model(data)`` on a PyG ``Data``/``Batch`` (see the class docstring)."""
        batch = getattr(data, "batch", None)
        num_graphs = getattr(data, "num_graphs", None) if batch is not None else 1
        return self.forward_tensors(
            data.z, data.pos, batch, cell=getattr(data, "cell", None),
            pbc=getattr(data, "pbc", None), edge_index=getattr(data, "pet_edge_index", None),
            shifts=getattr(data, "pet_shifts", None), num_graphs=num_graphs)

    def forward_tensors(self, z: Tensor, pos: Tensor, batch: Optional[Tensor] = None, *,
                        cell: Optional[Tensor] = None, pbc: Optional[Tensor] = None,
                        edge_index: Optional[Tensor] = None, shifts: Optional[Tensor] = None,
                        num_graphs: Optional[int] = None) -> Tensor:
        """The prediction from plain tensors; ``edge_index``/``shifts`` skip the graph build.

        Shapes:
            z [N], pos [N, 3], batch [N], cell [B, 3, 3] or [3, 3], pbc [B, 3] or [3],
            edge_index [2, E], shifts [E, 3] -> [B, out] (or [N, out] if per_atom)
        """
        from torch_pet import ops

        species = self._species_index(z, pos)
        if cell is not None and cell.dim() == 2:
            cell = cell.unsqueeze(0)
        if pbc is not None and pbc.dim() == 1:
            pbc = pbc.unsqueeze(0)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch is not None and batch.numel() else 1
        if edge_index is None:
            with torch.no_grad():
                edge_index, shifts = ops.radius_graph(pos.detach(), self.cutoff, batch,
                                                      cell=cell, pbc=pbc)
        else:
            edge_index, shifts = self._check_edges(edge_index, shifts, pos.shape[0])
        vectors = ops.edge_vectors(pos, edge_index, shifts, cell=cell, batch=batch)  # [E, 3]
        reverse = ops.reverse_edge_index(edge_index, shifts)
        atomic = self._atomic_contributions(species, edge_index, vectors, reverse)
        if self.per_atom:
            return atomic
        index = batch if batch is not None else torch.zeros_like(species)
        return sum_rows(atomic, index, num_graphs)

    def _atomic_contributions(self, species: Tensor, edge_index: Tensor, vectors: Tensor,
                              reverse: Tensor) -> Tensor:
        """ε_i of every atom, self energies included.

        Shapes:
            species [N], edge_index [2, E], vectors [E, 3], reverse [E] -> [N, out]
        """
        num_nodes = species.shape[0]
        centre = edge_index[1]
        length = vectors.norm(dim=-1)  # [E]
        cutoff_weight = self.cutoff_fn(length)  # [E]
        features = length[:, None] if self.distance_only else \
            torch.cat([vectors, length[:, None]], dim=1)  # [E, 1 or 4]
        layout = build_edge_layout(centre, num_nodes, reverse, check=False)  # sorted, in range
        key_weight = sequence_weights(cutoff_weight, layout)  # [N, K+1]
        mode = resolve_attention(self.attention, self.training)

        message = self.neighbour_embedding(species[edge_index[0]])  # m^(0) [E, C]
        atomic = self.self_energies[species]  # [N, out]
        for k, (block, atomic_head, bond_head) in enumerate(
                zip(self.blocks, self.atomic_heads, self.bond_heads)):
            central, tokens = block(species, edge_index, features, message, cutoff_weight,
                                    layout=layout, key_weight=key_weight, attention=mode)
            bonds = cutoff_weight[:, None] * bond_head(tokens)  # [E, out]
            atomic = atomic + add_rows(atomic_head(central), centre, bonds)
            if k + 1 < self.num_blocks:
                message = 0.5 * (message + tokens[reverse])
        return atomic

    def _species_index(self, z: Tensor, pos: Tensor) -> Tensor:
        if z.dim() != 1 or z.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"z must be a 1-D integer tensor of atomic numbers [N], got "
                             f"{z.dtype} of shape {tuple(z.shape)}")
        if pos.dim() != 2 or pos.shape[1] != 3 or pos.shape[0] != z.shape[0]:
            raise ValueError(f"pos must have shape [N, 3] with N = len(z) = {z.shape[0]}, got "
                             f"{tuple(pos.shape)}")
        if pos.dtype != self.self_energies.dtype:
            raise TypeError(f"pos is {pos.dtype} but the model is "
                            f"{self.self_energies.dtype}; convert one (model.double() or "
                            f"pos.to(...))")
        z = z.long()
        lookup = self.species_index
        known = (z >= 0) & (z < lookup.shape[0])
        index = lookup[z.clamp(0, lookup.shape[0] - 1)]
        unknown = ~known | (index < 0)
        not_finite, any_unknown = torch.stack([~torch.isfinite(pos).all(),
                                               unknown.any()]).tolist()  # one host sync
        if not_finite:
            raise ValueError("pos contains NaN or Inf; check the input structure")
        if any_unknown:
            bad = sorted(set(z[unknown].tolist()))
            raise ValueError(f"atomic number(s) {bad} are not among the model's species "
                             f"{self.species}; build PET(species=...) covering the data")
        return index

    @staticmethod
    def _check_edges(edge_index: Tensor, shifts: Optional[Tensor], num_nodes: int):
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"pet_edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        if shifts is None:
            shifts = edge_index.new_zeros(edge_index.shape[1], 3)
        if shifts.shape != (edge_index.shape[1], 3):
            raise ValueError(f"pet_shifts must have shape [E, 3] = [{edge_index.shape[1]}, 3], "
                             f"got {tuple(shifts.shape)}")
        if edge_index.shape[1] == 0:
            return edge_index, shifts
        centre = edge_index[1]
        outside, unsorted = torch.stack([(edge_index.min() < 0) | (edge_index.max() >= num_nodes),
                                         (centre[1:] < centre[:-1]).any()]).tolist()
        if outside:
            raise ValueError(f"pet_edge_index has atom indices outside [0, {num_nodes}); rebuild "
                             "the neighbour list for these atoms")
        if unsorted:
            order = torch.argsort(centre, stable=True)
            edge_index, shifts = edge_index[:, order], shifts[order]
        return edge_index, shifts

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(species={len(self.species)}, "
                f"out_channels={self.out_channels}, hidden_channels={self.hidden_channels}, "
                f"num_heads={self.num_heads}, num_layers={self.num_layers}, "
                f"num_blocks={self.num_blocks}, cutoff={self.cutoff}, "
                f"distance_only={self.distance_only}, attention={self.attention!r})")
