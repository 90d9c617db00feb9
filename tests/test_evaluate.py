"""torch_pet.evaluate: rotation errors use the output's kind (and the forces' rotation law)."""
import pytest
import torch

from torch_pet.evaluate import rotation_errors
from torch_pet.testing import random_molecule


class _Dipole(torch.nn.Module):
    """Per structure: sum_i w z_i (x_i - centroid) [B, 3] (equivariant), or its squared
    length [B, 1] (invariant, an energy with forces)."""

    def __init__(self, energy: bool):
        super().__init__()
        self.weight, self.energy = torch.nn.Parameter(torch.tensor(0.5)), energy

    def forward(self, data):
        batch, count = data.batch, torch.bincount(data.batch).to(data.pos.dtype)
        centroid = data.pos.new_zeros(len(count), 3).index_add(0, batch, data.pos) / count[:, None]
        rows = self.weight * data.z[:, None].to(data.pos.dtype) * (data.pos - centroid[batch])
        dipole = rows.new_zeros(len(count), 3).index_add(0, batch, rows)
        return dipole.pow(2).sum(-1, keepdim=True) if self.energy else dipole


def test_rotation_errors_rotate_the_output_as_its_kind():
    dataset = [random_molecule(5, generator=seed) for seed in range(4)]
    vector = rotation_errors(_Dipole(False), dataset, forces=False, num_rotations=2,
                             output_kind="vector")
    assert vector["rotation_energy_max"] < 1e-12
    as_scalar = rotation_errors(_Dipole(False), dataset, forces=False, num_rotations=2)
    assert as_scalar["rotation_energy_max"] > 1e-2  # a vector is not invariant
    energy = rotation_errors(_Dipole(True), dataset, forces=True, num_rotations=2)
    assert energy["rotation_energy_max"] < 1e-12 and energy["rotation_forces_max"] < 1e-12
    with pytest.raises(ValueError, match="output_kind must be a per-structure kind"):
        rotation_errors(_Dipole(False), dataset, output_kind="per-atom vector")
    with pytest.raises(ValueError, match="output_kind must be one of"):
        rotation_errors(_Dipole(False), dataset, output_kind="axial")
