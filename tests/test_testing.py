"""torch_pet.testing: rotations, random structures, and the symmetry assertions themselves
(they must pass on symmetric functions and fail on broken ones)."""
import math

import pytest
import torch
from torch_geometric.data import Batch

from torch_pet.testing import (DEFAULT_RTOL, assert_equivariant, assert_invariant, permute_atoms,
                               random_methane, random_molecule, random_periodic_box,
                               random_rotation, rotate_structure, symmetry_error, water_box)

DTYPES = [torch.float32, torch.float64]


# Symmetric reference functions of a batch (one row per structure).
def _pair_energy(data):
    """sum over pairs of exp(-r): invariant under rotations, translations, permutations."""
    batch = _batch(data)
    distance = torch.cdist(data.pos, data.pos)
    same = (batch[:, None] == batch[None, :]) & ~torch.eye(len(batch), dtype=torch.bool)
    atomic = torch.where(same, torch.exp(-distance), 0).sum(1)
    return atomic.new_zeros(int(batch.max()) + 1).index_add(0, batch, atomic)


def _dipole(data):
    """sum_i z_i (x_i - centroid): a vector."""
    batch = _batch(data)
    count = torch.bincount(batch).to(data.pos.dtype)
    centroid = data.pos.new_zeros(len(count), 3).index_add(0, batch, data.pos) / count[:, None]
    rows = data.z[:, None].to(data.pos.dtype) * (data.pos - centroid[batch])
    return rows.new_zeros(len(count), 3).index_add(0, batch, rows)


def _gyration(data):
    """sum_i (x_i - c)(x_i - c)^T: a rank-2 tensor."""
    batch = _batch(data)
    count = torch.bincount(batch).to(data.pos.dtype)
    centroid = data.pos.new_zeros(len(count), 3).index_add(0, batch, data.pos) / count[:, None]
    d = data.pos - centroid[batch]
    return d.new_zeros(len(count), 3, 3).index_add(0, batch, d[:, :, None] * d[:, None, :])


def _batch(data):
    batch = getattr(data, "batch", None)
    return torch.zeros(data.pos.shape[0], dtype=torch.long) if batch is None else batch


def _molecules(dtype=torch.float64):
    return Batch.from_data_list([random_molecule(6, generator=1, dtype=dtype),
                                 random_methane(2, dtype=dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("improper", [False, True])
def test_random_rotation_is_orthogonal_reproducible(dtype, improper):
    rotation = random_rotation(7, dtype=dtype, improper=improper)
    assert rotation.dtype == dtype and rotation.shape == (3, 3)
    eye = torch.eye(3, dtype=dtype)
    assert torch.allclose(rotation @ rotation.T, eye, atol=10 * torch.finfo(dtype).eps)
    assert float(torch.det(rotation)) == pytest.approx(-1.0 if improper else 1.0, abs=1e-5)
    assert torch.equal(rotation, random_rotation(7, dtype=dtype, improper=improper))
    assert not torch.equal(rotation, random_rotation(8, dtype=dtype, improper=improper))
    generator = torch.Generator().manual_seed(3)
    assert not torch.equal(random_rotation(generator), random_rotation(generator))


def test_random_rotation_is_uniform():
    # Haar measure on SO(3): E[R] = 0, E[trace R] = 0 and E[(trace R)^2] = 1 (the vector
    # representation is irreducible); a uniform angle about a random axis gives E[trace] = 1.
    rotations = torch.stack([random_rotation(seed) for seed in range(2000)])
    assert float(rotations.mean(0).abs().max()) < 0.05
    trace = rotations.diagonal(dim1=1, dim2=2).sum(-1)
    assert float(trace.mean()) == pytest.approx(0.0, abs=0.1)
    assert float((trace * trace).mean()) == pytest.approx(1.0, abs=0.1)
    with pytest.raises(TypeError, match="int seed or a torch.Generator"):
        random_rotation("seed")


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_structures(dtype):
    molecule = random_molecule(12, generator=0, dtype=dtype, min_distance=0.95)
    assert molecule.pos.shape == (12, 3) and molecule.pos.dtype == dtype and molecule.z.dtype == torch.long
    distance = torch.cdist(molecule.pos.double(), molecule.pos.double()) + 1e3 * torch.eye(12)
    assert float(distance.min()) >= 0.95 - 1e-6
    assert float(distance.min(1).values.max()) <= 1.6 + 1e-6  # every atom bonded to some atom

    methane = random_methane(0, dtype=dtype)
    assert methane.z.tolist() == [6, 1, 1, 1, 1]
    length = methane.pos[1:].double().norm(dim=1)
    assert bool(((length >= 0.8 - 1e-6) & (length <= 1.6 + 1e-6)).all())

    box = random_periodic_box(16, box_length=5.0, skew=0.3, generator=0, dtype=dtype)
    assert box.cell.shape == (1, 3, 3) and box.pbc.tolist() == [[True, True, True]]
    assert float(box.cell[0, 0, 1]) != 0  # triclinic
    frac = box.pos.double() @ torch.linalg.inv(box.cell[0].double())
    delta = frac[:, None] - frac[None]
    delta = (delta - delta.round()) @ box.cell[0].double()
    assert float((delta.norm(dim=-1) + 1e3 * torch.eye(16)).min()) >= 0.9 - 1e-6
    with pytest.raises(ValueError, match="num_atoms must be >= 1"):
        random_molecule(0)
    with pytest.raises(RuntimeError, match="box too small"):
        random_periodic_box(200, box_length=3.0, min_distance=1.0, generator=0)


def test_water_box_density_and_geometry():
    water = water_box(64, generator=0)
    assert water.pos.shape == (192, 3) and water.z.tolist()[:3] == [8, 1, 1]
    length = float(water.cell[0, 0, 0])
    assert length == pytest.approx(12.42, abs=0.01)  # 1 g/cm^3
    oh = (water.pos[1::3] - water.pos[0::3]).norm(dim=1)
    assert torch.allclose(oh, torch.full_like(oh, 0.9572))
    cosine = ((water.pos[1::3] - water.pos[0::3]) * (water.pos[2::3] - water.pos[0::3])).sum(1) / 0.9572 ** 2
    assert torch.allclose(cosine, torch.full_like(cosine, math.cos(math.radians(104.52))))
    assert water_box(512, generator=0).pos.shape == (1536, 3)


def test_rotate_and_permute_structure():
    box = random_periodic_box(6, generator=0)
    box.forces = torch.randn(6, 3, dtype=torch.float64)
    box.stress = torch.randn(1, 3, 3, dtype=torch.float64)
    rotation = random_rotation(1)
    rotated = rotate_structure(box, rotation)
    assert torch.allclose(rotated.pos, box.pos @ rotation.T)
    assert torch.allclose(rotated.cell, box.cell @ rotation.T)
    assert torch.allclose(rotated.forces, box.forces @ rotation.T)
    assert torch.allclose(rotated.stress, rotation @ box.stress @ rotation.T)
    assert torch.equal(box.pos, random_periodic_box(6, generator=0).pos)  # input untouched
    permutation = torch.tensor([5, 0, 1, 2, 3, 4])
    permuted = permute_atoms(box, permutation)
    assert torch.equal(permuted.pos, box.pos[permutation]) and torch.equal(permuted.z, box.z[permutation])
    assert torch.equal(permuted.cell, box.cell) and torch.equal(permuted.stress, box.stress)


@pytest.mark.parametrize("dtype", DTYPES)
def test_assertions_pass_on_symmetric_functions(dtype):
    data = _molecules(dtype)
    assert assert_invariant(_pair_energy, data, improper=True) <= DEFAULT_RTOL[dtype]
    assert assert_equivariant(_dipole, data, "vector") <= DEFAULT_RTOL[dtype]
    assert assert_equivariant(_gyration, data, "tensor", improper=True) <= DEFAULT_RTOL[dtype]
    assert assert_equivariant(_pair_energy, data, "forces") <= DEFAULT_RTOL[dtype]


def test_assertions_fail_on_broken_functions():
    data = _molecules()
    with pytest.raises(AssertionError, match="assert_invariant: relative error"):
        assert_invariant(lambda d: _pair_energy(d) + _dipole(d)[:, 0], data)
    with pytest.raises(AssertionError, match=r"assert_equivariant\(vector\)"):
        assert_equivariant(lambda d: _dipole(d) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), data)
    origin_distance = lambda d: d.pos.norm(dim=1).sum()  # noqa: E731
    assert_invariant(origin_distance, random_molecule(5, generator=0), translate=False)
    with pytest.raises(AssertionError, match="translation"):
        assert_invariant(origin_distance, random_molecule(5, generator=0))
    centroid_distance = lambda d: (d.pos - d.pos.mean(0)).norm(dim=1)  # noqa: E731
    assert_invariant(centroid_distance, random_molecule(7, generator=3), per_atom=True)
    with pytest.raises(AssertionError, match="permutation"):  # rows must follow the atoms
        assert_invariant(centroid_distance, random_molecule(7, generator=3))
    # A pseudo-scalar det[d, G d, G^2 d] (d dipole, G gyration tensor): invariant under
    # rotations, flips sign under inversion.
    def triple(d):
        dipole, gyration = _dipole(d), _gyration(d)
        first = (gyration @ dipole[:, :, None]).squeeze(-1)
        second = (gyration @ first[:, :, None]).squeeze(-1)
        return torch.linalg.det(torch.stack([dipole, first, second], dim=-1))

    assert_invariant(triple, data, permute=False)
    with pytest.raises(AssertionError, match="inversion"):
        assert_invariant(triple, data, improper=True, permute=False)
    with pytest.raises(ValueError, match="kind must be one of"):
        assert_equivariant(_dipole, data, "pseudovector")


def test_symmetry_error_measures_relative_error():
    data = _molecules()
    rotation = random_rotation(0)
    broken = lambda d: _dipole(d) * torch.tensor([1.0, 1.0, 1.5], dtype=torch.float64)  # noqa: E731
    assert symmetry_error(broken, data, "vector", rotation=rotation) > 0.01
    assert symmetry_error(_dipole, data, "vector", rotation=rotation) < 1e-14
    assert symmetry_error(_dipole, data, "vector", rotation=None) == 0.0
