"""Make an existing PyG point-cloud model exactly rotation-equivariant with ECSE.

The backbone is a plain PyTorch Geometric model built from ``PointNetConv`` layers on raw
relative coordinates, called as ``model(x, pos, batch)``; it predicts an energy and a
dipole-like vector per structure and knows nothing about rotations. Wrapping it in
:class:`torch_pet.ECSESymmetrizer` (with an ``adapter`` for its call signature) makes the
energy invariant, the vector and the forces equivariant, to float64 round-off.

    python examples/symmetrize_pyg_model.py      # < 1 minute on a CPU
"""
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch
from torch_geometric.nn import PointNetConv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from torch_pet import ECSESymmetrizer  # noqa: E402
from torch_pet.nn.derivatives import energy_and_forces  # noqa: E402
from torch_pet.ops.radius_graph import radius_graph  # noqa: E402
from torch_pet.testing import random_molecule, random_rotation, symmetry_error  # noqa: E402

SPECIES = (1, 6, 7, 8)


class PointNet(torch.nn.Module):
    """Two PointNetConv layers on a radius graph; outputs [B, 4] = (energy, vector)."""

    def __init__(self, hidden: int = 32, cutoff: float = 4.0):
        super().__init__()
        self.cutoff = cutoff  # ECSESymmetrizer reads it: R_out of the frames
        mlp = lambda *w: torch.nn.Sequential(*[m for a, b in zip(w[:-1], w[1:])  # noqa: E731
                                               for m in (torch.nn.Linear(a, b), torch.nn.SiLU())][:-1])
        self.conv1 = PointNetConv(mlp(len(SPECIES) + 3, hidden, hidden), mlp(hidden, hidden))
        self.conv2 = PointNetConv(mlp(hidden + 3, hidden, hidden), mlp(hidden, hidden))
        self.readout = torch.nn.Linear(hidden, 4)

    def forward(self, x, pos, batch):
        edge_index, _ = radius_graph(pos.detach(), self.cutoff, batch)
        h = torch.nn.functional.silu(self.conv1(x, pos, edge_index))
        h = torch.nn.functional.silu(self.conv2(h, pos, edge_index))
        atomic = self.readout(h)
        return atomic.new_zeros(int(batch.max()) + 1, 4).index_add(0, batch, atomic)


def call_pointnet(model, data):
    """Adapter: PyG Batch -> model(x, pos, batch) with one-hot species as x."""
    x = (data.z[:, None] == torch.tensor(SPECIES)).to(data.pos.dtype)
    return model(x, data.pos, data.batch)


def main():
    torch.manual_seed(0)
    model = PointNet().double()
    data = Batch.from_data_list([random_molecule(12, generator=i) for i in range(32)])

    energy = lambda m: (lambda d: call_pointnet(m, d)[:, 0])  # noqa: E731
    vector = lambda m: (lambda d: call_pointnet(m, d)[:, 1:])  # noqa: E731
    # A small backbone: all rotated copies (~6,000 atoms) fit in one call, no checkpointing.
    sym_energy = ECSESymmetrizer(model, chunk_size=16384,
                                 adapter=lambda m, d: call_pointnet(m, d)[:, 0])
    sym_vector = ECSESymmetrizer(model, output="vector", chunk_size=16384,
                                 adapter=lambda m, d: call_pointnet(m, d)[:, 1:])

    rotations = [random_rotation(seed) for seed in range(3)]

    def worst(fn, kind):
        return max(symmetry_error(fn, data, kind, rotation=r) for r in rotations)

    print(f"{len(data)} random 12-atom molecules, float64, 3 random rotations; relative error "
          "max|f(R X) - R f(X)| / max|f(X)|")
    print(f"{'output':<8} {'PointNet':>10} {'ECSE(PointNet)':>15}")
    print(f"{'energy':<8} {worst(energy(model), 'scalar'):>10.2e} {worst(sym_energy, 'scalar'):>15.2e}")
    print(f"{'forces':<8} {worst(energy(model), 'forces'):>10.2e} {worst(sym_energy, 'forces'):>15.2e}")
    print(f"{'vector':<8} {worst(vector(model), 'vector'):>10.2e} {worst(sym_vector, 'vector'):>15.2e}")

    class Energy(torch.nn.Module):  # plain model as energy_and_forces expects it
        def forward(self, d):
            return call_pointnet(model, d)[:, 0]

    def best_time(fn, repeats=3):  # CPU time of this process: robust on a shared machine
        fn()
        times = []
        for _ in range(repeats):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times)

    plain = best_time(lambda: energy_and_forces(Energy(), data))
    wrapped = best_time(lambda: energy_and_forces(sym_energy, data))
    frames = sym_energy.frames(data).frames.shape[0] / len(data)
    print(f"\nCPU cost (energy + forces): plain {1e3 * plain:.1f} ms, ECSE {1e3 * wrapped:.1f} ms, "
          f"ratio {wrapped / plain:.1f} for {frames:.1f} frames per structure "
          f"(ratio / frames = {wrapped / plain / frames:.2f})")


if __name__ == "__main__":
    main()
