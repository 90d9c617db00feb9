import torch
from torch_geometric.data import Batch, Data

from torch_pet.outputs import OutputKind
from torch_pet.rotations import random_rotations, rotate_structure
from torch_pet.training.augment import augment_batch


def _periodic_batch(dtype=torch.float64):
    structures = []
    for n in (3, 4):
        cell = torch.eye(3, dtype=dtype) * 4 + 0.3 * torch.rand(3, 3, dtype=dtype)
        structures.append(Data(
            z=torch.ones(n, dtype=torch.long), pos=torch.rand(n, 3, dtype=dtype) * 4,
            forces=torch.randn(n, 3, dtype=dtype), energy=torch.randn(1, dtype=dtype),
            cell=cell.unsqueeze(0), pbc=torch.ones(1, 3, dtype=torch.bool),
            stress=torch.randn(1, 3, 3, dtype=dtype)))
    return Batch.from_data_list(structures)


def test_random_rotations_are_haar_o3():
    generator = torch.Generator().manual_seed(1)
    rotations = random_rotations(2000, generator=generator, improper_probability=0.5)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), eye.expand(2000, 3, 3))
    det = torch.linalg.det(rotations)
    assert torch.allclose(det.abs(), torch.ones_like(det))
    assert 900 < int((det < 0).sum()) < 1100  # improper with probability 1/2
    assert rotations.mean(0).abs().max() < 0.05  # Haar: zero mean matrix entries
    proper = random_rotations(100, generator=generator)
    assert (torch.linalg.det(proper) > 0).all()
    # the same seed gives the same rotations
    again = random_rotations(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again, random_rotations(5, generator=torch.Generator().manual_seed(3)))


def test_rotate_structure_is_consistent_for_every_field():
    batch = _periodic_batch()
    original = batch.pos.clone()
    rotations = random_rotations(2, generator=torch.Generator().manual_seed(0),
                                 improper_probability=0.5)
    out = rotate_structure(batch, rotations)
    for b in range(2):
        R = rotations[b]
        atoms = batch.batch == b
        torch.testing.assert_close(out.pos[atoms], batch.pos[atoms] @ R.T)
        torch.testing.assert_close(out.forces[atoms], batch.forces[atoms] @ R.T)
        torch.testing.assert_close(out.cell[b], batch.cell[b] @ R.T)
        torch.testing.assert_close(out.stress[b], R @ batch.stress[b] @ R.T)
        # fractional coordinates are unchanged: the periodic structure is only rotated
        frac = batch.pos[atoms] @ torch.linalg.inv(batch.cell[b])
        torch.testing.assert_close(out.pos[atoms] @ torch.linalg.inv(out.cell[b]), frac)
    torch.testing.assert_close(out.energy, batch.energy)
    assert not torch.equal(out.pos, batch.pos)
    assert torch.equal(batch.pos, original)  # the input batch is left untouched


def test_augment_batch_draws_one_rotation_per_structure():
    one = Data(z=torch.tensor([6, 1]), pos=torch.tensor([[0.0, 0, 0], [1.0, 0, 0]]),
               forces=torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
    batch = Batch.from_data_list([one, one.clone()])
    out = augment_batch(batch, torch.Generator().manual_seed(0))
    assert not torch.allclose(out.pos[1], out.pos[3])  # different rotations
    torch.testing.assert_close(out.pos[1].norm(), torch.tensor(1.0))
    # the force on an atom stays parallel to its bond after rotation
    torch.testing.assert_close(out.forces[1], -out.pos[1])


def test_vector_targets_rotate_with_the_structure():
    one = Data(z=torch.tensor([8, 1]), pos=torch.tensor([[0.0, 0, 0], [0.0, 0, 1.0]]),
               dipole=torch.tensor([[0.0, 0.0, 2.0]]))
    batch = Batch.from_data_list([one, one.clone(), one.clone()])
    out = augment_batch(batch, torch.Generator().manual_seed(5),
                        labels={"dipole": OutputKind.VECTOR})
    # the dipole stays parallel to the rotated bond, with the same length
    torch.testing.assert_close(out.dipole, 2.0 * out.pos[1::2])
