"""The CUDA glue and kernels of reverse_edge_index and ecse_pairs, run under host emulation
(tests/cuda_emulation: csrc/cuda/*.cu compiled as C++, every block and thread of each grid
run in a loop on CPU tensors; fixture ``emu`` in conftest.py) against the CPU op and the
pure-PyTorch reference: identical outputs, identical order. Inputs span several blocks of 256 threads and end in a partial
block. The radius graph has its own file (test_cuda_emulation_radius.py).

What only a real GPU can show (memory spaces, concurrency, speed, the device intrinsics) is
listed in docs/benchmarks.md; scripts/gpu_check.sh runs the CUDA tests on one."""
import math

import pytest
import torch

from torch_pet.ops import radius_graph
from torch_pet.ops.reference import ecse_pairs_reference, reverse_edge_index_reference

DTYPES = [torch.float32, torch.float64]
THREADS = 256  # kThreadsPerBlock in csrc/kernels/launch.h


def assert_launches(emu, sizes):
    """The emulated launches since the last call covered exactly `sizes` elements each."""
    log = emu.take_launch_log()
    expected = torch.tensor([[math.ceil(n / THREADS), THREADS] for n in sizes], dtype=torch.long)
    assert torch.equal(log, expected.reshape(-1, 2)), (log, sizes)


# ---------------------------------------------------------------------------------------
# reverse_edge_index: one thread per edge
# ---------------------------------------------------------------------------------------


def periodic_edges(num_atoms, dtype=torch.float64):
    """Edges of a small triclinic periodic cell (several images per pair, self-images)
    batched with a molecule, as radius_graph returns them (sorted)."""
    cell = torch.tensor([[3.0, 0.0, 0.0], [0.8, 2.7, 0.0], [-0.5, 0.4, 3.1]], dtype=dtype)
    pos = torch.cat([torch.rand(num_atoms, 3, dtype=dtype) @ cell, torch.rand(25, 3, dtype=dtype) * 4.0])
    batch = torch.tensor([0] * num_atoms + [1] * 25)
    cells = torch.stack([cell, torch.zeros(3, 3, dtype=dtype)])
    pbc = torch.tensor([[True] * 3, [False] * 3])
    return radius_graph(pos, 4.0, batch, cell=cells, pbc=pbc)


@pytest.mark.parametrize("num_atoms", [1, 5, 8])
def test_reverse_edge_index_matches_cpu_and_reference(emu, num_atoms):
    edge_index, shifts = periodic_edges(num_atoms)
    num_edges = edge_index.shape[1]
    assert num_edges > THREADS and num_edges % THREADS != 0
    got = emu.reverse_edge_index(edge_index, shifts)
    assert_launches(emu, [num_edges])
    assert torch.equal(got, torch.ops.torch_pet.reverse_edge_index(edge_index, shifts))
    assert torch.equal(got, reverse_edge_index_reference(edge_index, shifts))
    assert torch.equal(edge_index[:, got], edge_index.flip(0)) and torch.equal(shifts[got], -shifts)


def test_reverse_edge_index_missing_and_unsorted(emu):
    """Missing partners give -1, edges that break the order -2, as in the CPU kernel."""
    edge_index, shifts = periodic_edges(6)
    keep = torch.rand(edge_index.shape[1]) > 0.2  # drops partners of some edges
    edge_index, shifts = edge_index[:, keep], shifts[keep]
    got = emu.reverse_edge_index(edge_index, shifts)
    assert bool((got == -1).any())
    assert torch.equal(got, torch.ops.torch_pet.reverse_edge_index(edge_index, shifts))
    assert torch.equal(got, reverse_edge_index_reference(edge_index, shifts))
    perm = torch.randperm(edge_index.shape[1])
    got = emu.reverse_edge_index(edge_index[:, perm], shifts[perm])
    assert bool((got == -2).any())
    assert torch.equal(got, torch.ops.torch_pet.reverse_edge_index(edge_index[:, perm], shifts[perm]))
    emu.take_launch_log()


def test_reverse_edge_index_empty_and_single(emu):
    empty = emu.reverse_edge_index(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long))
    assert empty.shape == (0,) and empty.dtype == torch.long
    assert_launches(emu, [])  # nothing launched for an empty grid
    loop = emu.reverse_edge_index(torch.tensor([[0], [0]]), torch.zeros(1, 3, dtype=torch.long))
    assert loop.tolist() == [0]
    one = emu.reverse_edge_index(torch.tensor([[1], [0]]), torch.tensor([[0, 1, 0]]))
    assert one.tolist() == [-1]
    assert_launches(emu, [1, 1])


def test_reverse_edge_index_checks_arguments_like_the_cpu_op(emu):
    with pytest.raises(RuntimeError, match="edge_index must have shape"):
        emu.reverse_edge_index(torch.zeros(3, 4, dtype=torch.long), torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="shifts must be int64"):
        emu.reverse_edge_index(torch.zeros(2, 4, dtype=torch.long), torch.zeros(4, 3))


# ---------------------------------------------------------------------------------------
# ecse_pairs: count kernel, cumsum, fill kernel, one thread per edge
# ---------------------------------------------------------------------------------------


def environments(num_centres, max_neighbours, dtype):
    """Edge vectors grouped by centre (some centres without edges), with zero-length edges,
    exactly (anti)collinear pairs and edges exactly at the radius mixed in."""
    counts = torch.randint(0, max_neighbours + 1, (num_centres,))
    counts[::7] = 0
    num_edges = int(counts.sum())
    vectors = torch.randn(num_edges, 3, dtype=torch.float64)
    vectors = vectors / vectors.norm(dim=1, keepdim=True) * 4 * torch.rand(num_edges, 1, dtype=torch.float64)
    special = torch.rand(num_edges)
    vectors[special < 0.03] = 0.0
    collinear = (special > 0.95).nonzero().flatten()
    collinear = collinear[collinear > 0]
    vectors[collinear] = -1.5 * vectors[collinear - 1]
    centre_ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    radius = (1.0 + 3.0 * torch.rand(num_centres, dtype=torch.float64)).to(dtype).double()
    centre = torch.repeat_interleave(torch.arange(num_centres), counts)
    at_radius = (0.03 <= special) & (special < 0.06)  # |r| == radius exactly: excluded
    vectors[at_radius] = 0.0
    vectors[at_radius, 0] = radius[centre[at_radius]]
    return vectors.to(dtype), centre_ptr, radius.to(dtype)


def assert_ecse_pairs_agree(emu, vectors, ptr, radius, s_min, ordered):
    got = emu.ecse_pairs(vectors, ptr, radius, s_min, ordered)
    assert got.dtype == torch.long and got.shape[1] == 2
    assert torch.equal(got, torch.ops.torch_pet.ecse_pairs(vectors, ptr, radius, s_min, ordered))
    assert torch.equal(got, ecse_pairs_reference(vectors, ptr, radius, s_min, ordered))
    return got


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("s_min", [0.05, 0.2])
def test_ecse_pairs_matches_cpu_and_reference(emu, dtype, ordered, s_min):
    vectors, ptr, radius = environments(90, 14, dtype)
    num_edges = vectors.shape[0]
    assert num_edges > 2 * THREADS and num_edges % THREADS != 0
    pairs = assert_ecse_pairs_agree(emu, vectors, ptr, radius, s_min, ordered)
    assert pairs.shape[0] > 500
    assert_launches(emu, [num_edges, num_edges])  # count and fill kernels


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ecse_pairs_one_centre_over_several_blocks(emu, dtype):
    """One centre whose edges span three blocks: every thread finds its centre by binary
    search over the CSR pointer."""
    vectors = torch.randn(700, 3, dtype=dtype)
    ptr = torch.tensor([0, 0, 700, 700])
    radius = torch.tensor([1.0, 2.0, 1.0], dtype=dtype)
    pairs = assert_ecse_pairs_agree(emu, vectors, ptr, radius, 0.1, True)
    assert pairs.shape[0] > 10_000
    assert_launches(emu, [700, 700])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ecse_pairs_degenerate(emu, dtype):
    long = dict(dtype=torch.long)
    # no centres, no edges: nothing launched
    got = assert_ecse_pairs_agree(emu, torch.zeros(0, 3, dtype=dtype), torch.zeros(1, **long),
                                  torch.zeros(0, dtype=dtype), 0.1, True)
    assert got.shape == (0, 2)
    # centres without edges
    assert_ecse_pairs_agree(emu, torch.zeros(0, 3, dtype=dtype), torch.zeros(4, **long),
                            torch.ones(3, dtype=dtype), 0.1, False)
    assert_launches(emu, [])
    # one edge (one neighbour): counted, no pairs, so no fill launch
    got = assert_ecse_pairs_agree(emu, torch.tensor([[0.5, 0.0, 0.0]], dtype=dtype),
                                  torch.tensor([0, 1]), torch.ones(1, dtype=dtype), 0.1, True)
    assert got.shape == (0, 2)
    assert_launches(emu, [1])
    # only zero-length edges
    assert_ecse_pairs_agree(emu, torch.zeros(5, 3, dtype=dtype), torch.tensor([0, 5]),
                            torch.ones(1, dtype=dtype), 0.0, True)
    # s exactly at s_min is excluded: s(e0, e1) = s(e1, e2) = 0.5 exactly, s(e0, e2) = 1
    vectors = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0], [0, 1.0, 0]], dtype=dtype)
    got = assert_ecse_pairs_agree(emu, vectors, torch.tensor([0, 3]), torch.full((1,), 3.0, dtype=dtype),
                                  0.5, False)
    assert got.tolist() == [[0, 2]]
    emu.take_launch_log()


def test_ecse_pairs_checks_arguments_like_the_cpu_op(emu):
    vectors = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="centre_ptr must start at 0 and end at E"):
        emu.ecse_pairs(vectors, torch.tensor([0, 3]), torch.ones(1), 0.1, True)
    with pytest.raises(RuntimeError, match="radius must have the dtype of edge_vectors"):
        emu.ecse_pairs(vectors, torch.tensor([0, 4]), torch.ones(1, dtype=torch.float64), 0.1, True)
    assert emu.take_launch_log().shape == (0, 2)


def test_non_contiguous_inputs(emu):
    """The glue makes its inputs contiguous before handing raw pointers to the kernels."""
    edge_index, shifts = periodic_edges(5)
    strided_index, strided_shifts = edge_index.T.contiguous().T, torch.cat([shifts, shifts], 1)[:, 3:]
    assert not strided_index.is_contiguous() and not strided_shifts.is_contiguous()
    assert torch.equal(emu.reverse_edge_index(strided_index, strided_shifts),
                       reverse_edge_index_reference(edge_index, shifts))
    vectors, ptr, radius = environments(40, 12, torch.float64)
    strided = torch.cat([vectors, vectors], 1)[:, 3:]
    assert not strided.is_contiguous()
    assert torch.equal(emu.ecse_pairs(strided, ptr, radius, 0.1, True),
                       ecse_pairs_reference(vectors, ptr, radius, 0.1, True))
