"""The Trainer compares and augments each output as its OutputKind says."""
import torch
from torch_geometric.data import Data

from torch_pet.outputs import ENERGY, FORCES, OutputKind
from torch_pet.training import Trainer, TrainingConfig


class _Dipole(torch.nn.Module):
    """sum_i w z_i (x_i - centroid) per structure [B, 3]: exactly O(3) equivariant."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, data):
        batch, count = data.batch, torch.bincount(data.batch).to(data.pos.dtype)
        centroid = data.pos.new_zeros(len(count), 3).index_add(0, batch, data.pos) / count[:, None]
        rows = self.weight * data.z[:, None].to(data.pos.dtype) * (data.pos - centroid[batch])
        return rows.new_zeros(len(count), 3).index_add(0, batch, rows)


def _dipoles(num):
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(num):
        data = Data(z=torch.tensor([8, 1, 1]), pos=torch.randn(3, 3, generator=generator,
                                                               dtype=torch.float64))
        data.dipole = _Dipole()(data.clone().update({"batch": torch.zeros(3, dtype=torch.long)})).detach()
        out.append(data)
    return out


def _train_rmse(tmp_path, target_is_vector):
    data = _dipoles(12)
    config = TrainingConfig(epochs=1, batch_size=4, lr=1e-12, energy_key=None, forces_key=None,
                            target_key="dipole", target_is_vector=target_is_vector,
                            progress=False, plot=False)
    trainer = Trainer(_Dipole(), data[:8], data[8:], config, str(tmp_path))
    assert trainer.outputs == {"target": ("dipole", OutputKind.VECTOR if target_is_vector
                                          else OutputKind.SCALAR)}
    return trainer.train_epoch()["train_target_rmse"]


def test_vector_targets_are_augmented_with_the_structure(tmp_path):
    # the model is exact: with the dipole rotated like the positions the error stays 0 ...
    assert _train_rmse(tmp_path / "vector", True) < 1e-12
    # ... and a target taken as invariant is left behind by the rotated positions
    assert _train_rmse(tmp_path / "scalar", False) > 0.1


def test_energy_and_forces_kinds(tmp_path, methane_small):
    from toy_potential import ToyPotential

    train, val = methane_small
    config = TrainingConfig(epochs=1, batch_size=8, progress=False, plot=False)
    trainer = Trainer(ToyPotential(), train, val, config, str(tmp_path))
    assert trainer.outputs == {"energy": ("energy", ENERGY), "forces": ("forces", FORCES)}
