"""The CUDA glue and kernels of radius_graph (wrap, bin, stable sort by bin, gather, count,
cumsum, fill + per-centre sort), run under host emulation (fixture ``emu`` in
conftest.py: csrc/cuda/radius_graph_cuda.cu compiled as C++, every block and thread of each
grid run in a loop on CPU tensors) against the CPU op and the pure-PyTorch reference on
the same inputs: identical edges, identical shifts, identical order. Systems span several
blocks of 256 threads, end in a partial block, and put structures across block boundaries
(one structure over more than one block)."""
import math

import pytest
import torch

from torch_pet.ops.radius_graph import _structure_pointer, cell_and_pbc
from torch_pet.ops.reference import radius_graph_reference

DTYPES = [torch.float32, torch.float64]
THREADS = 256  # kThreadsPerBlock in csrc/kernels/launch.h
TRICLINIC = [[5.0, 0.0, 0.0], [1.7, 4.6, 0.0], [-1.2, 0.9, 4.3]]


def system(name, dtype):
    """(pos, r, batch, cell, pbc) of named test systems; periodic atoms deliberately
    scattered outside the cell (unwrapped positions)."""
    g = torch.Generator().manual_seed(sum(map(ord, name)))

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    triclinic = torch.tensor(TRICLINIC, dtype=torch.float64)
    batch = cell = pbc = None
    if name == "molecules":  # one of 300 atoms (two blocks), an empty one, a single atom
        sizes = [7, 0, 300, 1, 45]
        pos = torch.cat([rand(n, 3) * (14.0 if n == 300 else 5.0) + 60.0 * k for k, n in enumerate(sizes)])
        batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        r = 3.0
    elif name == "cubic":
        pos = rand(300, 3) * 9.0
        cell, r = torch.eye(3, dtype=torch.float64) * 9.0, 2.5
    elif name == "triclinic_unwrapped":
        pos = (rand(280, 3) * 3.0 - 1.0) @ triclinic  # fractional coordinates in [-1, 2)
        cell, r = triclinic, 2.2
    elif name == "mixed_pbc":  # slab, wire, cluster and bulk; structures cross block borders
        sizes = [130, 125, 120, 135]
        pos = torch.cat([rand(n, 3) @ triclinic * 2.0 for n in sizes])
        batch = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
        cell = torch.stack([triclinic * 2.0, triclinic * 2.2, triclinic * 2.0, triclinic * 1.9])
        cell[0, 2] = 0.0  # non-periodic axis of the slab: ignored, may be zero
        pbc = torch.tensor([[True, True, False], [False, True, False], [False] * 3, [True] * 3])
        r = 2.4
    elif name == "cutoff_beyond_cell":  # r larger than the cell: many images, self-images
        pos = rand(6, 3) @ triclinic
        cell, r = triclinic * 0.6, 7.5
    elif name == "thin_cell":  # one short, skewed lattice vector
        cell = torch.tensor([[6.0, 0.0, 0.0], [0.4, 1.1, 0.0], [1.0, 0.3, 5.0]], dtype=torch.float64)
        pos, r = rand(25, 3) @ cell, 2.5
    elif name == "exact_cutoff":  # lattice pairs at exactly r (exact in both dtypes): excluded
        grid = torch.stack(torch.meshgrid(*[torch.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3)
        pos, r = grid.double() * 1.5, 3.0
        cell = torch.eye(3, dtype=torch.float64) * 10.5
    else:
        raise ValueError(name)
    pos = pos.to(dtype)
    cell = None if cell is None else cell.to(dtype)
    return pos, r, batch, cell, pbc


SYSTEMS = ["molecules", "cubic", "triclinic_unwrapped", "mixed_pbc", "cutoff_beyond_cell",
           "thin_cell", "exact_cutoff"]


def op_arguments(pos, batch, cell, pbc):
    """(ptr [B+1], cell [B, 3, 3], pbc [B, 3]) as the wrapper passes them to the op."""
    ptr, num_structures = _structure_pointer(pos, batch, cell)
    full_cell, full_pbc = cell_and_pbc(pos, cell, pbc, num_structures)
    return ptr, full_cell, full_pbc


def run_all(emu, pos, ptr, cell, pbc, r, loop, max_edges=2**31 - 1):
    """Emulated CUDA, CPU and reference graphs; asserts they are identical."""
    got = emu.radius_graph(pos, ptr, cell, pbc, r, loop, max_edges)
    cpu = torch.ops.torch_pet.radius_graph(pos, ptr, cell, pbc, r, loop, max_edges)
    reference = radius_graph_reference(pos, ptr, cell, pbc, r, loop, max_edges)
    for result in (cpu, reference):
        assert torch.equal(got[0], result[0]), "edge_index differs"
        assert torch.equal(got[1], result[1]), "shifts differ"
    assert got[0].dtype == torch.long and got[1].dtype == torch.long
    return got


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", SYSTEMS)
def test_radius_graph_matches_cpu_and_reference(emu, dtype, name):
    pos, r, batch, cell, pbc = system(name, dtype)
    ptr, full_cell, full_pbc = op_arguments(pos, batch, cell, pbc)
    for loop in (False, True):
        edge_index, shifts = run_all(emu, pos, ptr, full_cell, full_pbc, r, loop)
        assert edge_index.shape[1] > 20
        # five kernels (wrap, bin, gather, count, fill), one thread per atom each
        blocks = math.ceil(pos.shape[0] / THREADS)
        assert emu.take_launch_log().tolist() == [[blocks, THREADS]] * 5
        if name == "exact_cutoff":  # 6 + 12 + 8 neighbours at 1.5 * (1, 2, 3) ** 0.5; the 6 at 3.0 = r are out
            assert bool((torch.bincount(edge_index[1], minlength=pos.shape[0]) == 26 + loop).all())


def test_systems_cover_blocks():
    """The systems above span several blocks, end in a partial block, and put a structure
    across a block boundary (> 256 atoms, or a structure starting inside a block)."""
    for name in ("molecules", "cubic", "triclinic_unwrapped", "mixed_pbc", "exact_cutoff"):
        pos, _, batch, _, _ = system(name, torch.float64)
        assert pos.shape[0] > THREADS and pos.shape[0] % THREADS != 0, name
        ptr = _structure_pointer(pos, batch, None)[0] if batch is not None else None
        if ptr is not None:
            assert bool(((ptr[:-1] // THREADS) != ((ptr[1:] - 1).clamp(min=0) // THREADS)).any()), name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_radius_graph_degenerate(emu, dtype):
    zeros = dict(dtype=dtype)
    # no atoms at all, two empty structures: nothing launched
    pos = torch.zeros(0, 3, **zeros)
    ptr = torch.tensor([0, 0, 0])
    edge_index, shifts = run_all(emu, pos, ptr, torch.zeros(2, 3, 3, **zeros),
                                 torch.zeros(2, 3, dtype=torch.bool), 2.0, False)
    assert edge_index.shape == (2, 0) and shifts.shape == (0, 3)
    assert emu.take_launch_log().shape == (0, 2)
    # one atom, not periodic: no edge (no fill launch), one self-loop with loop=True
    one = torch.tensor([[0.3, 0.2, 0.1]], **zeros)
    args = (torch.tensor([0, 1]), torch.zeros(1, 3, 3, **zeros), torch.zeros(1, 3, dtype=torch.bool))
    assert run_all(emu, one, *args, 2.0, False)[0].shape == (2, 0)
    assert emu.take_launch_log().tolist() == [[1, THREADS]] * 4
    assert run_all(emu, one, *args, 2.0, True)[0].tolist() == [[0], [0]]
    # one atom in a small periodic cell: its own images
    cell = torch.tensor([TRICLINIC], **zeros) * 0.3
    edge_index, shifts = run_all(emu, one, torch.tensor([0, 1]), cell, torch.ones(1, 3, dtype=torch.bool),
                                 2.5, False)
    assert edge_index.shape[1] > 10 and bool((shifts.abs().sum(1) > 0).all())


def test_radius_graph_errors_match_the_cpu_op(emu):
    pos, r, batch, cell, pbc = system("cubic", torch.float64)
    ptr, full_cell, full_pbc = op_arguments(pos, batch, cell, pbc)
    with pytest.raises(ValueError, match="max_edges = 100"):
        emu.radius_graph(pos, ptr, full_cell, full_pbc, r, False, 100)
    bad = pos.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(ValueError, match="pos contains NaN or Inf"):
        emu.radius_graph(bad, ptr, full_cell, full_pbc, r, False, 2**31 - 1)
    with pytest.raises(ValueError, match="r"):
        emu.radius_graph(pos, ptr, full_cell, full_pbc, -1.0, False, 2**31 - 1)


def test_radius_graph_non_contiguous_positions(emu):
    """The glue makes pos contiguous before handing raw pointers to the kernels."""
    pos, r, batch, cell, pbc = system("mixed_pbc", torch.float64)
    ptr, full_cell, full_pbc = op_arguments(pos, batch, cell, pbc)
    strided = torch.cat([pos, pos], 1)[:, 3:]
    assert not strided.is_contiguous()
    got = emu.radius_graph(strided, ptr, full_cell, full_pbc, r, False, 2**31 - 1)
    expected = radius_graph_reference(pos, ptr, full_cell, full_pbc, r, False)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
