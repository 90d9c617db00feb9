"""RotationalAverage and its rotation grids: exact for invariant backbones, error shrinking
with the grid for non-invariant ones, vector outputs rotated back, bad input refused."""
import math

import pytest
import torch
from torch_geometric.data import Batch

from torch_pet.ecse.rotational_average import (RotationalAverage, fibonacci_sphere,
                                               gauss_grid_rotations, random_rotation_grid,
                                               sphere_grid_rotations)
from torch_pet.testing import random_molecule, random_rotation, symmetry_error


class Anisotropic(torch.nn.Module):
    """Per structure: rotation-dependent scalars and a vector, sums over atoms of
    polynomials of degree <= 4 in the coordinates; [B, 5] = (2 scalars, vector)."""

    def forward(self, data):
        x = data.pos
        batch = data.batch if data.batch is not None else torch.zeros(x.shape[0], dtype=torch.long)
        b = int(batch.max()) + 1
        atomic = torch.stack([x[:, 0] ** 2 * x[:, 2] + 0.5 * x[:, 1] ** 4 + x[:, 0] * x[:, 1],
                              (x * x).sum(1)], dim=1)
        # odd degree: a vector (l = 1) part survives the average (even degrees have none)
        vector = torch.stack([x[:, 0] ** 3, x[:, 0] * x[:, 1] * x[:, 2] + x[:, 1] ** 3,
                              x[:, 2] ** 3], dim=1)
        out = x.new_zeros(b, 5).index_add(0, batch, torch.cat([atomic, vector], dim=1))
        return out


class Invariant(torch.nn.Module):
    def forward(self, data):
        x = data.pos - data.pos.mean(0)
        d = torch.cdist(x, x)
        return torch.stack([d.sum(), (x * x).sum()]).reshape(1, 2) if data.batch is None or \
            int(data.batch.max()) == 0 else _per_structure_invariants(data)


def _per_structure_invariants(data):
    rows = []
    for b in range(int(data.batch.max()) + 1):
        x = data.pos[data.batch == b]
        d = torch.cdist(x, x)
        rows.append(torch.stack([d.sum(), (d ** 3).sum()]))
    return torch.stack(rows)


def _data():
    return Batch.from_data_list([random_molecule(6, generator=1), random_molecule(5, generator=2)])


def test_grids_are_rotations_and_uniform():
    for grid in (sphere_grid_rotations(20, 6), random_rotation_grid(30, seed=1)):
        eye = torch.eye(3, dtype=torch.float64).expand_as(grid)
        assert torch.allclose(grid @ grid.transpose(1, 2), eye, atol=1e-12)
        assert torch.allclose(torch.linalg.det(grid), torch.ones(grid.shape[0], dtype=torch.float64))
    n = fibonacci_sphere(500)
    assert torch.allclose(n.norm(dim=1), torch.ones(500, dtype=torch.float64))
    assert n.mean(0).abs().max() < 1e-2  # balanced
    second = (n[:, :, None] * n[:, None, :]).mean(0)  # isotropic: <n nᵀ> = 1/3
    assert torch.allclose(second, torch.eye(3, dtype=torch.float64) / 3, atol=2e-3)
    # the grid maps z to the Fibonacci directions, in-plane angles do not move z
    grid = sphere_grid_rotations(7, 3)
    assert torch.allclose(grid[:, :, 2], fibonacci_sphere(7).repeat_interleave(3, 0), atol=1e-12)
    assert sphere_grid_rotations(7, 3).shape == (21, 3, 3)
    assert torch.equal(random_rotation_grid(4, seed=2), random_rotation_grid(4, seed=2))


def test_average_is_exact_for_an_invariant_model():
    data = _data()
    model = Invariant()
    for grid in (sphere_grid_rotations(6, 2), random_rotation_grid(5)):
        average = RotationalAverage(model, grid)
        assert torch.allclose(average(data), model(data), rtol=1e-12)
        assert symmetry_error(average, data, "scalar", rotation=random_rotation(3)) < 1e-12


def test_single_rotation_is_the_rotated_model_and_vectors_rotate_back():
    data = _data()
    model = Anisotropic()
    rotation = random_rotation(4)
    average = RotationalAverage(model, rotation[None], output="vector",
                                adapter=lambda m, b: m(b)[:, 2:])
    rotated = data.clone()
    rotated.pos = data.pos @ rotation
    assert torch.allclose(average(data), model(rotated)[:, 2:] @ rotation.T, atol=1e-12)
    # chunking (one copy per call) changes nothing
    chunked = RotationalAverage(model, random_rotation_grid(4), chunk_size=1)
    assert torch.allclose(chunked(data), RotationalAverage(model, random_rotation_grid(4))(data),
                          atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_error_decreases_with_grid_size(dtype):
    data = _data()
    data.pos = data.pos.to(dtype)
    model = Anisotropic()
    rotations = [random_rotation(s, dtype=dtype) for s in (11, 12)]

    def error(grid, output="scalar", columns=slice(0, 2)):
        average = RotationalAverage(model, grid.to(dtype), output=output,
                                    adapter=lambda m, b: m(b)[:, columns])
        return max(symmetry_error(average, data, output, rotation=r) for r in rotations)

    raw = max(symmetry_error(lambda d: model(d)[:, :2], data, "scalar", rotation=r) for r in rotations)
    sphere = [error(sphere_grid_rotations(n, m)) for n, m in ((6, 3), (50, 8), (400, 16))]
    assert raw > 0.1
    assert sphere[0] < raw and sphere[1] < sphere[0] / 10 and sphere[2] < sphere[1] < 1e-3
    random_small, random_large = error(random_rotation_grid(10)), error(random_rotation_grid(1000))
    assert random_large < random_small
    assert sphere[2] < random_large  # the designed grid beats Monte Carlo at a similar size
    # The model is a polynomial of degree 4 in the coordinates: the Gauss product grid of
    # degree 4 integrates it exactly (75 rotations), degree 2 does not.
    gauss2, gauss4 = (_gauss_error(model, data, rotations, d) for d in (2, 4))
    floor = 1e-5 if dtype == torch.float32 else 1e-12
    assert gauss2 > 1e-3 and gauss4 < floor
    vector = [error(sphere_grid_rotations(n, m), "vector", slice(2, 5)) for n, m in ((6, 3), (400, 16))]
    assert vector[1] < vector[0] / 100


def _gauss_error(model, data, rotations, degree):
    grid, weights = gauss_grid_rotations(degree, dtype=data.pos.dtype)
    average = RotationalAverage(model, grid, weights=weights, adapter=lambda m, b: m(b)[:, :2])
    return max(symmetry_error(average, data, "scalar", rotation=r) for r in rotations)


def test_gauss_grid_weights_and_size():
    grid, weights = gauss_grid_rotations(6)
    assert grid.shape == (4 * 49, 3, 3) and weights.shape == (4 * 49,)
    assert float(weights.sum()) == pytest.approx(1.0) and bool((weights > 0).all())
    # exact for degree <= 6: the mean of (R e_z)_z^6 over SO(3) is 1/7
    z = grid[:, 2, 2]
    assert float((weights * z ** 6).sum()) == pytest.approx(1 / 7, abs=1e-13)
    with pytest.raises(ValueError, match="degree"):
        gauss_grid_rotations(-1)


def test_per_atom_average():
    data = _data()

    class PerAtom(torch.nn.Module):
        def forward(self, batch):
            return batch.pos[:, :1] ** 2 + (batch.pos ** 2).sum(1, keepdim=True)

    grid, weights = gauss_grid_rotations(2)
    y = RotationalAverage(PerAtom(), grid, weights=weights, per_atom=True)(data)
    # <x_1^2> over SO(3) = |x|^2 / 3, integrated exactly by the degree-2 grid
    r2 = (data.pos ** 2).sum(1, keepdim=True)
    assert torch.allclose(y, r2 * (1 + 1 / 3), atol=1e-12)
    fibonacci = RotationalAverage(PerAtom(), sphere_grid_rotations(200, 4), per_atom=True)(data)
    assert torch.allclose(fibonacci, r2 * (1 + 1 / 3), atol=1e-2)


def test_bad_input():
    model = Invariant()
    with pytest.raises(ValueError, match="rotations must be a tensor of shape"):
        RotationalAverage(model, torch.eye(3))
    with pytest.raises(ValueError, match="proper rotations"):
        RotationalAverage(model, -torch.eye(3)[None])
    with pytest.raises(ValueError, match="output"):
        RotationalAverage(model, torch.eye(3)[None], output="spinor")
    with pytest.raises(ValueError, match="weights"):
        RotationalAverage(model, random_rotation_grid(2), weights=torch.ones(2))
    with pytest.raises(ValueError, match="chunk_size"):
        RotationalAverage(model, random_rotation_grid(2), chunk_size=0)
    with pytest.raises(ValueError, match="num_points"):
        fibonacci_sphere(0)
    with pytest.raises(ValueError, match="num_inplane"):
        sphere_grid_rotations(4, 0)
    with pytest.raises(ValueError, match="num_rotations"):
        random_rotation_grid(0)
    average = RotationalAverage(Anisotropic(), random_rotation_grid(2), per_atom=True)
    with pytest.raises(ValueError, match="per_atom"):
        average(_data())
    with pytest.raises(ValueError, match="data.pos"):
        average(Batch(pos=torch.zeros(0, 3)))
    assert math.isclose(float(RotationalAverage(model, random_rotation_grid(3)).weights.sum()), 1.0)
