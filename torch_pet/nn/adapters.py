"""Adapters that bring other PyG models to the backbone contract (:mod:`torch_pet.backbone`).

:class:`SchNetBackbone` runs the layers of PyG's ``torch_geometric.nn.models.SchNet``
(Schütt et al., 2017: embedding, Gaussian smearing, continuous-filter interactions, atomwise
MLP) on torch_pet's neighbour list (``torch_pet.ops.radius_graph``, periodic cells included)
and adds what the contract asks for: ``species``, ``self_energies``, ``cutoff``,
``receptive_field``, ``per_atom``, ``out_channels`` and ``hyperparameters``. It can then be
trained by the :class:`~torch_pet.training.Trainer`, symmetrized by
:class:`~torch_pet.ECSESymmetrizer` (SchNet is invariant already: ECSE changes nothing but
the cost, which makes it a check of the pipeline), saved and loaded
(``load_model(path, extra_classes={"SchNetBackbone": SchNetBackbone})``) and used by
:class:`~torch_pet.calculator.PETCalculator`.

Shapes: N atoms, E edges, B structures.
"""
from typing import Sequence

import torch
from torch import Tensor

from torch_pet.inputs import read_structure_index
from torch_pet.nn.pet_graph import graph_edge_vectors, species_of
from torch_pet.nn.rows import sum_rows

__all__ = ["SchNetBackbone"]


class SchNetBackbone(torch.nn.Module):
    r"""PyG's SchNet as a torch_pet backbone.

    .. math::
        E_b = \sum_{i \in b} \big[s\, \mathrm{MLP}(h_i^{(T)}) + e_{\mathrm{self}}(Z_i)\big]

    Args:
        species: atomic numbers the model accepts (at most 99: SchNet embeds Z directly).
        cutoff: radius of the graph and of SchNet's cosine filter cutoff (Å).
        hidden_channels, num_filters, num_interactions, num_gaussians: as in PyG's SchNet.
        scale: fixed factor s on the atomwise outputs (SchNet's ``std``).
        per_atom: return the atomic terms [N, 1] instead of their sums [B, 1].

    Shapes:
        data.z [N], data.pos [N, 3], data.batch [N], data.cell [B, 3, 3], data.pbc [B, 3]
        -> [B, 1] (or [N, 1] if per_atom)
    """

    out_channels = 1

    def __init__(self, species: Sequence[int], *, cutoff: float = 5.0,
                 hidden_channels: int = 64, num_filters: int = 64, num_interactions: int = 3,
                 num_gaussians: int = 50, scale: float = 1.0, per_atom: bool = False):
        super().__init__()
        from torch_geometric.nn.models import SchNet

        species = [int(z) for z in species]
        if not species or len(set(species)) != len(species) or not all(0 < z < 100
                                                                         for z in species):
            raise ValueError(f"SchNetBackbone: species must be distinct atomic numbers in "
                             f"1..99 (SchNet embeds Z), got {species}")
        if not cutoff > 0:
            raise ValueError(f"SchNetBackbone: cutoff must be positive (Å), got {cutoff}")
        self.species, self.cutoff, self.per_atom = species, float(cutoff), bool(per_atom)
        self.receptive_field = num_interactions * self.cutoff
        self._layers = dict(hidden_channels=hidden_channels, num_filters=num_filters,
                            num_interactions=num_interactions, num_gaussians=num_gaussians)
        self.schnet = SchNet(hidden_channels=hidden_channels, num_filters=num_filters,
                             num_interactions=num_interactions, num_gaussians=num_gaussians,
                             cutoff=self.cutoff)
        self.schnet.interaction_graph = None  # the graph comes from torch_pet.ops
        lookup = torch.full((max(species) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", lookup, persistent=False)
        self.register_buffer("self_energies", torch.zeros(len(species), 1))
        self.register_buffer("scale", torch.tensor(float(scale)))

    @property
    def hyperparameters(self) -> dict:
        """The constructor arguments (checkpoints rebuild the model from them)."""
        return dict(species=list(self.species), cutoff=self.cutoff, **self._layers,
                    scale=float(self.scale), per_atom=self.per_atom)

    def forward(self, data) -> Tensor:
        from torch_pet import ops

        z, pos = getattr(data, "z", None), getattr(data, "pos", None)
        index = species_of(z, pos, self.species_index, self.species, self.self_energies,
                           prefix="data.")
        structures = read_structure_index(data, pos, prefix="data.")
        cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
        if cell is not None:
            cell = cell.reshape(-1, 3, 3)
        with torch.no_grad():
            edge_index, shifts = ops.radius_graph(pos.detach(), self.cutoff, structures.batch,
                                                  cell=cell, pbc=pbc)
        if cell is not None:
            cell = cell.expand(structures.num_structures, 3, 3)
        vectors = graph_edge_vectors(pos, cell, structures.batch, edge_index[0],
                                     edge_index[1], shifts)  # [E, 3]
        distance = vectors.norm(dim=-1)  # [E]
        net = self.schnet
        h = net.embedding(z.long())  # [N, C]
        edge_attr = net.distance_expansion(distance)  # [E, num_gaussians]
        for interaction in net.interactions:
            h = h + interaction(h, edge_index, distance, edge_attr)
        atomic = self.scale * net.lin2(net.act(net.lin1(h))) + self.self_energies[index]
        if self.per_atom:
            return atomic
        return sum_rows(atomic, structures.batch, structures.num_structures)

    def extra_repr(self) -> str:
        return f"species={self.species}, cutoff={self.cutoff}, per_atom={self.per_atom}"
