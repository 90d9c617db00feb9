"""Peer models for the accuracy benchmark, behind PET's calling convention.

Each wrapper is a ``torch.nn.Module`` with ``model(data) -> [B, 1]`` total energies, a
``species`` list and a ``self_energies`` buffer [num_species, 1] (fitted by least squares
before training, as for PET), so that ``torch_pet.nn.derivatives.energy_and_forces`` gives
forces by autograd and one training loop serves every model. Both build their neighbour
list with ``torch_pet.ops.radius_graph`` (periodic cells included) and compute the edge
geometry differentiably with ``torch_pet.ops.edge_vectors``.

* :class:`SchNetEnergy`: the layers of PyG's ``torch_geometric.nn.models.SchNet``
  (embedding, Gaussian smearing, CFConv interactions, atomwise MLP) applied to our graph;
  the atomwise output is multiplied by ``output_scale`` (SchNet's ``std``) and summed.
* :class:`MACEEnergy`: ``mace.modules.ScaleShiftMACE`` from ``mace-torch`` (optional; install
  with ``pip install mace-torch``), with zero E0s (the self energies live in the wrapper),
  ``atomic_inter_scale = 1`` and ``atomic_inter_shift = 0``; the wrapper multiplies MACE's
  energy by ``output_scale`` (MACE's recipe: the RMS of the training forces).

Both carry the ``output_scale`` buffer [1] of the backbone contract, initialised to
``scale`` and fitted by the Trainer as PET's is (:mod:`torch_pet.training.output_scale`),
so that every model of the benchmark gets its output scale by the same rule.

Shapes: N atoms, E edges, B structures.
"""
import contextlib
import io
import logging
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor

from torch_pet import ops


def mace_available() -> Optional[str]:
    """None when ``mace-torch`` imports, else the reason it does not."""
    try:
        with _quiet():
            import mace.modules  # noqa: F401
            import e3nn  # noqa: F401
    except Exception as err:  # ImportError, or an incompatibility with this torch
        return f"{type(err).__name__}: {err}"
    return None


@contextlib.contextmanager
def _quiet():
    """Silence the import/construction chatter of e3nn and mace (TorchScript annotation
    warnings, the optional cuequivariance notice)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


class _SpeciesEnergy(torch.nn.Module):
    """Species lookup and per-species self energies shared by the wrappers."""

    def __init__(self, species: Sequence[int]):
        super().__init__()
        self.species = [int(s) for s in species]
        lookup = torch.full((max(self.species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.species)] = torch.arange(len(self.species))
        self.register_buffer("species_index", lookup, persistent=False)
        self.register_buffer("self_energies", torch.zeros(len(self.species), 1))

    def _species(self, z: Tensor) -> Tensor:
        index = self.species_index[z.clamp(0, self.species_index.shape[0] - 1)]
        bad = (z >= self.species_index.shape[0]) | (index < 0)
        if bool(bad.any()):
            raise ValueError(f"atomic numbers {sorted(set(z[bad].tolist()))} are not among "
                             f"the model species {self.species}; build it with species=...")
        return index

    @staticmethod
    def _graph(data, cutoff: float):
        """Edges (ours: row 0 neighbour j, row 1 centre i) and differentiable r_ij."""
        batch = getattr(data, "batch", None)
        cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
        with torch.no_grad():
            edge_index, shifts = ops.radius_graph(data.pos.detach(), cutoff, batch,
                                                  cell=cell, pbc=pbc)
        vectors = ops.edge_vectors(data.pos, edge_index, shifts, cell=cell, batch=batch)
        return edge_index, shifts, vectors

    @staticmethod
    def _batch_info(data):
        batch = getattr(data, "batch", None)
        if batch is None:
            return torch.zeros(data.pos.shape[0], dtype=torch.long, device=data.pos.device), 1
        return batch, int(data.num_graphs)


class SchNetEnergy(_SpeciesEnergy):
    r"""PyG's SchNet (Schütt et al., 2017) on ``torch_pet.ops.radius_graph``.

    .. math::
        E_b = \sum_{i \in b} \big[s\, \mathrm{MLP}(h_i^{(T)}) + e_{\mathrm{self}}(Z_i)\big]

    Args:
        species: atomic numbers the model knows.
        hidden_channels, num_filters, num_interactions, num_gaussians: as in PyG's SchNet.
        cutoff: radius of the graph and of the cosine filter cutoff (Å).
        scale: initial factor s on the atomwise outputs (``output_scale``, SchNet's ``std``).

    Shapes:
        data.z [N], data.pos [N, 3], data.batch [N] -> [B, 1]
    """

    def __init__(self, species: Sequence[int], *, hidden_channels: int = 128,
                 num_filters: int = 128, num_interactions: int = 3, num_gaussians: int = 50,
                 cutoff: float = 5.0, scale: float = 1.0):
        super().__init__(species)
        from torch_geometric.nn.models import SchNet

        self.cutoff = float(cutoff)
        self.hyperparameters = dict(  # checkpoints (the benchmark keeps the best epoch)
            species=list(self.species), hidden_channels=hidden_channels,
            num_filters=num_filters, num_interactions=num_interactions,
            num_gaussians=num_gaussians, cutoff=self.cutoff, scale=float(scale))
        # SchNet's own layers; its embedding is indexed by our species index (not by Z).
        self.schnet = SchNet(hidden_channels=hidden_channels, num_filters=num_filters,
                             num_interactions=num_interactions, num_gaussians=num_gaussians,
                             cutoff=cutoff)
        self.schnet.interaction_graph = None  # the graph comes from torch_pet.ops
        self.schnet.embedding = torch.nn.Embedding(len(self.species), hidden_channels)
        self.register_buffer("output_scale", torch.tensor([float(scale)]))

    def forward(self, data) -> Tensor:
        net = self.schnet
        species = self._species(data.z)
        batch, num_graphs = self._batch_info(data)
        edge_index, _, vectors = self._graph(data, self.cutoff)
        distance = vectors.norm(dim=-1)  # [E]
        edge_attr = net.distance_expansion(distance)  # [E, num_gaussians]
        h = net.embedding(species)  # [N, C]
        for interaction in net.interactions:
            h = h + interaction(h, edge_index, distance, edge_attr)
        atomic = self.output_scale * net.lin2(net.act(net.lin1(h))) + self.self_energies[species]
        return atomic.new_zeros(num_graphs, 1).index_add(0, batch, atomic)

    def __repr__(self) -> str:
        return f"SchNetEnergy({self.schnet!r}, species={self.species})"


class MACEEnergy(_SpeciesEnergy):
    r"""``mace-torch``'s ScaleShiftMACE (Batatia et al., 2022) on ``torch_pet.ops.radius_graph``.

    MACE's edge vectors are ``pos[edge_index[1]] - pos[edge_index[0]] + shifts``
    (receiver minus sender); our r_ij is pos[j] - pos[i] + S·cell with j = edge_index[0], so
    it gets ``shifts = -S·cell`` and sees -r_ij, to which an O(3)-equivariant model is
    indifferent. Forces come from autograd of the returned energy (``compute_force=False``).

    Args:
        species: atomic numbers the model knows.
        cutoff: r_max (Å).
        hidden_irreps, max_ell, correlation, num_interactions, num_bessel,
            num_polynomial_cutoff, mlp_irreps, interaction: MACE hyperparameters.
        avg_num_neighbors: normalisation of the message sum (from the training data).
        scale: initial ``output_scale`` on MACE's energy (RMS of the training forces in
            MACE's recipe).

    Shapes:
        data.z [N], data.pos [N, 3], data.batch [N] -> [B, 1]
    """

    def __init__(self, species: Sequence[int], *, cutoff: float = 5.0,
                 hidden_irreps: str = "32x0e + 32x1o", max_ell: int = 3, correlation: int = 3,
                 num_interactions: int = 2, num_bessel: int = 8, num_polynomial_cutoff: int = 5,
                 mlp_irreps: str = "16x0e",
                 interaction: str = "RealAgnosticResidualInteractionBlock",
                 avg_num_neighbors: float = 4.0, scale: float = 1.0):
        super().__init__(species)
        reason = mace_available()
        if reason is not None:
            raise ImportError(f"MACEEnergy needs mace-torch (`pip install mace-torch`): {reason}")
        import numpy as np

        with _quiet():
            from e3nn import o3
            from mace import modules

        self.cutoff = float(cutoff)
        self.hyperparameters = dict(
            species=list(self.species), cutoff=self.cutoff, hidden_irreps=hidden_irreps,
            max_ell=max_ell, correlation=correlation, num_interactions=num_interactions,
            num_bessel=num_bessel, num_polynomial_cutoff=num_polynomial_cutoff,
            mlp_irreps=mlp_irreps, interaction=interaction,
            avg_num_neighbors=float(avg_num_neighbors), scale=float(scale))
        block = modules.interaction_classes[interaction]
        with _quiet():
            self.mace = modules.ScaleShiftMACE(
                r_max=cutoff, num_bessel=num_bessel,
                num_polynomial_cutoff=num_polynomial_cutoff, max_ell=max_ell,
                interaction_cls=block, interaction_cls_first=block,
                num_interactions=num_interactions, num_elements=len(self.species),
                hidden_irreps=o3.Irreps(hidden_irreps), MLP_irreps=o3.Irreps(mlp_irreps),
                atomic_energies=np.zeros(len(self.species)),
                avg_num_neighbors=avg_num_neighbors, atomic_numbers=list(self.species),
                correlation=correlation, gate=torch.nn.functional.silu,
                atomic_inter_scale=1.0, atomic_inter_shift=0.0)
        self.register_buffer("output_scale", torch.tensor([float(scale)]))

    def forward(self, data) -> Tensor:
        species = self._species(data.z)
        batch, num_graphs = self._batch_info(data)
        edge_index, shifts, vectors = self._graph(data, self.cutoff)
        # -S·cell in the dtype of pos, differentiable w.r.t. the cell (vectors - direct part)
        cell_part = vectors - (data.pos.index_select(0, edge_index[0])
                               - data.pos.index_select(0, edge_index[1]))
        ptr = torch.zeros(num_graphs + 1, dtype=torch.long, device=batch.device)
        ptr[1:] = torch.bincount(batch, minlength=num_graphs).cumsum(0)
        cell = getattr(data, "cell", None)
        if cell is None:
            cell = data.pos.new_zeros(num_graphs, 3, 3)
        inputs = {
            "positions": data.pos,
            "node_attrs": torch.nn.functional.one_hot(species, len(self.species)).to(
                data.pos.dtype),
            "edge_index": edge_index,
            "shifts": -cell_part,
            "unit_shifts": -shifts.to(data.pos.dtype),
            "cell": cell.reshape(-1, 3, 3),
            "batch": batch,
            "ptr": ptr,
        }
        out = self.mace(inputs, training=self.training, compute_force=False)
        energy = self.output_scale * out["energy"].reshape(num_graphs, 1)
        counts = torch.zeros(num_graphs, len(self.species), dtype=energy.dtype,
                             device=energy.device).index_put_(
            (batch, species), torch.ones_like(species, dtype=energy.dtype), accumulate=True)
        return energy + counts @ self.self_energies

    def __repr__(self) -> str:
        return (f"MACEEnergy(species={self.species}, cutoff={self.cutoff}, "
                f"hidden_irreps={self.mace.interactions[0].hidden_irreps})")
