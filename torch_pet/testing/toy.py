"""A deliberately non-equivariant backbone, to prove that symmetrizers work."""
import torch
from torch_geometric.data import Data

from torch_pet.outputs import KindLike, OutputKind
from torch_pet.testing.structures import batch_vector

__all__ = ["AngularToyModel"]


class AngularToyModel(torch.nn.Module):
    """A smooth backbone that is strongly NOT rotation-equivariant, to prove symmetrizers.

    Each atom i gets, from its neighbours j within ``cutoff`` (periodic images included,
    neighbour list from :func:`torch_pet.ops.radius_graph`),

    .. math::
        h_i = \\sum_j \\phi(r_{ij}) \\, \\mathrm{tanh}(W [x_{ij}, y_{ij}, z_{ij},
              x_{ij}^2, x_{ij} y_{ij}, \\dots] + b_{z_j})

    with lab-frame coordinates, so its outputs change by O(1) under rotations. Outputs per
    atom (``per_atom``) or summed per structure, of the kind ``output`` (an OutputKind or
    its string): "scalar" [.., C], "vector" [.., C, 3] (the raw direction-weighted sum, not
    equivariant either) or "tensor" [.., C, 3, 3]. Energies are translation-invariant (only
    differences enter).

    Shapes:
        data.pos [N, 3] -> [B, C(, 3(, 3))] or [N, C(, 3(, 3))]
    """

    def __init__(self, out_channels: int = 1, hidden_channels: int = 16, cutoff: float = 3.0,
                 output: KindLike = "scalar", per_atom: bool = False, max_species: int = 119):
        super().__init__()
        self.output = OutputKind.parse(output, "output", per_atom=per_atom)
        self.cutoff = float(cutoff)
        self.per_atom, self.out_channels = per_atom, out_channels
        self.species_bias = torch.nn.Embedding(max_species, hidden_channels)
        self.angular = torch.nn.Linear(9, hidden_channels)
        self.readout = torch.nn.Linear(hidden_channels, out_channels * self.output.components)
        with torch.no_grad():  # large angular terms
            self.angular.weight.mul_(4.0)

    def forward(self, data: Data) -> torch.Tensor:
        from torch_pet.ops.radius_graph import edge_vectors, radius_graph

        pos = data.pos
        batch = batch_vector(data)
        num_structures = int(batch.max()) + 1 if batch.numel() else 1
        if getattr(data, "ptr", None) is not None:
            num_structures = data.ptr.numel() - 1
        cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
        with torch.no_grad():
            edge_index, shifts = radius_graph(pos.detach(), self.cutoff, batch, cell=cell, pbc=pbc)
        vectors = edge_vectors(pos, edge_index, shifts, cell, batch)  # [E, 3]
        neighbour, centre = edge_index
        x, y, z = vectors.unbind(-1)
        features = torch.stack([x, y, z, x * x, x * y, x * z, y * y, y * z, z * z], dim=-1)
        length2 = (vectors * vectors).sum(-1)
        envelope = (1 - length2 / self.cutoff ** 2) ** 2  # smooth at the cutoff
        hidden = torch.tanh(self.angular(features) + self.species_bias(data.z[neighbour]))
        atomic = hidden.new_zeros(pos.shape[0], hidden.shape[-1]).index_add(
            0, centre, envelope.unsqueeze(-1) * hidden)
        out = self.readout(atomic)  # [N, C * width]
        shape = (self.out_channels, *self.output.shape)
        out = out.reshape(pos.shape[0], *shape)
        if self.per_atom:
            return out
        return out.new_zeros(num_structures, *shape).index_add(0, batch, out)
