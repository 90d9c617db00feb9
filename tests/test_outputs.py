"""torch_pet.outputs.OutputKind: parsing, shapes, the rotation law of each kind (against
explicit einsums), composition, improper rotations and errors."""
import pytest
import torch

from torch_pet.outputs import ENERGY, FORCES, STRESS, OutputKind
from torch_pet.rotations import random_rotation, random_rotations

DTYPES = [torch.float32, torch.float64]
KINDS = [OutputKind.SCALAR, OutputKind.VECTOR, OutputKind.TENSOR]


def _tol(dtype):
    return {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}


def _explicit(kind, y, rotation):
    """The transformation law written out: R per row ([rows, 3, 3]) or shared ([3, 3])."""
    if kind.rank == 0:
        return y
    per_row = rotation.dim() == 3
    if kind.rank == 1:
        return torch.einsum("rij,rcj->rci" if per_row else "ij,rcj->rci", rotation, y)
    return torch.einsum("rik,rckl,rjl->rcij" if per_row else "ik,rckl,jl->rcij",
                        rotation, y, rotation)


def _sample(kind, rows, channels=2, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, channels, *kind.shape, generator=generator, dtype=torch.float64).to(dtype)


def test_parse_round_trip_and_members():
    assert [str(kind) for kind in KINDS] == ["scalar", "vector", "tensor"]
    assert OutputKind.choices() == ("scalar", "vector", "tensor", "per-atom scalar",
                                    "per-atom vector", "per-atom tensor")
    for name in OutputKind.choices():
        kind = OutputKind.parse(name)
        assert str(kind) == name and OutputKind.parse(str(kind)) == kind
        assert OutputKind.parse(kind) is kind
        assert eval(repr(kind), {"OutputKind": OutputKind}) == kind
    assert OutputKind.parse("vector") == OutputKind.VECTOR != FORCES
    assert FORCES == OutputKind(1, per_atom=True) == OutputKind.parse("per-atom vector")
    assert ENERGY == OutputKind.SCALAR and STRESS == OutputKind.TENSOR
    assert OutputKind.parse("vector", per_atom=True) == FORCES
    assert OutputKind.parse(FORCES, per_atom=False) == OutputKind.VECTOR
    assert FORCES.with_per_atom(False) == OutputKind.VECTOR and not OutputKind.VECTOR.per_atom
    assert len({*KINDS, *(kind.with_per_atom() for kind in KINDS)}) == 6  # hashable, distinct
    assert [kind.shape for kind in KINDS] == [(), (3,), (3, 3)]
    assert [kind.components for kind in KINDS] == [1, 3, 9]
    with pytest.raises(AttributeError):
        OutputKind.VECTOR.rank = 2  # frozen


def test_parse_rejects_unknown_kinds_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"output must be one of \['scalar', 'vector', 'tensor', "
                                         r"'per-atom scalar'.*got 'pseudovector'"):
        OutputKind.parse("pseudovector", "output")
    with pytest.raises(ValueError, match="kind must be one of"):
        OutputKind.parse("Vector")  # spellings are exact
    with pytest.raises(TypeError, match="kind must be an OutputKind or one of"):
        OutputKind.parse(1)
    with pytest.raises(ValueError, match="rank must be 0 .* 1 .* or 2"):
        OutputKind(3)
    with pytest.raises(TypeError, match="per_atom must be a bool"):
        OutputKind(1, per_atom=1)


def test_rows_and_shape_checks():
    from torch_geometric.data import Batch, Data

    one = Data(z=torch.ones(4, dtype=torch.long), pos=torch.zeros(4, 3))
    batch = Batch.from_data_list([one, one])
    assert OutputKind.VECTOR.rows(batch) == 2 and FORCES.rows(batch) == 8
    assert OutputKind.SCALAR.rows(one) == 1 and FORCES.rows(one) == 4
    assert OutputKind.TENSOR.has_shape(torch.zeros(2, 5, 3, 3))
    assert not OutputKind.TENSOR.has_shape(torch.zeros(2, 9))
    assert OutputKind.VECTOR.has_shape(torch.zeros(2, 3)) and not OutputKind.VECTOR.has_shape(torch.zeros(3))
    assert OutputKind.SCALAR.has_shape(torch.zeros(2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_rotate_matches_explicit_einsum(kind, dtype):
    y = _sample(kind, rows=5, dtype=dtype)
    shared = random_rotation(1, dtype=dtype)
    per_row = random_rotations(5, generator=2, improper_probability=0.5, dtype=dtype)
    torch.testing.assert_close(kind.rotate(y, shared), _explicit(kind, y, shared), **_tol(dtype))
    torch.testing.assert_close(kind.rotate(y, per_row), _explicit(kind, y, per_row), **_tol(dtype))
    # flattened components ([rows, C·3^rank]) rotate like the structured ones
    flat = y.reshape(5, -1)
    torch.testing.assert_close(kind.rotate(flat, per_row), _explicit(kind, y, per_row).reshape(5, -1),
                               **_tol(dtype))
    # rotation given in another dtype is cast to y's
    assert kind.rotate(y, shared.double()).dtype == dtype


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_per_atom_kinds_take_per_structure_rotations_with_batch(kind):
    batch = torch.tensor([0, 0, 1, 1, 1, 2])
    rotations = random_rotations(3, generator=4, improper_probability=0.5)
    y = _sample(kind, rows=6, seed=1)
    expected = _explicit(kind, y, rotations[batch])
    torch.testing.assert_close(kind.with_per_atom().rotate(y, rotations, batch), expected)
    # per-structure kinds ignore batch: their rows are the structures
    z = _sample(kind, rows=3, seed=2)
    torch.testing.assert_close(kind.rotate(z, rotations, batch), _explicit(kind, z, rotations))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_rotations_compose(kind, dtype):
    # rotating by R1 then by R2 is rotating by R2·R1 (x -> x·R1ᵀ·R2ᵀ = x·(R2·R1)ᵀ)
    y = _sample(kind, rows=4, dtype=dtype, seed=3)
    r1, r2 = random_rotation(5, dtype=dtype), random_rotation(6, dtype=dtype, improper=True)
    torch.testing.assert_close(kind.rotate(kind.rotate(y, r1), r2), kind.rotate(y, r2 @ r1),
                               **_tol(dtype))
    # and R then Rᵀ is the identity
    torch.testing.assert_close(kind.rotate(kind.rotate(y, r1), r1.T), y, **_tol(dtype))


def test_improper_rotations():
    y = {kind: _sample(kind, rows=3, seed=7) for kind in KINDS}
    rotation = random_rotation(8)
    inversion = -torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(OutputKind.VECTOR.rotate(y[OutputKind.VECTOR], inversion), -y[OutputKind.VECTOR])
    torch.testing.assert_close(OutputKind.TENSOR.rotate(y[OutputKind.TENSOR], inversion), y[OutputKind.TENSOR])
    for kind in KINDS:  # -R = R times the inversion: vectors flip, scalars and tensors do not
        sign = -1.0 if kind.rank == 1 else 1.0
        torch.testing.assert_close(kind.rotate(y[kind], -rotation), sign * kind.rotate(y[kind], rotation))
    # lengths and traces are invariant under any O(3) element
    v = OutputKind.VECTOR.rotate(y[OutputKind.VECTOR], -rotation)
    torch.testing.assert_close(v.norm(dim=-1), y[OutputKind.VECTOR].norm(dim=-1))
    t = OutputKind.TENSOR.rotate(y[OutputKind.TENSOR], -rotation)
    torch.testing.assert_close(t.diagonal(dim1=-2, dim2=-1).sum(-1),
                               y[OutputKind.TENSOR].diagonal(dim1=-2, dim2=-1).sum(-1))


def test_rotate_rejects_bad_input():
    with pytest.raises(ValueError, match=r"rotation must be a \[3, 3\] or \[rows, 3, 3\]"):
        OutputKind.VECTOR.rotate(torch.zeros(2, 3), torch.eye(2))
    with pytest.raises(ValueError, match="a vector needs its last dims to be .* multiple of 3"):
        OutputKind.VECTOR.rotate(torch.zeros(2, 4), torch.eye(3))
    with pytest.raises(ValueError, match="one rotation per row needs y with 3 rows"):
        OutputKind.TENSOR.rotate(torch.zeros(2, 3, 3), torch.eye(3).expand(3, 3, 3))
    with pytest.raises(TypeError, match="must be floating point"):
        OutputKind.VECTOR.rotate(torch.zeros(2, 3, dtype=torch.long), torch.eye(3))
    scalars = torch.arange(4.0)
    assert OutputKind.SCALAR.rotate(scalars, torch.eye(3)) is scalars  # invariant: untouched
    empty = torch.zeros(0, 3)
    assert OutputKind.VECTOR.rotate(empty, torch.zeros(0, 3, 3)).shape == (0, 3)


def test_error_is_componentwise():
    prediction = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[[1.0, 0.0, 3.0]], [[1.0, 1.0, 1.0]]])  # [B, 1, 3] label
    error = OutputKind.VECTOR.error(prediction, target)
    assert error.shape == prediction.shape
    torch.testing.assert_close(error, torch.tensor([[0.0, 2.0, 0.0], [-1.0, -1.0, -1.0]]))
    with pytest.raises(ValueError, match=r"vector target has shape \(2, 2\).*prediction's \(2, 3\)"):
        OutputKind.VECTOR.error(prediction, torch.zeros(2, 2))
