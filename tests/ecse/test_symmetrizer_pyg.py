"""ECSESymmetrizer on existing PyG point-cloud layers that see raw coordinates
(PointNetConv, PointTransformerConv), called through an adapter with the signature
``model(x, pos, batch)``: exactly equivariant after wrapping, far from it before."""
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import PointNetConv, PointTransformerConv

from torch_pet import ECSESymmetrizer
from torch_pet.ops.radius_graph import radius_graph
from torch_pet.testing import (assert_equivariant, assert_invariant, random_methane,
                               random_molecule, random_rotation, symmetry_error)

SPECIES = (1, 6, 7, 8)
TRAILING = {"scalar": (), "vector": (3,), "tensor": (3, 3)}


def _mlp(*widths):
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    return torch.nn.Sequential(*layers[:-1])


class PointCloudModel(torch.nn.Module):
    """Two PointNetConv or PointTransformerConv layers on a radius graph, linear readout.

    ``forward(x, pos, batch)`` (x: one-hot species) -> [B, 2, *trailing] or per atom.
    """

    def __init__(self, layer="pointnet", output="scalar", per_atom=False, cutoff=3.0, hidden=16):
        super().__init__()
        self.cutoff, self.output, self.per_atom = cutoff, output, per_atom
        if layer == "pointnet":
            self.convs = torch.nn.ModuleList([
                PointNetConv(_mlp(len(SPECIES) + 3, hidden, hidden), _mlp(hidden, hidden)),
                PointNetConv(_mlp(hidden + 3, hidden, hidden), _mlp(hidden, hidden))])
        else:
            self.embed = torch.nn.Linear(len(SPECIES), hidden)
            self.convs = torch.nn.ModuleList([
                PointTransformerConv(hidden, hidden, pos_nn=_mlp(3, hidden, hidden),
                                     attn_nn=_mlp(hidden, hidden)) for _ in range(2)])
        self.readout = torch.nn.Linear(hidden, 2 * {"scalar": 1, "vector": 3, "tensor": 9}[output])

    def forward(self, x, pos, batch):
        edge_index, _ = radius_graph(pos.detach(), self.cutoff, batch)
        h = self.embed(x) if hasattr(self, "embed") else x
        for conv in self.convs:
            h = torch.tanh(conv(h, pos, edge_index))
        out = self.readout(h).reshape(-1, 2, *TRAILING[self.output])
        if self.per_atom:
            return out
        return out.new_zeros(int(batch.max()) + 1, *out.shape[1:]).index_add(0, batch, out)


def _call(model, data):
    one_hot = (data.z[:, None] == torch.tensor(SPECIES, device=data.z.device)).to(data.pos.dtype)
    batch = data.batch if getattr(data, "batch", None) is not None else torch.zeros_like(data.z)
    return model(one_hot, data.pos, batch)


def _molecules(dtype=torch.float64):
    return Batch.from_data_list([random_molecule(6, generator=11, dtype=dtype),
                                 random_methane(12, dtype=dtype)])


@pytest.mark.parametrize("layer", ["pointnet", "transformer"])
@pytest.mark.parametrize("output", ["scalar", "vector", "tensor"])
@pytest.mark.parametrize("per_atom", [False, True])
def test_pyg_layers_become_exactly_equivariant(layer, output, per_atom):
    data = _molecules()
    model = PointCloudModel(layer, output, per_atom).double()
    unwrapped = lambda d: _call(model, d)  # noqa: E731
    assert symmetry_error(unwrapped, data, output, rotation=random_rotation(1)) > 0.01
    sym = ECSESymmetrizer(model, output=output, per_atom=per_atom, cutoff=3.0, adapter=_call)
    assert sym(data).shape == _call(model, data).shape
    assert_equivariant(sym, data, output, per_atom=per_atom, num_rotations=2)


@pytest.mark.parametrize("layer", ["pointnet", "transformer"])
def test_pyg_layers_forces_float32_and_atom_mode(layer):
    data = _molecules()
    model = PointCloudModel(layer).double()
    energy = lambda d: _call(model, d)[:, 0]  # noqa: E731
    assert symmetry_error(energy, data, "forces", rotation=random_rotation(2)) > 0.01
    sym = ECSESymmetrizer(model, cutoff=3.0, adapter=lambda m, d: _call(m, d)[:, 0])
    assert_equivariant(sym, data, "forces", num_rotations=2)
    # Atom mode: the per-atom model has a receptive field of 2 layers x cutoff.
    per_atom = PointCloudModel(layer, per_atom=True).double()
    atom = ECSESymmetrizer(per_atom, mode="atom", cutoff=3.0, receptive_field=6.0, adapter=_call)
    assert_invariant(atom, data, num_rotations=1)
    assert_equivariant(atom, data, "forces", num_rotations=1)
    # float32: relative error at the float32 level
    sym32 = ECSESymmetrizer(PointCloudModel(layer), cutoff=3.0, adapter=_call)
    assert_invariant(sym32, _molecules(torch.float32), num_rotations=2)
