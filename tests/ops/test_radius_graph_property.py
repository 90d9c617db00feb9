"""Property-based tests of radius_graph (hypothesis): generated structures, degenerate on
purpose (flat, nearly flat, subnormal, collinear, duplicate atoms, tiny and huge scales,
tiny / flat / huge triclinic cells, mixed pbc, cutoffs far larger than the cell), on both
CPU search paths (brute force: non-periodic batches of <= 64 atoms per structure; cell
list: forced by a 65-atom companion structure, or periodic) and the emulated CUDA op,
float32 and float64. Each
graph must equal the pure-PyTorch reference exactly and an independent tool (scipy's
cKDTree without periodicity, ASE's primitive_neighbor_list with it, or cKDTree over tiled
images for cells so thin that ASE would loop for minutes) outside a thin shell
|r_ij| ~ r where rounding in the dtype may decide. Bad inputs raise ValueError/TypeError
naming the argument. Seeded (derandomize) with a fixed number of examples."""
import math

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from torch_pet.ops import radius_graph  # noqa: E402
from torch_pet.ops.radius_graph import cell_and_pbc, _structure_pointer  # noqa: E402
from torch_pet.ops.reference import radius_graph_reference  # noqa: E402

SETTINGS = dict(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [torch.float32, torch.float64]
# Length units: powers of two, so that dividing by them (for the independent tools) is exact.
UNITS = {torch.float32: [1.0, 2.0 ** -50, 2.0 ** 100], torch.float64: [1.0, 2.0 ** -460, 2.0 ** 300]}
SUBNORMAL = {torch.float32: 1e-42, torch.float64: 1e-310}
POSITION_KINDS = ["generic", "flat", "near_flat", "subnormal_flat", "subnormal", "collinear", "duplicates",
                  "lattice", "offset"]
CELL_KINDS = ["triclinic", "tiny", "flat", "needle", "huge"]
MAX_PAIRS_TESTED = 200_000  # bounds the reference's brute force per example


def _positions(rng, kind, n, side, dtype, pos=None):
    """[n, 3] float64 Cartesian positions (`pos`, or uniform in a box of `side`), made
    degenerate by kind."""
    pos = rng.random((n, 3)) * side if pos is None else pos
    if kind == "flat":
        pos[:, 2] = 0.0
    elif kind == "near_flat":
        pos[:, 2] = 1e-20 * side * rng.standard_normal(n)
    elif kind == "subnormal_flat":
        pos[:, 2] = SUBNORMAL[dtype] * rng.standard_normal(n)
    elif kind == "subnormal":
        pos = SUBNORMAL[dtype] * rng.standard_normal((n, 3))
    elif kind == "collinear":
        direction = rng.standard_normal(3)
        pos = rng.random((n, 1)) * side * direction / np.linalg.norm(direction) + rng.random(3) * side
    elif kind == "duplicates":
        pos[n // 2:] = pos[rng.integers(0, max(n // 2, 1), n - n // 2)]
    elif kind == "lattice":  # many pairs at exactly r when r is a multiple of the spacing
        pos = np.floor(pos / side * 3.0) * (side / 3.0)
    elif kind == "offset":  # far from the origin: rounding of float32 positions matters
        pos += 1000.0 * side
    return pos


@st.composite
def molecules(draw):
    """(pos, r, batch, dtype, unit, n): one non-periodic structure, first in the batch, and a
    65-atom companion structure when the cell list is forced."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(DTYPES))
    unit = draw(st.sampled_from(UNITS[dtype]))
    kind = draw(st.sampled_from(POSITION_KINDS))
    n = draw(st.sampled_from([1, 2, 3, 7, 20, 40, 64, 90]))
    side = draw(st.sampled_from([1.0, 4.0, 12.0]))
    r = draw(st.sampled_from([0.7, 1.0, 2.5, 6.0, 1e20]))
    cell_list = draw(st.booleans())
    if kind.startswith("subnormal"):
        unit = 1.0  # subnormal coordinates at the natural scale
        r = min(r, 6.0)
    pos = _positions(rng, kind, n, side, dtype) * unit
    batch = np.zeros(n, dtype=np.int64)
    if cell_list:
        pos = np.concatenate([pos, rng.random((65, 3)) * 5.0 * unit])
        batch = np.concatenate([batch, np.ones(65, dtype=np.int64)])
    return ("molecule", torch.tensor(pos, dtype=dtype), r * unit, torch.tensor(batch), dtype, unit, n)


def _cell(rng, kind, unit):
    if kind == "triclinic":
        cell = np.diag(rng.uniform(2.0, 6.0, 3)) + rng.uniform(-1.0, 1.0, (3, 3))
    elif kind == "tiny":  # the cutoff spans many cells
        cell = np.diag(rng.uniform(0.4, 0.8, 3)) + rng.uniform(-0.1, 0.1, (3, 3))
    elif kind == "flat":  # nearly coplanar cell vectors (small volume, not singular)
        a, b = rng.uniform(-1, 1, (2, 3)) + np.array([[3.0, 0, 0], [0, 3.0, 0]])
        cell = np.stack([a, b, 0.7 * a - 0.4 * b + np.array([0.0, 0.0, 0.05])])
    elif kind == "needle":  # one short lattice vector
        cell = np.diag([0.3, 4.0, 5.0]) + rng.uniform(-0.5, 0.5, (3, 3)) * np.array([[0.1], [1.0], [1.0]])
    else:  # huge
        cell = np.diag(rng.uniform(1e4, 2e4, 3)) + rng.uniform(-1e3, 1e3, (3, 3))
    return cell * unit


@st.composite
def periodic_structures(draw):
    """(pos, r, cell, pbc, dtype, unit): one structure, at least one periodic axis, atoms
    scattered over neighbouring cells (unwrapped)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(DTYPES))
    unit = draw(st.sampled_from(UNITS[dtype]))
    cell_kind = draw(st.sampled_from(CELL_KINDS))
    cell = _cell(rng, cell_kind, unit)
    pbc = draw(st.lists(st.booleans(), min_size=3, max_size=3).filter(any))
    kind = draw(st.sampled_from(["generic", "flat", "near_flat", "collinear", "duplicates"]))
    r = draw(st.sampled_from([0.5, 1.5, 3.0, 7.0])) * unit
    n = draw(st.sampled_from([1, 2, 5, 12, 30]))
    # Keep the reference's brute force (atom pairs x images) bounded: the box of images grows
    # as r^3 / (product of plane spacings), large for thin skewed cells.
    recip = np.linalg.norm(np.linalg.inv(cell), axis=0)

    def images():
        return np.prod([2 * math.ceil(r * recip[k]) + 5 if pbc[k] else 1 for k in range(3)])

    while images() > MAX_PAIRS_TESTED:
        r /= 2.0
    n = max(1, min(n, int(math.sqrt(MAX_PAIRS_TESTED / images()))))
    frac = rng.random((n, 3)) * 3.0 - 1.0  # fractions in [-1, 2)
    frac[:, [k for k in range(3) if not pbc[k]]] *= 0.5
    pos = frac @ cell
    if cell_kind == "huge":  # atoms around a corner of the cell: edges across its faces
        pos = rng.uniform(-4.0, 4.0, (n, 3)) * unit
    pos = _positions(rng, kind, n, float(np.abs(cell).max()), dtype, pos=pos)
    return ("periodic", torch.tensor(pos, dtype=dtype), r, torch.tensor(cell, dtype=dtype), torch.tensor(pbc),
            dtype, unit)


def _shell(dtype, pos, r, cell=None):
    """Half-width (float64, in the units of pos) of the shell |r_ij| ~ r where the dtype's
    rounding may decide; pairs inside are not compared with the independent tools."""
    eps = torch.finfo(dtype).eps
    scale = float(pos.double().abs().max()) + 2.0 * r
    if cell is not None:
        scale += 2.0 * float(cell.double().norm(dim=1).sum())
    return 1e-6 * r + 64.0 * eps * scale


def _edges_outside_shell(rows, pos, cell, r, shell):
    """{(i, j, S)} of the rows (centre, neighbour, S0, S1, S2) with ||r_ij| - r| > shell."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
    pos = np.asarray(pos, dtype=np.float64)
    vectors = pos[rows[:, 1]] - pos[rows[:, 0]]
    if cell is not None:
        vectors = vectors + rows[:, 2:].astype(np.float64) @ np.asarray(cell, dtype=np.float64)
    keep = np.abs(np.linalg.norm(vectors, axis=1) - r) > shell
    return {tuple(row) for row in rows[keep].tolist()}


def _ours(edge_index, shifts, first, last):
    """Rows (centre, neighbour, S) of the edges of atoms first..last-1, renumbered from 0."""
    mine = (edge_index[1] >= first) & (edge_index[1] < last)
    centre, neighbour = edge_index[1][mine] - first, edge_index[0][mine] - first
    return torch.cat([torch.stack([centre, neighbour], 1), shifts[mine]], 1).numpy()


def _assert_matches_reference(got, pos, r, batch, cell, pbc):
    ptr, num_structures = _structure_pointer(pos, batch, cell)
    full_cell, full_pbc = cell_and_pbc(pos, cell, pbc, num_structures)
    expected = radius_graph_reference(pos, ptr, full_cell, full_pbc, r)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    keys = torch.cat([got[0].flip(0).T, got[1]], 1)
    assert torch.unique(keys, dim=0).shape[0] == keys.shape[0], "duplicate edges"


@settings(max_examples=400, **SETTINGS)
@given(molecules())
def test_molecules_match_reference_and_ckdtree(case):
    from scipy.spatial import cKDTree

    _, pos, r, batch, dtype, unit, n = case
    got = radius_graph(pos, r, batch)
    _assert_matches_reference(got, pos, r, batch, None, None)
    assert bool((got[1] == 0).all())
    # Independent: cKDTree on the same values, rescaled by the power-of-two unit (exact).
    scaled = pos[:n].double().numpy() / unit
    pairs = cKDTree(scaled).query_pairs(r / unit, output_type="ndarray")
    expected = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    expected = np.concatenate([expected, np.zeros((len(expected), 3), dtype=np.int64)], 1)
    shell = _shell(dtype, pos[:n], r) / unit
    ours = _ours(got[0], got[1], 0, n)
    assert _edges_outside_shell(ours, scaled, None, r / unit, shell) == \
        _edges_outside_shell(expected, scaled, None, r / unit, shell)


def _ase_cell(cell, pbc, pos):
    """ASE needs a regular cell: non-periodic rows replaced by an orthogonal completion
    (they carry no shifts, so only ASE's binning sees them)."""
    cell = np.array(cell, dtype=np.float64)
    periodic = [k for k in range(3) if pbc[k]]
    basis = np.linalg.qr(cell[periodic].T, mode="complete")[0].T  # rows: span, then complement
    extent = 2.0 * (np.abs(pos).max() + np.abs(cell[periodic]).sum() + 1.0)
    for row, k in enumerate([k for k in range(3) if not pbc[k]]):
        cell[k] = basis[len(periodic) + row] * extent
    return cell


def _ase_loops(cell, pbc, r):
    """Neighbour-bin offsets ASE's primitive_neighbor_list loops over in Python (bins at
    least max(r, 3) wide): about (2 r / plane spacing + 1) per periodic axis."""
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)
    return np.prod([2 * math.ceil(max(r, 3.0) / spacing[k]) + 1 if pbc[k] else 3 for k in range(3)])


def _periodic_pairs(pos, cell, pbc, r):
    """Rows (i, j, S0, S1, S2) with |pos[j] - pos[i] + S @ cell| <= r from an independent
    tool: ASE, or where ASE would loop too long (very thin cells, r >> spacing) scipy's
    cKDTree over explicitly tiled images (|S_k| up to r |b_k| + 4: unwrapped atoms span up
    to 3 cells)."""
    from ase.neighborlist import primitive_neighbor_list
    from scipy.spatial import cKDTree

    if _ase_loops(cell, pbc, r) <= 20_000:
        i, j, s = primitive_neighbor_list("ijS", pbc, _ase_cell(cell, pbc, pos), pos, r,
                                          self_interaction=False, max_nbins=512)
        return np.concatenate([np.stack([i, j], 1), s], 1)
    recip = np.linalg.norm(np.linalg.inv(cell), axis=0)
    ranges = [np.arange(-m, m + 1) if pbc[k] else np.zeros(1, dtype=np.int64)
              for k, m in enumerate(np.ceil(r * recip).astype(np.int64) + 4)]
    shifts = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3)
    images = (pos[None, :, :] + (shifts @ cell)[:, None, :]).reshape(-1, 3)  # [S, n] flattened
    rows = []
    for i, hits in enumerate(cKDTree(images).query_ball_point(pos, r)):
        hits = np.asarray(hits, dtype=np.int64)
        s, j = np.divmod(hits, len(pos))
        keep = (j != i) | (shifts[s] != 0).any(1)
        rows.append(np.concatenate([np.stack([np.full(keep.sum(), i), j[keep]], 1), shifts[s[keep]]], 1))
    return np.concatenate(rows) if rows else np.zeros((0, 5), dtype=np.int64)


@settings(max_examples=400, **SETTINGS)
@given(periodic_structures())
def test_periodic_structures_match_reference_and_ase(case):
    _, pos, r, cell, pbc, dtype, unit = case
    got = radius_graph(pos, r, cell=cell, pbc=pbc)
    _assert_matches_reference(got, pos, r, None, cell, pbc)
    assert bool((got[1][:, ~pbc] == 0).all())
    # ASE bins by at least 3 length units, slow for thin cells: rescale exactly (by a power
    # of two) to r >= 3; few bins (max_nbins) keep its loops over the bins short.
    unit = unit / 2.0 ** max(0, math.ceil(math.log2(3.0 * unit / r)))
    scaled, scaled_cell = pos.double().numpy() / unit, cell.double().numpy() / unit
    expected = _periodic_pairs(scaled, scaled_cell, pbc.tolist(), r / unit)
    shell = _shell(dtype, pos, r, cell) / unit
    assert _edges_outside_shell(_ours(got[0], got[1], 0, pos.shape[0]), scaled, scaled_cell, r / unit, shell) == \
        _edges_outside_shell(expected, scaled, scaled_cell, r / unit, shell)


@settings(max_examples=150, **SETTINGS)
@given(st.one_of(molecules(), periodic_structures()), st.sampled_from(["minus_one", "equal", "zero", "half"]))
def test_max_edges_is_the_same_limit_for_kernel_and_reference(case, choice):
    """The op raises iff the graph has more than max_edges edges, exactly like the reference."""
    if case[0] == "periodic":
        _, pos, r, cell, pbc, _, _ = case
        batch = None
    else:
        _, pos, r, batch, _, _, _ = case
        cell = pbc = None
    num_edges = radius_graph(pos, r, batch, cell=cell, pbc=pbc)[0].shape[1]
    limit = {"minus_one": max(num_edges - 1, 0), "equal": num_edges, "zero": 0, "half": num_edges // 2}[choice]
    ptr, num_structures = _structure_pointer(pos, batch, cell)
    full_cell, full_pbc = cell_and_pbc(pos, cell, pbc, num_structures)
    if num_edges > limit:
        with pytest.raises(ValueError, match=f"more than max_edges = {limit}"):
            radius_graph(pos, r, batch, cell=cell, pbc=pbc, max_edges=limit)
        with pytest.raises(ValueError, match=f"more than max_edges = {limit}"):
            radius_graph_reference(pos, ptr, full_cell, full_pbc, r, max_edges=limit)
    else:
        got = radius_graph(pos, r, batch, cell=cell, pbc=pbc, max_edges=limit)
        expected = radius_graph_reference(pos, ptr, full_cell, full_pbc, r, max_edges=limit)
        assert got[0].shape[1] == expected[0].shape[1] == num_edges


@settings(max_examples=100, **SETTINGS)
@given(st.one_of(molecules(), periodic_structures()))
def test_emulated_cuda_matches_reference(emu_ops, case):
    """The CUDA glue and kernels under host emulation (fixture in conftest.py) on the same
    generated structures: the reference's edges, shifts and order exactly."""
    if case[0] == "periodic":
        _, pos, r, cell, pbc, _, _ = case
        batch = None
    else:
        _, pos, r, batch, _, _, _ = case
        cell = pbc = None
    ptr, num_structures = _structure_pointer(pos, batch, cell)
    full_cell, full_pbc = cell_and_pbc(pos, cell, pbc, num_structures)
    got = emu_ops.radius_graph(pos, ptr, full_cell, full_pbc, r, False, 2**31 - 1)
    expected = radius_graph_reference(pos, ptr, full_cell, full_pbc, r)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def _bad_inputs():
    """(name, call) pairs: each call passes one bad argument, `name` must be in the message."""
    pos = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    eye = torch.eye(3, dtype=torch.float64) * 5
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    return [
        ("cutoff r", lambda: radius_graph(pos, torch.tensor([1.0, 2.0]))),
        ("cutoff r", lambda: radius_graph(pos, torch.tensor([]))),
        ("cutoff r", lambda: radius_graph(pos, "3.0")),
        ("cutoff r", lambda: radius_graph(pos, None)),
        ("cutoff r", lambda: radius_graph(pos, torch.tensor(True))),
        ("cutoff r", lambda: radius_graph(pos, complex(1, 1))),
        ("cutoff r", lambda: radius_graph(pos, -1.0)),
        ("cutoff r", lambda: radius_graph(pos, float("nan"))),
        ("cutoff r", lambda: radius_graph(pos, 1e-200)),
        ("pbc", lambda: radius_graph(pos, 2.0, cell=eye, pbc="TTT")),
        ("pbc", lambda: radius_graph(pos, 2.0, cell=eye, pbc="True")),
        ("pbc", lambda: radius_graph(pos, 2.0, cell=eye, pbc=[True, False])),
        ("pbc", lambda: radius_graph(pos, 2.0, cell=eye, pbc=[1, 0, 1])),
        ("pbc", lambda: radius_graph(pos, 2.0, cell=eye, pbc=[[True, False], [True]])),
        ("pbc", lambda: radius_graph(pos, 2.0, cell=eye, pbc=torch.ones(4, 3, dtype=torch.bool))),
        ("pbc", lambda: radius_graph(pos, 2.0, pbc=[True, True, True])),
        ("cell", lambda: radius_graph(pos, 2.0, cell=torch.eye(4, dtype=torch.float64))),
        ("cell", lambda: radius_graph(pos, 2.0, cell=eye.expand(3, 3, 3))),
        ("cell", lambda: radius_graph(pos, 2.0, batch, cell=eye.expand(3, 3, 3)[:, :2])),
        ("cell", lambda: radius_graph(pos, 2.0, cell=eye.float())),
        ("cell", lambda: radius_graph(pos, 2.0, cell=eye.tolist())),
        ("cell", lambda: radius_graph(pos, 2.0, cell=eye * float("nan"))),
        ("cell", lambda: radius_graph(pos, 2.0, cell=torch.zeros(3, 3, dtype=torch.float64))),
        ("cell", lambda: radius_graph(pos, 2.0, cell=eye * 1e120)),
        ("batch", lambda: radius_graph(pos, 2.0, torch.tensor([1, 0, 0, 0, 0, 0]))),
        ("batch", lambda: radius_graph(pos, 2.0, batch.double())),
        ("batch", lambda: radius_graph(pos, 2.0, batch[:4])),
        ("batch", lambda: radius_graph(pos, 2.0, torch.tensor([0, 0, 0, 0, 0, 10**12]))),
        ("pos", lambda: radius_graph(pos[:, :2], 2.0)),
        ("pos", lambda: radius_graph(pos.long(), 2.0)),
        ("pos", lambda: radius_graph(pos.numpy(), 2.0)),
        ("pos", lambda: radius_graph(pos * float("inf"), 2.0)),
        ("pos", lambda: radius_graph(pos * 1e120, 2.0)),
        ("loop", lambda: radius_graph(pos, 2.0, loop="no")),
        ("return_vectors", lambda: radius_graph(pos, 2.0, return_vectors=1)),
        ("max_edges", lambda: radius_graph(pos, 2.0, max_edges=-1)),
        ("max_edges", lambda: radius_graph(pos, 2.0, max_edges=2**31)),
        ("max_edges", lambda: radius_graph(pos, 2.0, max_edges=10.0)),
        ("max_edges", lambda: radius_graph(pos, 1e4, cell=eye * 2)),
        ("max_edges", lambda: radius_graph(pos, 2.0, max_edges=3)),
    ]


BAD_INPUTS = _bad_inputs()


@settings(max_examples=len(BAD_INPUTS) * 2, **SETTINGS)
@given(st.sampled_from(BAD_INPUTS), st.booleans())
def test_bad_inputs_raise_naming_the_argument(case, use_reference):
    from torch_pet import _extension

    name, call = case
    original = _extension.use_extension
    try:
        if use_reference:  # the pure-PyTorch fallback checks the same things
            _extension.use_extension = lambda device: False
        with pytest.raises((ValueError, TypeError)) as info:
            call()
    finally:
        _extension.use_extension = original
    assert name in str(info.value), str(info.value)
