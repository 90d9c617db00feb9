"""torch_pet::radius_graph: kernels (CPU, CUDA) vs the pure-PyTorch reference, vs ASE,
scipy's cKDTree and vesin; edge cases, gradients of the edge vectors, error messages."""
import zlib

import numpy as np
import pytest
import torch

from torch_pet import _extension
from torch_pet.ops import edge_vectors, radius_graph
from torch_pet.ops.reference import radius_graph_reference

DTYPES = [torch.float32, torch.float64]
DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

needs_extension = pytest.mark.skipif(not _extension.WITH_EXTENSION, reason="torch_pet._C is not built")

TRICLINIC = [[5.0, 0.0, 0.0], [1.7, 4.6, 0.0], [-1.2, 0.9, 4.3]]


def _device_ok(device):
    if device.type == "cuda" and not _extension.WITH_CUDA_EXT:
        pytest.skip("torch_pet._C was built without CUDA kernels")


def edge_set(edge_index, shifts):
    """Canonical set {(centre, neighbour, s0, s1, s2)} for comparing with other tools."""
    rows = torch.cat([edge_index.flip(0).T, shifts], dim=1).cpu().tolist()
    out = {tuple(row) for row in rows}
    assert len(out) == len(rows), "duplicate edges"
    return out


def ase_edge_set(pos, cell, pbc, r):
    from ase.neighborlist import primitive_neighbor_list

    i, j, s = primitive_neighbor_list("ijS", np.asarray(pbc), np.asarray(cell, dtype=np.float64),
                                      np.asarray(pos, dtype=np.float64), r, self_interaction=False)
    return {(int(a), int(b), *map(int, c)) for a, b, c in zip(i, j, s)}


def assert_canonical_order(edge_index, shifts):
    keys = torch.cat([edge_index.flip(0).T, shifts], dim=1).cpu()
    if keys.shape[0] > 1:
        diff = keys[1:] - keys[:-1]
        first = (diff != 0).long().argmax(dim=1)
        assert bool((diff.gather(1, first[:, None]) > 0).all()), "edges not strictly sorted"


def scenario(name, dtype, device="cpu"):
    """(pos, r, batch, cell, pbc) of named test systems; periodic atoms deliberately
    scattered outside the cell (unwrapped positions)."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    triclinic = torch.tensor(TRICLINIC, dtype=torch.float64)
    if name == "molecules":  # non-periodic batch of different sizes, one empty in the middle
        sizes = [7, 0, 19, 1, 30, 12]
        pos = torch.cat([rand(n, 3) * 6.0 + 40.0 * k for k, n in enumerate(sizes)])
        batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        cell, pbc, r = None, None, 3.5
    elif name == "cubic":
        pos = rand(120, 3) * 8.0
        batch, cell, pbc, r = None, torch.eye(3, dtype=torch.float64) * 8.0, [True] * 3, 3.0
    elif name == "triclinic_unwrapped":
        frac = rand(40, 3) * 3.0 - 1.0  # fractional coordinates in [-1, 2)
        pos = frac @ triclinic
        batch, cell, pbc, r = None, triclinic, [True] * 3, 3.2
    elif name == "mixed_pbc":  # slab, wire, cluster and bulk in one batch; cells per structure
        sizes = [30, 25, 20, 35]
        pos = torch.cat([rand(n, 3) @ triclinic * 1.5 for n in sizes])
        batch = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
        cell = torch.stack([triclinic, triclinic * 1.2, triclinic, triclinic * 0.9])
        cell[0, 2] = 0.0  # non-periodic axis of the slab: ignored, may be zero
        pbc = torch.tensor([[True, True, False], [False, True, False], [False] * 3, [True] * 3])
        r = 2.9
    elif name == "huge_cutoff":  # cutoff much larger than the cell: many images, self-images
        pos = rand(6, 3) @ triclinic
        batch, cell, pbc, r = None, triclinic * 0.6, [True] * 3, 7.5
    elif name == "thin_cell":  # one short, skewed lattice vector
        cell = torch.tensor([[6.0, 0.0, 0.0], [0.4, 1.1, 0.0], [1.0, 0.3, 5.0]], dtype=torch.float64)
        pos = rand(25, 3) @ cell
        batch, pbc, r = None, [True] * 3, 2.5
    else:
        raise ValueError(name)
    pos = pos.to(dtype=dtype, device=device)
    if batch is not None:
        batch = batch.to(device)
    if cell is not None:
        cell = cell.to(dtype=dtype, device=device)
    if isinstance(pbc, torch.Tensor):
        pbc = pbc.to(device)
    return pos, r, batch, cell, pbc


SCENARIOS = ["molecules", "cubic", "triclinic_unwrapped", "mixed_pbc", "huge_cutoff", "thin_cell"]


def op_arguments(pos, batch, cell, pbc):
    """(ptr, cell [B, 3, 3], pbc [B, 3]) as the wrapper passes them to the op."""
    from torch_pet.ops.radius_graph import cell_and_pbc, _structure_pointer

    ptr, num_structures = _structure_pointer(pos, batch, cell)
    full_cell, full_pbc = cell_and_pbc(pos, cell, pbc, num_structures)
    return ptr, full_cell, full_pbc


@needs_extension
@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("loop", [False, True])
def test_kernel_matches_reference(device, dtype, name, loop):
    _device_ok(device)
    pos, r, batch, cell, pbc = scenario(name, dtype, device)
    ptr, full_cell, full_pbc = op_arguments(pos, batch, cell, pbc)
    edge_index, shifts = torch.ops.torch_pet.radius_graph(pos, ptr, full_cell, full_pbc, r, loop)
    expected = radius_graph_reference(pos.cpu(), ptr.cpu(), full_cell.cpu(), full_pbc.cpu(), r, loop)
    assert edge_index.device == device and edge_index.dtype == torch.long and shifts.dtype == torch.long
    assert edge_index.shape[1] > 20
    assert torch.equal(edge_index.cpu(), expected[0])
    assert torch.equal(shifts.cpu(), expected[1])
    assert_canonical_order(edge_index, shifts)


@pytest.mark.parametrize("name", ["cubic", "triclinic_unwrapped", "huge_cutoff", "thin_cell"])
def test_matches_ase(name):
    pos, r, _, cell, pbc = scenario(name, torch.float64)
    edge_index, shifts = radius_graph(pos, r, cell=cell, pbc=torch.tensor(pbc))
    assert edge_set(edge_index, shifts) == ase_edge_set(pos, cell, pbc, r)
    assert_canonical_order(edge_index, shifts)


def test_mixed_pbc_matches_ase_per_structure():
    pos, r, batch, cell, pbc = scenario("mixed_pbc", torch.float64)
    edge_index, shifts = radius_graph(pos, r, batch, cell=cell, pbc=pbc)
    assert bool((batch[edge_index[0]] == batch[edge_index[1]]).all())
    for b in range(4):
        atoms = (batch == b).nonzero().flatten()
        first = int(atoms[0])
        mine = edge_index[1] >= first
        mine &= edge_index[1] <= int(atoms[-1])
        got = edge_set(edge_index[:, mine] - first, shifts[mine])
        ase_cell = cell[b].clone()
        if not bool(pbc[b].all()):  # ASE needs a regular cell; the non-periodic rows do not matter
            ase_cell[~pbc[b]] = torch.eye(3, dtype=torch.float64)[~pbc[b]] * 100.0
        assert got == ase_edge_set(pos[atoms], ase_cell, pbc[b].tolist(), r)
        assert bool((shifts[mine][:, ~pbc[b]] == 0).all())


def test_molecules_match_ckdtree():
    from scipy.spatial import cKDTree

    pos, r, batch, _, _ = scenario("molecules", torch.float64)
    edge_index, shifts = radius_graph(pos, r, batch)
    assert bool((shifts == 0).all())
    expected = set()
    for b in range(int(batch.max()) + 1):
        atoms = (batch == b).nonzero().flatten()
        if atoms.numel() == 0:
            continue
        for a, c in cKDTree(pos[atoms].numpy()).query_pairs(r, output_type="ndarray"):
            i, j = int(atoms[a]), int(atoms[c])
            expected |= {(i, j, 0, 0, 0), (j, i, 0, 0, 0)}
    assert edge_set(edge_index, shifts) == expected


def test_large_periodic_box_matches_vesin():
    """A liquid-density box (cell list with many bins) against vesin, an independent code."""
    vesin = pytest.importorskip("vesin")
    g = torch.Generator().manual_seed(1)
    side = 28.0  # ~2200 atoms at 0.1 / A^3
    cell = torch.tensor([[side, 0, 0], [2.0, side, 0], [-1.0, 1.5, side]], dtype=torch.float64)
    pos = torch.rand(2200, 3, generator=g, dtype=torch.float64) @ cell
    r = 5.0
    edge_index, shifts = radius_graph(pos, r, cell=cell)
    i, j, s = vesin.NeighborList(cutoff=r, full_list=True).compute(pos.numpy(), cell.numpy(), True, "ijS")
    expected = {(int(a), int(b), *map(int, c)) for a, b, c in zip(i, j, s)}
    assert len(expected) > 100_000
    assert edge_set(edge_index, shifts) == expected


@pytest.mark.parametrize("name", ["cubic", "triclinic_unwrapped", "mixed_pbc"])
def test_float32_agrees_with_float64_away_from_the_cutoff(name):
    pos, r, batch, cell, pbc = scenario(name, torch.float64)
    e64, s64, v64 = radius_graph(pos, r, batch, cell=cell, pbc=pbc, return_vectors=True)
    e32, s32, v32 = radius_graph(pos.float(), r, batch, cell=None if cell is None else cell.float(),
                                 pbc=pbc, return_vectors=True)
    far64 = (v64.norm(dim=1) - r).abs() > 1e-4
    far32 = (v32.double().norm(dim=1) - r).abs() > 1e-4
    assert edge_set(e64[:, far64], s64[far64]) == edge_set(e32[:, far32], s32[far32])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_exact_cutoff_on_a_lattice(dtype):
    """Pairs at exactly r are excluded; kernel and reference agree on every boundary pair."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    pos = grid.to(dtype) * 1.5
    cell = torch.eye(3, dtype=dtype) * 6.0
    edge_index, _ = radius_graph(pos, 1.5, cell=cell)
    assert edge_index.shape[1] == 0
    edge_index, _ = radius_graph(pos, 2.0, cell=cell)
    assert edge_index.shape[1] == 64 * 6
    for r in (1.5 * 2 ** 0.5, 1.5 * 3 ** 0.5, 3.0, 3.0001):
        expected = radius_graph_reference(pos, torch.tensor([0, 64]), cell[None], torch.ones(1, 3, dtype=torch.bool), r)
        got = radius_graph(pos, r, cell=cell)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_small_molecules_take_the_same_edges_with_and_without_the_cell_list(dtype):
    """Batches of small non-periodic structures (at most 64 atoms each) skip the cell list
    on the CPU; one larger structure in the batch sends every structure through it."""
    pos, r, batch, _, _ = scenario("molecules", dtype)
    lattice = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    boundary = lattice.to(dtype) * 1.5  # 64 atoms with many pairs at exactly r = 3
    for positions, structure, cutoff in ((pos, batch, r), (boundary, torch.zeros(64, dtype=torch.long), 3.0)):
        big = torch.rand(65, 3, dtype=dtype, generator=torch.Generator().manual_seed(5)) * 4 + 100.0
        both = torch.cat([positions, big])
        both_batch = torch.cat([structure, torch.full((65,), int(structure.max()) + 1)])
        small = radius_graph(positions, cutoff, structure)
        large = radius_graph(both, cutoff, both_batch)
        keep = large[0][1] < positions.shape[0]
        assert torch.equal(small[0], large[0][:, keep]) and torch.equal(small[1], large[1][keep])
        ptr = torch.tensor([0, positions.shape[0]]) if cutoff == 3.0 else op_arguments(positions, structure, None, None)[0]
        cells = torch.zeros(ptr.numel() - 1, 3, 3, dtype=dtype)
        expected = radius_graph_reference(positions, ptr, cells, torch.zeros(ptr.numel() - 1, 3, dtype=torch.bool), cutoff)
        assert torch.equal(small[0], expected[0]) and torch.equal(small[1], expected[1])
        assert small[0].shape[1] > 50


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_empty_and_tiny_inputs(device):
    _device_ok(device)
    for dtype in DTYPES:
        pos = torch.zeros(0, 3, dtype=dtype, device=device)
        edge_index, shifts = radius_graph(pos, 2.0)
        assert edge_index.shape == (2, 0) and shifts.shape == (0, 3)
        edge_index, shifts = radius_graph(pos, 2.0, cell=torch.eye(3, dtype=dtype, device=device))
        assert edge_index.shape == (2, 0)
        one = torch.ones(1, 3, dtype=dtype, device=device)
        assert radius_graph(one, 2.0)[0].shape == (2, 0)
        edge_index, shifts = radius_graph(one, 2.0, loop=True)
        assert edge_index.tolist() == [[0], [0]] and shifts.tolist() == [[0, 0, 0]]
        # One atom in a small periodic cell: its own images are its neighbours.
        edge_index, shifts = radius_graph(one, 1.5, cell=torch.eye(3, dtype=dtype, device=device))
        assert edge_index.shape[1] == 18  # 6 faces + 12 edges of the unit cube, corners at sqrt(3)
        assert bool((edge_index == 0).all()) and sorted(shifts.tolist()) == shifts.tolist()


def test_batches_with_empty_structures():
    pos, r, batch, cell, pbc = scenario("cubic", torch.float64)
    alone = radius_graph(pos, r, cell=cell)
    # Structures 0 and 2 empty, the atoms in structure 1, structure 3 empty and last.
    cells = torch.stack([torch.eye(3, dtype=torch.float64)] + [cell] * 3)
    batched = radius_graph(pos, r, torch.ones(pos.shape[0], dtype=torch.long), cell=cells)
    assert torch.equal(batched[0], alone[0]) and torch.equal(batched[1], alone[1])
    # Two copies of a structure: the second copy's edges are the first's, offset by n.
    n = pos.shape[0]
    twice = radius_graph(torch.cat([pos, pos]), r, torch.arange(2).repeat_interleave(n), cell=cell)
    half = alone[0].shape[1]
    assert torch.equal(twice[0][:, :half], alone[0]) and torch.equal(twice[0][:, half:], alone[0] + n)
    assert torch.equal(twice[1], torch.cat([alone[1], alone[1]]))


def test_translation_and_wrapping_keep_the_distances():
    pos, r, _, cell, _ = scenario("triclinic_unwrapped", torch.float64)
    _, _, vectors = radius_graph(pos, r, cell=cell, return_vectors=True)
    moved = pos + torch.tensor([0.3, -12.1, 7.7], dtype=torch.float64)
    moved[::3] += 2 * cell[0] - 3 * cell[2]  # other periodic images of some atoms
    edge_index, shifts, moved_vectors = radius_graph(moved, r, cell=cell, return_vectors=True)
    assert moved_vectors.shape == vectors.shape
    torch.testing.assert_close(moved_vectors, vectors, rtol=0, atol=1e-10)
    assert bool((moved_vectors.norm(dim=1) < r).all())


def test_same_result_with_one_and_several_threads():
    pos, r, batch, cell, pbc = scenario("mixed_pbc", torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = radius_graph(pos, r, batch, cell=cell, pbc=pbc)
    finally:
        torch.set_num_threads(threads)
    parallel = radius_graph(pos, r, batch, cell=cell, pbc=pbc)
    assert torch.equal(serial[0], parallel[0]) and torch.equal(serial[1], parallel[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_on_a_large_box():
    _device_ok(torch.device("cuda"))
    g = torch.Generator().manual_seed(2)
    cell = torch.tensor([[30.0, 0, 0], [3.0, 30.0, 0], [-2.0, 1.0, 30.0]])
    pos = torch.rand(2700, 3, generator=g) @ cell
    cpu = radius_graph(pos, 5.0, cell=cell)
    gpu = radius_graph(pos.cuda(), 5.0, cell=cell.cuda())
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


def test_edge_vectors_gradcheck():
    pos, r, batch, cell, pbc = scenario("mixed_pbc", torch.float64)
    edge_index, shifts = radius_graph(pos, r, batch, cell=cell, pbc=pbc)
    assert bool((shifts != 0).any())
    keep = torch.arange(edge_index.shape[1]) % 7 == 0  # a subset keeps gradcheck fast
    edge_index, shifts = edge_index[:, keep], shifts[keep]
    atoms = pos[:60].clone().requires_grad_(True)  # the first two structures
    cells = cell[:2].clone().requires_grad_(True)
    inside = edge_index[1] < 55  # edges of structures 0 and 1 (30 + 25 atoms)
    edge_index, shifts = edge_index[:, inside], shifts[inside]

    def vectors(x, c):
        return edge_vectors(x, edge_index, shifts, c, batch[:60])

    assert torch.autograd.gradcheck(vectors, (atoms, cells))
    single = edge_vectors(pos, *radius_graph(pos, r, batch, cell=cell, pbc=pbc), cell, batch)
    assert bool((single.norm(dim=1) < r).all())


def test_return_vectors_are_differentiable():
    pos, r, _, cell, _ = scenario("triclinic_unwrapped", torch.float64)
    pos.requires_grad_(True)
    cell = cell.clone().requires_grad_(True)
    edge_index, shifts, vectors = radius_graph(pos, r, cell=cell, return_vectors=True)
    expected = pos[edge_index[0]] - pos[edge_index[1]] + shifts.double() @ cell
    torch.testing.assert_close(vectors, expected)
    vectors.norm(dim=1).sum().backward()
    assert pos.grad is not None and cell.grad is not None and bool(cell.grad.abs().sum() > 0)


@needs_extension
def test_opcheck():
    for name in ("mixed_pbc", "huge_cutoff"):
        pos, r, batch, cell, pbc = scenario(name, torch.float64)
        ptr, full_cell, full_pbc = op_arguments(pos, batch, cell, pbc)
        torch.library.opcheck(torch.ops.torch_pet.radius_graph.default, (pos, ptr, full_cell, full_pbc, r, False))


def test_reference_fallback_matches_kernel(monkeypatch):
    """The wrapper's pure-PyTorch fallback (no extension) gives the same graph."""
    pos, r, batch, cell, pbc = scenario("mixed_pbc", torch.float32)
    expected = radius_graph(pos, r, batch, cell=cell, pbc=pbc)
    monkeypatch.setattr(_extension, "use_extension", lambda device: False)
    got = radius_graph(pos, r, batch, cell=cell, pbc=pbc)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# --- bad input ------------------------------------------------------------------------------

def test_errors_positions_and_cutoff():
    pos = torch.rand(5, 3)
    bad = pos.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"pos contains NaN or Inf \(first at atom 3\)"):
        radius_graph(bad, 1.0)
    bad[3, 1] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        radius_graph(bad, 1.0)
    for r in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="cutoff r must be positive and finite"):
            radius_graph(pos, r)
    with pytest.raises(TypeError, match="cutoff r must be a real number"):
        radius_graph(pos, True)
    with pytest.raises(TypeError, match="pos must be float32 or float64"):
        radius_graph(pos.long(), 1.0)
    with pytest.raises(ValueError, match=r"pos must have shape \[N, 3\]"):
        radius_graph(torch.rand(5, 2), 1.0)
    with pytest.raises(TypeError, match="pos must be a torch.Tensor"):
        radius_graph(pos.numpy(), 1.0)


def test_errors_batch():
    pos = torch.rand(5, 3)
    with pytest.raises(ValueError, match="batch must be sorted ascending .* decreases at atom 3"):
        radius_graph(pos, 1.0, torch.tensor([0, 0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"batch must have shape \[N\] = \[5\]"):
        radius_graph(pos, 1.0, torch.tensor([0, 0, 1, 1]))
    with pytest.raises(TypeError, match="batch must be an integer tensor"):
        radius_graph(pos, 1.0, torch.zeros(5))
    with pytest.raises(ValueError, match="negative structure indices"):
        radius_graph(pos, 1.0, torch.tensor([-1, 0, 0, 1, 1]))
    with pytest.raises(ValueError, match="batch refers to structure 3 but cell has only 2"):
        radius_graph(pos, 1.0, torch.tensor([0, 0, 1, 1, 3]), cell=torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="cell has 2 structures but batch is None"):
        radius_graph(pos, 1.0, cell=torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="batch is on meta but pos is on cpu"):
        radius_graph(pos, 1.0, torch.zeros(5, dtype=torch.long, device="meta"))


def test_errorscell_and_pbc():
    pos = torch.rand(5, 3)
    with pytest.raises(ValueError, match="pbc has periodic axes but no cell was given"):
        radius_graph(pos, 1.0, pbc=[True, False, False])
    with pytest.raises(ValueError, match="cell of structure 0 is singular"):
        radius_graph(pos, 1.0, cell=torch.zeros(3, 3))
    parallel = torch.tensor([[2.0, 0, 0], [4.0, 0, 0], [0, 0, 3.0]])
    with pytest.raises(ValueError, match="cell of structure 0 is singular"):
        radius_graph(pos, 1.0, cell=parallel)
    with pytest.raises(ValueError, match="cell of structure 1 is singular"):
        radius_graph(pos, 1.0, torch.tensor([0, 0, 1, 1, 1]),
                     cell=torch.stack([torch.eye(3), parallel]), pbc=[[True] * 3, [True, True, False]])
    # The same cell is fine when the dependent vector's axis is not periodic.
    radius_graph(pos, 1.0, cell=parallel, pbc=[False, True, True])
    with pytest.raises(TypeError, match="cell must have the dtype of pos"):
        radius_graph(pos, 1.0, cell=torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"cell must have shape \[3, 3\] or \[B, 3, 3\]"):
        radius_graph(pos, 1.0, cell=torch.eye(2))
    with pytest.raises(ValueError, match="cell contains NaN or Inf"):
        radius_graph(pos, 1.0, cell=torch.eye(3) * float("inf"))
    with pytest.raises(TypeError, match="pbc must be boolean"):
        radius_graph(pos, 1.0, cell=torch.eye(3), pbc=torch.ones(3))
    with pytest.raises(ValueError, match=r"pbc must have shape \[3\] or \[B, 3\]"):
        radius_graph(pos, 1.0, cell=torch.eye(3), pbc=[True, False])
    with pytest.raises(ValueError, match="cell is on meta but pos is on cpu"):
        radius_graph(pos, 1.0, cell=torch.eye(3, device="meta"))


@needs_extension
def test_op_checks_its_arguments():
    pos = torch.rand(5, 3)
    ptr = torch.tensor([0, 5])
    cell = torch.zeros(1, 3, 3)
    pbc = torch.zeros(1, 3, dtype=torch.bool)
    op = torch.ops.torch_pet.radius_graph
    with pytest.raises(ValueError, match="ptr must start at 0 and end at N = 5"):
        op(pos, torch.tensor([0, 4]), cell, pbc, 1.0, False)
    with pytest.raises(ValueError, match="ptr must be non-decreasing"):
        op(pos, torch.tensor([0, 3, 2, 5]), cell.expand(3, 3, 3), pbc.expand(3, 3), 1.0, False)
    with pytest.raises(ValueError, match="cutoff r must be positive"):
        op(pos, ptr, cell, pbc, -1.0, False)
    with pytest.raises(ValueError, match="pos contains NaN or Inf"):
        op(pos * float("nan"), ptr, cell, pbc, 1.0, False)
    with pytest.raises(ValueError, match="cell of structure 0 is singular"):
        op(pos, ptr, cell, ~pbc, 1.0, False)
    with pytest.raises(TypeError, match="cell must have the dtype of pos"):
        op(pos, ptr, cell.double(), pbc, 1.0, False)
    with pytest.raises(TypeError, match="pbc must be a bool tensor"):
        op(pos, ptr, cell, pbc.long(), 1.0, False)
    with pytest.raises(ValueError, match=r"max_edges must be in \[0, 2\*\*31 - 1\]"):
        op(pos, ptr, cell, pbc, 1.0, False, -1)
    with pytest.raises(ValueError, match=r"r = 1e-20 is too small for float32"):
        op(pos, ptr, cell, pbc, 1e-20, False)
    # r = 1e4 in a 1e-3 cell: ~1e23 pairs, refused from the lower bound before any search.
    with pytest.raises(ValueError, match=r"at least \d\.\d+e\+2\d edges .* more than max_edges = 2147483647"):
        op(pos, ptr, torch.eye(3)[None] * 1e-3, ~pbc, 1e4, False)
