"""radius_graph on the inputs of issue 13: near-flat and subnormal extents, astronomically
large cutoffs, cells and coordinates (all must give the complete list); outputs that cannot
fit and the documented limits (ValueError before any allocation, the same on the kernel and
the reference)."""
import time

import numpy as np
import pytest
import torch

from torch_pet import _extension
from torch_pet.ops import radius_graph
from torch_pet.ops.reference import radius_graph_reference

DTYPES = [torch.float32, torch.float64]


def reference(pos, r, cell=None, pbc=None, loop=False, max_edges=2**31 - 1):
    """The reference on one structure (all or none of the axes periodic)."""
    cell = torch.zeros(3, 3, dtype=pos.dtype) if cell is None else cell
    pbc = torch.tensor([cell.abs().sum() > 0] * 3) if pbc is None else torch.as_tensor(pbc)
    return radius_graph_reference(pos, torch.tensor([0, pos.shape[0]]), cell[None], pbc[None], r, loop,
                                  max_edges)


def assert_same(got, expected):
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def ckdtree_count(pos, r):
    from scipy.spatial import cKDTree

    return 2 * len(cKDTree(pos.double().numpy()).query_pairs(r))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("thickness", [1e-20, 1e-300, 0.0, "subnormal"])
def test_near_flat_sheet_on_the_cell_list(dtype, thickness):
    """Issue 13: 400 atoms of a sheet with pos[:, 2] = 1e-20 * randn gave 0 edges."""
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(400, 3, generator=g, dtype=torch.float64) * 20.0
    tiny = {torch.float32: 1e-42, torch.float64: 1e-310}[dtype] if thickness == "subnormal" else thickness
    pos[:, 2] = tiny * torch.randn(400, generator=g, dtype=torch.float64)
    pos = pos.to(dtype)
    got = radius_graph(pos, 3.0)
    assert_same(got, reference(pos, 3.0))
    assert got[0].shape[1] == ckdtree_count(pos, 3.0) > 4000
    # The same sheet periodic in its plane (cell list with a flat non-periodic axis).
    cell = torch.diag(torch.tensor([20.0, 20.0, 0.0], dtype=dtype))
    periodic = radius_graph(pos, 3.0, cell=cell, pbc=[True, True, False])
    assert_same(periodic, reference(pos, 3.0, cell, [True, True, False]))
    assert periodic[0].shape[1] > got[0].shape[1]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("r", [1e20, 1e200])
def test_astronomical_cutoff_connects_every_pair(dtype, r):
    """Issue 13: radius_graph(torch.rand(100, 3, dtype=torch.float64), 1e20) gave 0 edges."""
    pos = torch.rand(100, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    for atoms in (pos, pos[:40]):  # cell list and brute force
        got = radius_graph(atoms, r)
        n = atoms.shape[0]
        assert got[0].shape[1] == n * (n - 1)
        assert_same(got, reference(atoms, r))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_huge_coordinates(dtype):
    """A structure at the scale of 1e30 (float32: squared distances overflow and are decided
    in float64), and a small structure far from the origin in float64."""
    g = torch.Generator().manual_seed(2)
    pos = (torch.rand(80, 3, generator=g, dtype=torch.float64) * 1e30).to(dtype)
    got = radius_graph(pos, 4e29)
    assert_same(got, reference(pos, 4e29))
    assert got[0].shape[1] == ckdtree_count(pos, 4e29) > 100
    far = torch.rand(80, 3, generator=g, dtype=torch.float64) * 10 + 1e90
    if dtype == torch.float64:
        assert_same(radius_graph(far, 3.0), reference(far, 3.0))


def test_float32_distance_overflow_is_decided_in_float64():
    """|r_ij| = 2e19: |r_ij|^2 overflows float32, the pair is an edge for r = 3e19."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [2e19, 0.0, 0.0], [1e38, 0.0, 0.0]])
    got = radius_graph(pos, 3e19)
    assert got[0].tolist() == [[1, 0], [0, 1]]
    assert_same(got, reference(pos, 3e19))
    # r beyond the float32 range: every pair, also at 1e38 (its difference overflows).
    assert radius_graph(pos, 1e300)[0].shape[1] == 6


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gigantic_and_tiny_periodic_cells(dtype):
    g = torch.Generator().manual_seed(3)
    for scale, r in ((1e8, 3.0), (1e-6, 3e-6), (1.0, 3.0)):
        cell = (torch.tensor([[1.0, 0.0, 0.0], [0.3, 1.1, 0.0], [-0.2, 0.4, 0.9]], dtype=torch.float64) * scale)
        pos = (torch.rand(30, 3, generator=g, dtype=torch.float64) * 6.0 - 3.0) * min(scale, 1.0)
        cell, pos = cell.to(dtype), pos.to(dtype)
        got = radius_graph(pos, r, cell=cell)
        assert_same(got, reference(pos, r, cell))
        assert got[0].shape[1] > 0


@pytest.mark.parametrize("loop", [False, True])
def test_outputs_that_cannot_fit_raise_at_once(loop):
    """r = 1e4 in a 10 A cell; a 0.01 A cell at r = 5: ValueError with the number of pairs,
    at once (a lower bound), from the kernel and from the reference."""
    pos = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for cell, r, pairs in ((torch.eye(3, dtype=torch.float64) * 10.0, 1e4, r"6\d{10}"),
                           (torch.eye(3, dtype=torch.float64) * 0.01, 5.0, r"8\d{9}")):
        start = time.perf_counter()
        with pytest.raises(ValueError, match=f"at least {pairs} edges .* more than max_edges = 2147483647"):
            radius_graph(pos * 0.01, r, cell=cell, loop=loop)
        with pytest.raises(ValueError, match=f"at least {pairs} edges"):
            reference(pos * 0.01, r, cell, loop=loop)
        assert time.perf_counter() - start < 2.0


def test_all_pairs_of_a_large_cluster_raise_before_allocating():
    pos = torch.rand(100_000, 3, generator=torch.Generator().manual_seed(5))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="at least 9999900000 edges"):
        radius_graph(pos, 10.0)
    assert time.perf_counter() - start < 2.0


@pytest.mark.skipif(not _extension.WITH_EXTENSION, reason="torch_pet._C is not built")
def test_max_edges_by_count_when_no_bound_decides():
    """A box whose candidate count exceeds max_edges: the kernel counts (stopping early) and
    raises exactly when the reference does; the exact count is reported when complete."""
    g = torch.Generator().manual_seed(6)
    cell = torch.eye(3, dtype=torch.float64) * 12.0
    pos = torch.rand(300, 3, generator=g, dtype=torch.float64) * 12.0
    num_edges = radius_graph(pos, 4.0, cell=cell)[0].shape[1]
    assert num_edges > 10_000
    with pytest.raises(ValueError, match=f"the graph would have {num_edges} edges"):
        radius_graph(pos, 4.0, cell=cell, max_edges=num_edges - 1)
    with pytest.raises(ValueError, match=r"at least \d+ edges .* max_edges = 100\b"):
        radius_graph(pos, 4.0, cell=cell, max_edges=100)
    with pytest.raises(ValueError, match="max_edges = 100;"):
        reference(pos, 4.0, cell, max_edges=100)
    assert radius_graph(pos, 4.0, cell=cell, max_edges=num_edges)[0].shape[1] == num_edges


def test_limits_on_magnitudes_and_cutoff():
    pos = torch.rand(5, 3, dtype=torch.float64)
    for call in (lambda: radius_graph(pos * 1e101, 1.0), lambda: reference(pos * 1e101, 1.0)):
        with pytest.raises(ValueError, match="pos has a coordinate of magnitude .* within 1e100"):
            call()
    with pytest.raises(ValueError, match="the cell of structure 0 has an entry of magnitude"):
        radius_graph(pos, 1.0, cell=torch.eye(3, dtype=torch.float64) * 1e101)
    for dtype, r in ((torch.float32, 1e-19), (torch.float64, 1e-151)):
        for call in (lambda: radius_graph(pos.to(dtype), r), lambda: reference(pos.to(dtype), r)):
            with pytest.raises(ValueError, match="too small .* r must be at least"):
                call()
    # The non-periodic rows of a cell are ignored, also when huge; float32 has no such limit.
    cell = torch.eye(3, dtype=torch.float64)
    cell[2] *= 1e200
    assert_same(radius_graph(pos, 0.5, cell=cell, pbc=[True, True, False]),
                reference(pos, 0.5, cell, [True, True, False]))
    assert radius_graph(torch.rand(3, 3) * 1e38, 3e38)[0].shape[1] == 6  # |r_ij| < 1.8e38


def test_r_as_a_tensor_and_pbc_as_a_sequence():
    pos = torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) * 4
    cell = torch.eye(3, dtype=torch.float64) * 4
    expected = radius_graph(pos, 1.5, cell=cell, pbc=torch.tensor([True, False, True]))
    for r in (torch.tensor(1.5), torch.tensor([1.5]), np.float64(1.5)):
        for pbc in ([True, False, True], (True, False, True), np.array([True, False, True])):
            assert_same(radius_graph(pos, r, cell=cell, pbc=pbc), expected)
