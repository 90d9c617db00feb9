"""ECSE frames and weights: a slow per-atom oracle, symmetry, continuity, gradients,
degenerate geometries and the frame-count statistics of random CH4."""
import itertools
import math

import pytest
import torch

from torch_pet.ecse import ECSEFrames, ecse_frames
from torch_pet.testing import random_rotation

DTYPES = [torch.float32, torch.float64]
R_OUT = 5.0


# ------------------------------------------------------------------------------ helpers


def dense_graph(pos, batch, cutoff):
    """All pairs (i, j), i != j, of one structure closer than cutoff (non-periodic; tests only).

    Returns edge_vectors [E, 3] (r_ij = x_j - x_i), centre [E] (i, sorted), neighbour [E] (j).
    """
    distance = torch.cdist(pos, pos)
    mask = (distance < cutoff) & (batch[:, None] == batch[None, :])
    mask.fill_diagonal_(False)
    centre, neighbour = mask.nonzero(as_tuple=True)
    return pos[neighbour] - pos[centre], centre, neighbour


def frames_of(pos, batch=None, *, mode="structure", cutoff=R_OUT, **options):
    """ecse_frames of structures given by positions; returns (ECSEFrames, neighbour [E])."""
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long)
    vectors, centre, neighbour = dense_graph(pos, batch, cutoff)
    num_atoms = pos.shape[0]
    if mode == "structure":
        pool_index, num_pools = batch, int(batch.max()) + 1 if num_atoms else 0
    else:
        pool_index, num_pools = torch.arange(num_atoms), num_atoms
    out = ecse_frames(vectors, centre, num_atoms, pool_index, num_pools, outer_cutoff=cutoff, **options)
    return out, neighbour


def frame_atoms(out, neighbour):
    """(centre, j, j') atom triples of each frame."""
    return [(int(c), int(neighbour[a]), int(neighbour[b]))
            for c, (a, b) in zip(out.centre, out.edge_pairs)]


def random_ch4(num, dtype=torch.float64, radius=3.0, min_distance=0.5):
    """C at the origin, 4 H uniform in a ball; structures with any distance < min_distance are
    redrawn as a whole. Returns pos [5 num, 3], batch [5 num]."""
    accepted = []
    while len(accepted) < num:
        direction = torch.randn(4 * num, 4, 3, dtype=torch.float64)
        h = direction / direction.norm(dim=-1, keepdim=True) * radius * torch.rand(4 * num, 4, 1, dtype=torch.float64) ** (1 / 3)
        pos = torch.cat([torch.zeros(4 * num, 1, 3, dtype=torch.float64), h], dim=1)
        distance = torch.cdist(pos, pos) + 1e3 * torch.eye(5, dtype=torch.float64)
        accepted.extend(pos[distance.flatten(1).min(1).values >= min_distance])
    pos = torch.stack(accepted[:num]).reshape(-1, 3).to(dtype)
    return pos, torch.arange(num).repeat_interleave(5)


def random_clusters(num, dtype=torch.float64):
    """Clusters of 1 to 8 atoms in boxes of 2 to 6 Å, all distances >= 0.7 Å."""
    structures = []
    while len(structures) < num:
        n = int(torch.randint(1, 9, ()))
        pos = torch.rand(n, 3, dtype=torch.float64) * (2 + 4 * torch.rand(1, dtype=torch.float64))
        distance = torch.cdist(pos, pos) + 1e3 * torch.eye(n, dtype=torch.float64)
        if n == 1 or distance.min() >= 0.7:
            structures.append(pos)
    batch = torch.cat([torch.full((len(p),), i) for i, p in enumerate(structures)])
    return torch.cat(structures).to(dtype), batch


def probe(out: ECSEFrames, num_pools):
    """A smooth, deliberately non-invariant function of the frames averaged over each pool's
    ensemble (aux prediction 0.3): any discontinuity of frames or weights shows up here."""
    gen = torch.Generator().manual_seed(1)
    mix = torch.randn(9, 4, dtype=torch.float64, generator=gen).to(out.weights.dtype)
    g = torch.sin(3 * out.frames.reshape(-1, 9) @ mix).sum(-1)
    numerator = (0.3 * out.aux_weight).index_add(0, out.pool, out.weights * g)
    denominator = out.aux_weight.index_add(0, out.pool, out.weights)
    return numerator / denominator


# ---------------------------------------------------- slow per-atom oracle (spec formulas)

LAMBERT_W0_INV_E = 0.2784645427610738


def _sigma(g):
    if g <= -1:
        return 0.0
    if g >= 1:
        return 1.0
    return 0.5 * (1 + math.tanh(2 * g / (1 - g * g)))


def _f(r, cutoff, width):
    return 1 - _sigma(2 * (r - cutoff + width / 2) / width)


def _q(x, onset, width):
    return _sigma(2 * (x - onset - width / 2) / width)


def _cross(a, b):
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def slow_ecse_frames(pos, structure_of_atom, pool_of_atom, *, cutoff=R_OUT, o3=False, beta=5.0, delta_r=0.15,
                     omega=0.2, delta_omega=0.15, eps=1e-10, beta_w=1.0, steps=4, smooth_outer_cutoff=True):
    """Python loops over atoms and pairs, written straight from the method's formulas.

    Returns R_in per atom, {pool: aux weight}, {pool: number of frames before pruning}, and
    {(centre, j, j', mirror): (weight, frame as nested lists)} after pruning.
    """
    pos = pos.tolist()
    n = len(pos)
    T = LAMBERT_W0_INV_E / beta
    r_in, candidates = [], []  # candidates: (pool, key, weight, frame)
    for i in range(n):
        neighbours = []
        for j in range(n):
            if j != i and structure_of_atom[j] == structure_of_atom[i]:
                vec = [pos[j][d] - pos[i][d] for d in range(3)]
                r = math.sqrt(sum(x * x for x in vec))
                if r < cutoff:
                    neighbours.append((j, r, [x / r for x in vec]))
        # adaptive inner cutoff: weight-aware smooth minimum over R_out and unordered pairs
        values = [(cutoff, 1.0)]
        for (j, rj, uj), (k, rk, uk) in itertools.combinations(neighbours, 2):
            s = sum(x * x for x in _cross(uj, uk))
            u = _f(rj, cutoff, delta_r) * _f(rk, cutoff, delta_r) * _q(s, omega, delta_omega)
            smax = (rj * math.exp(beta * rj) + rk * math.exp(beta * rk)) / (math.exp(beta * rj) + math.exp(beta * rk))
            values.append((smax + T, u))
        v_min = min(v for v, _ in values)
        num = sum(v * u * math.exp(-beta * (v - v_min)) for v, u in values)
        den = sum(u * math.exp(-beta * (v - v_min)) for v, u in values)
        rin = num / den + delta_r
        r_in.append(rin)
        # frames of ordered pairs
        for (j, rj, uj), (k, rk, uk) in itertools.permutations(neighbours, 2):
            c = _cross(uj, uk)
            s = sum(x * x for x in c)
            if s <= omega - delta_omega:
                continue
            w = (_f(rj, rin, delta_r) * _f(rk, rin, delta_r) * _q(s, omega - delta_omega, delta_omega)
                 * (s - (omega - delta_omega)) / delta_omega)
            if smooth_outer_cutoff:
                w *= _f(rj, cutoff, delta_r) * _f(rk, cutoff, delta_r)
            if w > eps:
                e2 = [x / math.sqrt(s) for x in c]
                e3 = _cross(uj, e2)
                frame = [[uj[d], e2[d], e3[d]] for d in range(3)]  # columns e1 e2 e3
                candidates.append((pool_of_atom[i], (i, j, k), w, frame))
    pools = sorted(set(pool_of_atom))
    aux, before, kept = {}, {}, {}
    for p in pools:
        members = [(key, w, frame) for pool, key, w, frame in candidates if pool == p]
        before[p] = len(members) * (2 if o3 else 1)
        if not members:
            aux[p] = 1.0
            continue

        def smooth_max(ws):
            return sum(w * w * math.exp(beta_w * w) for w in ws) / sum(w * math.exp(beta_w * w) for w in ws)

        weights = {key: w for key, w, _ in members}
        m = smooth_max(weights.values())
        aux[p] = _f(m, 0.5, 0.5)
        p_on = _f(m, 0.5, 0.25)
        for _ in range(steps):
            m = smooth_max(weights.values())
            weights = {key: w * (_q(w, 0.9 * m, 0.1 * m) * (1 - p_on) + p_on) for key, w in weights.items()}
            weights = {key: w for key, w in weights.items() if w > eps}
        for key, _, frame in members:
            if key in weights:
                kept[key + (False,)] = (weights[key], frame)
                if o3:
                    mirror = [[row[0], -row[1], row[2]] for row in frame]
                    kept[key + (True,)] = (weights[key], mirror)
    return r_in, aux, before, kept


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("mode", ["structure", "atom"])
@pytest.mark.parametrize("o3", [False, True])
@pytest.mark.parametrize("smooth_outer_cutoff", [True, False])
def test_matches_slow_per_atom_oracle(mode, o3, smooth_outer_cutoff):
    pos, batch = random_clusters(12)
    ch4, ch4_batch = random_ch4(6)
    pos = torch.cat([pos, ch4])
    batch = torch.cat([batch, ch4_batch + int(batch.max()) + 1])
    pool_of_atom = batch.tolist() if mode == "structure" else list(range(len(pos)))
    # Unpruned weights match to round-off; each pruning step multiplies the rounding error of
    # the weights it cuts by the slope of q(w; 0.9 M, 0.1 M) (seen: 6e-14 -> 6e-12 in 4 steps).
    for steps, weight_tol in ((0, 1e-12), (4, 1e-10)):
        out, neighbour = frames_of(pos, batch, mode=mode, o3=o3, prune_steps=steps,
                                   smooth_outer_cutoff=smooth_outer_cutoff)
        r_in, aux, before, kept = slow_ecse_frames(pos, batch.tolist(), pool_of_atom, o3=o3, steps=steps,
                                                   smooth_outer_cutoff=smooth_outer_cutoff)

        torch.testing.assert_close(out.inner_cutoff, torch.tensor(r_in, dtype=torch.float64), atol=1e-12, rtol=0)
        num_pools = len(aux)
        expected_aux = torch.tensor([aux[p] for p in range(num_pools)], dtype=torch.float64)
        torch.testing.assert_close(out.aux_weight, expected_aux, atol=1e-12, rtol=0)
        assert out.num_candidates.tolist() == [before[p] for p in range(num_pools)]
        mirrored = [o3 and k % 2 == 1 for k in range(len(out.weights))]  # mirrors follow their frame
        keys = [atoms + (m,) for atoms, m in zip(frame_atoms(out, neighbour), mirrored)]
        assert sorted(keys) == sorted(kept), "different sets of frames survive"
        expected_w = torch.tensor([kept[k][0] for k in keys], dtype=torch.float64)
        expected_f = torch.tensor([kept[k][1] for k in keys], dtype=torch.float64)
        torch.testing.assert_close(out.weights, expected_w, atol=weight_tol, rtol=0)
        torch.testing.assert_close(out.frames, expected_f, atol=1e-12, rtol=0)
        assert torch.all(out.pool.diff() >= 0)
        assert torch.equal(out.pool, torch.tensor(pool_of_atom)[out.centre])
    assert len(out.weights) > 20 and bool(((out.aux_weight > 0) & (out.aux_weight < 1)).any() or
                                          (out.aux_weight == 1).any())  # not vacuous


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("o3", [False, True])
def test_frames_are_orthonormal_with_unit_determinant(dtype, o3):
    pos, batch = random_ch4(30, dtype)
    out, _ = frames_of(pos, batch, o3=o3)
    assert out.frames.dtype == dtype and out.weights.dtype == dtype and out.inner_cutoff.dtype == dtype
    eye = torch.eye(3, dtype=dtype).expand_as(out.frames)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.frames.transpose(1, 2) @ out.frames, eye, atol=tol, rtol=0)
    det = torch.linalg.det(out.frames)
    if o3:
        expected = torch.tensor([1.0, -1.0], dtype=dtype).repeat(len(det) // 2)
        torch.testing.assert_close(det, expected, atol=tol, rtol=0)
        torch.testing.assert_close(out.frames[1::2], out.frames[0::2] * torch.tensor([1.0, -1.0, 1.0], dtype=dtype))
        assert torch.equal(out.weights[0::2], out.weights[1::2])
        plain, _ = frames_of(pos, batch)
        torch.testing.assert_close(out.frames[0::2], plain.frames, atol=0, rtol=0)
        assert torch.equal(out.num_candidates, 2 * plain.num_candidates)
    else:
        torch.testing.assert_close(det, torch.ones_like(det), atol=tol, rtol=0)
    assert torch.all(out.weights > 1e-10) and torch.all(out.weights <= 6.34)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_frames_rotate_and_weights_are_invariant(dtype, mode):
    pos, batch = random_ch4(20, torch.float64)
    rotation = random_rotation()
    moved = pos @ rotation.T + torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    out, _ = frames_of(pos.to(dtype), batch, mode=mode)
    rot, _ = frames_of(moved.to(dtype), batch, mode=mode)
    assert torch.equal(out.edge_pairs, rot.edge_pairs)  # same pairs, frames matched by index
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(rot.frames, rotation.to(dtype) @ out.frames, **tol)  # F(X R^T) = R F(X)
    torch.testing.assert_close(rot.inner_cutoff, out.inner_cutoff, **tol)
    # The steep pruning switch amplifies float32 round-off of the weights ~1000x (float64: 1e-11).
    if dtype == torch.float32:
        tol = dict(atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(rot.weights, out.weights, **tol)
    torch.testing.assert_close(rot.aux_weight, out.aux_weight, **tol)


def test_weights_are_invariant_to_permuting_neighbours():
    pos, batch = random_ch4(10)
    # permute the atoms inside each structure (so every centre sees its neighbours in a new order)
    perm = torch.cat([5 * s + torch.randperm(5) for s in range(10)])
    out, neighbour = frames_of(pos, batch)
    per, per_neighbour = frames_of(pos[perm], batch)
    torch.testing.assert_close(per.inner_cutoff, out.inner_cutoff[perm], atol=1e-13, rtol=0)
    torch.testing.assert_close(per.aux_weight, out.aux_weight, atol=1e-13, rtol=0)
    assert torch.equal(per.num_candidates, out.num_candidates)
    original = {(perm[c].item(), perm[j].item(), perm[k].item()): (w, f) for (c, j, k), w, f
                in zip(frame_atoms(per, per_neighbour), per.weights, per.frames)}
    assert sorted(original) == sorted(frame_atoms(out, neighbour))
    for key, w, f in zip(frame_atoms(out, neighbour), out.weights, out.frames):
        torch.testing.assert_close(original[key][0], w, atol=1e-13, rtol=0)
        torch.testing.assert_close(original[key][1], f, atol=1e-13, rtol=0)


def test_batch_equals_structures_alone():
    pos, batch = random_ch4(5)
    together, _ = frames_of(pos, batch)
    for s in range(5):
        alone, _ = frames_of(pos[batch == s])
        mine = together.pool == s
        torch.testing.assert_close(together.frames[mine], alone.frames, atol=1e-14, rtol=0)
        torch.testing.assert_close(together.weights[mine], alone.weights, atol=1e-14, rtol=0)
        torch.testing.assert_close(together.aux_weight[s:s + 1], alone.aux_weight, atol=1e-14, rtol=0)


def test_reference_pair_path_gives_identical_frames(monkeypatch):
    """The fallback without the compiled extension (dense reference pairs) changes nothing."""
    import torch_pet.ecse.frames as frames_module
    import torch_pet.ecse.inner_cutoff as inner_cutoff_module
    from torch_pet.ops.reference import ecse_pairs_reference

    pos, batch = random_clusters(10)
    kernel, _ = frames_of(pos, batch, mode="atom")
    for module in (frames_module, inner_cutoff_module):  # frame pairs and R_in pairs
        monkeypatch.setattr(module, "ecse_pairs", lambda v, ptr, radius, s_min, ordered:
                            ecse_pairs_reference(v.detach(), ptr, radius.detach(), s_min,
                                                 ordered))
    reference, _ = frames_of(pos, batch, mode="atom")
    for name in ECSEFrames._fields:
        assert torch.equal(getattr(kernel, name), getattr(reference, name)), name


def test_unsorted_pools_give_frames_sorted_by_pool():
    pos, batch = random_ch4(4)
    vectors, centre, _ = dense_graph(pos, batch, R_OUT)
    pool_index = torch.tensor([3, 0, 2, 1]).repeat_interleave(5)
    out = ecse_frames(vectors, centre, 20, pool_index, 4, outer_cutoff=R_OUT)
    ref = ecse_frames(vectors, centre, 20, batch, 4, outer_cutoff=R_OUT)
    assert torch.all(out.pool.diff() >= 0)
    for s, p in enumerate([3, 0, 2, 1]):
        torch.testing.assert_close(out.weights[out.pool == p], ref.weights[ref.pool == s])
        assert out.aux_weight[p] == ref.aux_weight[s]


def test_periodic_water_box_with_radius_graph():
    """The pipeline of the symmetrizer: torch_pet.ops.radius_graph on a periodic box; frames
    rotate with the box (positions and cell) and do not change when atoms are wrapped."""
    from torch_pet.ops import radius_graph

    n = 3  # 27 molecules, 81 atoms, box ~9.3 Å
    length = (n ** 3 / 0.0334) ** (1 / 3)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    oxygen = (grid.double() + 0.5) * length / n + 0.3 * torch.rand(n ** 3, 3, dtype=torch.float64)
    rotations = torch.stack([random_rotation() for _ in range(n ** 3)])
    hydrogen = oxygen[:, None] + _WATER[1:] @ rotations.transpose(1, 2)
    pos = torch.cat([oxygen[:, None], hydrogen], dim=1).reshape(-1, 3)
    cell = torch.eye(3, dtype=torch.float64) * length

    def frames(pos, cell):
        edge_index, _, vectors = radius_graph(pos, R_OUT, cell=cell, return_vectors=True)
        return ecse_frames(vectors, edge_index[1], len(pos), torch.arange(len(pos)), len(pos),
                           outer_cutoff=R_OUT)

    out = frames(pos, cell)
    assert out.frames.shape[0] > len(pos) and (out.aux_weight == 0).all()
    rotation = random_rotation()
    rot = frames(pos @ rotation.T, cell @ rotation.T)
    wrapped = pos.clone()
    wrapped[::4] += torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64) @ cell  # other images
    wrap = frames(wrapped, cell)
    for other in (rot, wrap):
        for name in ("centre", "pool", "num_candidates"):
            assert torch.equal(getattr(other, name), getattr(out, name)), name
        torch.testing.assert_close(other.weights, out.weights, atol=1e-10, rtol=0)
        torch.testing.assert_close(other.aux_weight, out.aux_weight, atol=1e-10, rtol=0)
        torch.testing.assert_close(other.inner_cutoff, out.inner_cutoff, atol=1e-12, rtol=0)
    torch.testing.assert_close(rot.frames, rotation @ out.frames, atol=1e-11, rtol=0)
    torch.testing.assert_close(wrap.frames, out.frames, atol=1e-11, rtol=0)


# ---- continuity: fine scans, all configurations of a scan in one batch


def _scan(configurations, mode="structure", **options):
    """Per configuration: R_in of every atom, then per pool w_aux, sum of weights, probe."""
    num, atoms = configurations.shape[:2]
    batch = torch.arange(num).repeat_interleave(atoms)
    out, _ = frames_of(configurations.reshape(-1, 3), batch, mode=mode, **options)
    num_pools = out.aux_weight.numel()
    total = torch.zeros(num_pools, dtype=torch.float64).index_add(0, out.pool, out.weights)
    return {"R_in": out.inner_cutoff.view(num, -1), "w_aux": out.aux_weight.view(num, -1),
            "sum of weights": total.view(num, -1), "probe": probe(out, num_pools).view(num, -1)}


def _assert_continuous(make, start, stop, steps, max_jump, **options):
    """Bounded jumps between neighbouring steps, and jumps that vanish under refinement.

    The weights are C-infinity but steep (the pruning switch is ~0.1 M wide), so a coarse jump
    alone cannot tell steep from broken: each quantity's two largest jumps are zoomed into
    three times, 20x finer each time. A discontinuity keeps its size down to a step of
    ~1e-7 Å; a continuous curve's jump shrinks with the step.
    """
    grid = torch.linspace(start, stop, steps + 1, dtype=torch.float64)
    for mode in ("structure", "atom"):
        values = _scan(make(grid), mode, **options)
        for name, value in values.items():
            jumps = value.diff(dim=0).abs().max(dim=1).values
            if name in max_jump:
                assert jumps.max() < max_jump[name], f"{mode} mode: {name} jumps by {jumps.max():.3g}"
            for k in jumps.topk(2).indices.tolist():
                left, right, jump = float(grid[k]), float(grid[k + 1]), float(jumps[k])
                for _ in range(3):
                    fine = torch.linspace(left, right, 21, dtype=torch.float64)
                    fine_jumps = _scan(make(fine), mode, **options)[name].diff(dim=0).abs().max(dim=1).values
                    i = int(fine_jumps.argmax())
                    left, right = float(fine[i]), float(fine[i + 1])
                assert fine_jumps[i] <= 0.05 * jump + 1e-12, (
                    f"{mode} mode: {name} jumps by {jump:.3g} at {grid[k]:.4f}, still by "
                    f"{fine_jumps[i]:.3g} at {left:.7f} with 8000x finer steps: discontinuous")
    return _scan(make(grid), "atom", **options)


def _methane_with_moving_h(distance):
    base = torch.tensor([[0.0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89],
                         [0, 0, 0]], dtype=torch.float64)
    direction = torch.tensor([-0.4, -0.5, -0.77], dtype=torch.float64)
    configurations = base.repeat(len(distance), 1, 1)
    configurations[:, 4] = distance[:, None] * direction / direction.norm()
    return configurations


def test_continuity_as_a_neighbour_crosses_the_inner_cutoff():
    # H4 leaves the carbon's R_in (~1.3 Å); it stays inside R_out of every atom
    values = _assert_continuous(_methane_with_moving_h, 0.8, 4.0, 1600,
                                max_jump={"R_in": 0.05, "w_aux": 0.5, "probe": 1.0})
    r_in_carbon = values["R_in"][:, 0]
    assert 0.8 < r_in_carbon.min() - 0.15 and r_in_carbon.max() < 4.0  # H4 crosses [R_in - dR, R_in]
    assert r_in_carbon.max() - r_in_carbon.min() > 0.05
    assert (values["w_aux"][:, :4] == 0).all()


_WATER = torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], dtype=torch.float64)


def _water_leaving_water(distance):
    """A second water molecule pulled away from the first; its atoms cross R_out one by one."""
    direction = torch.tensor([0.3, 0.4, 0.87], dtype=torch.float64)
    direction = direction / direction.norm()
    other = _WATER @ torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=torch.float64).T
    configurations = torch.cat([_WATER.expand(len(distance), 3, 3),
                                other + distance[:, None, None] * direction], dim=1)
    return configurations


def test_continuity_as_a_molecule_crosses_the_outer_cutoff():
    values = _assert_continuous(_water_leaving_water, 4.0, 6.5, 1250,
                                max_jump={"R_in": 0.05, "w_aux": 0.5, "probe": 1.0})
    r_in = values["R_in"]
    assert (r_in.max(0).values - r_in.min(0).values).max() > 1e-4  # R_in feels the other molecule


def _lone_atom_leaving(distance):
    """Two neighbours near 3 Å and a lone atom crossing R_out: the lone atom's own R_in
    exceeds R_out - delta_r (its only well-conditioned pairs lie near R_out)."""
    base = torch.tensor([[0.0, 0, 0], [3.0, 0, 0], [0.2, 2.9, 0.3], [0, 0, 0]], dtype=torch.float64)
    direction = torch.tensor([0.3, 0.4, 0.87], dtype=torch.float64)
    configurations = base.repeat(len(distance), 1, 1)
    configurations[:, 3] = distance[:, None] * direction / direction.norm()
    return configurations


def test_continuity_at_the_outer_cutoff_in_sparse_environments():
    """Where an atom has no well-conditioned pair well inside R_out, R_in -> R_out + delta_r and
    f(r; R_in) alone does not switch its frames off at R_out; the default smooth_outer_cutoff
    factor f(r; R_out) does."""
    values = _assert_continuous(_lone_atom_leaving, 4.0, 5.6, 800,
                                max_jump={"R_in": 0.05, "w_aux": 0.5, "probe": 2.5})
    assert values["R_in"][:, 3].max() > 5.0  # the regime where f(r; R_in) alone is not enough
    values = _assert_continuous(_methane_with_moving_h, 3.5, 6.0, 1250,
                                max_jump={"R_in": 0.05, "w_aux": 0.5, "probe": 2.5})
    assert values["R_in"][:, 4].max() > 5.0


def test_published_weights_jump_at_the_outer_cutoff_in_sparse_environments():
    """The published weights (smooth_outer_cutoff=False) are discontinuous there (e.g. H4
    pulled off methane at 4.523 Å: w_aux of H4 0 -> 0.47): the reason for the default."""
    with pytest.raises(AssertionError, match="discontinuous|jumps by"):
        _assert_continuous(_methane_with_moving_h, 3.5, 6.0, 1250, smooth_outer_cutoff=False,
                           max_jump={"R_in": 0.05, "w_aux": 0.5, "probe": 2.5})


def test_smooth_outer_cutoff_changes_nothing_when_r_in_is_well_inside():
    pos, batch = random_ch4(20)
    plain, _ = frames_of(pos, batch, smooth_outer_cutoff=False)
    smooth, _ = frames_of(pos, batch)
    inside = plain.inner_cutoff[plain.centre] <= R_OUT - 0.15
    assert inside.float().mean() > 0.9
    torch.testing.assert_close(plain.inner_cutoff, smooth.inner_cutoff, atol=0, rtol=0)
    for s in range(20):  # pools without any R_in above R_out - delta_r are unchanged
        if (plain.inner_cutoff[batch == s] <= R_OUT - 0.15).all():
            torch.testing.assert_close(plain.weights[plain.pool == s], smooth.weights[smooth.pool == s],
                                       atol=0, rtol=0)


def _bending_triatomic(angle_degrees):
    angle = torch.deg2rad(angle_degrees)
    configurations = torch.zeros(len(angle), 3, 3, dtype=torch.float64)
    configurations[:, 1, 0] = -1.0  # every angle of the chain is near 0 or 180 degrees
    configurations[:, 2, 0] = 1.3 * torch.cos(angle)
    configurations[:, 2, 1] = 1.3 * torch.sin(angle)
    return configurations


def test_continuity_as_an_angle_crosses_the_collinearity_window():
    # at the middle atom s = sin^2 crosses 0.05, 0.2 and 0.35 at 12.9, 26.6 and 36.3 degrees;
    # R_in drops steeply (but continuously) from R_out + delta_r once a pair has s > 0.2
    values = _assert_continuous(_bending_triatomic, 2.0, 60.0, 2900,
                                max_jump={"R_in": 1.0, "w_aux": 0.5, "probe": 1.0})
    aux = values["w_aux"][:, 0]  # atom mode, middle atom
    assert aux[0] == 1 and aux[-1] == 0 and ((aux > 0) & (aux < 1)).any()


# ---- gradients


def test_gradcheck_float64():
    pos, batch = random_ch4(2)
    vectors, centre, _ = dense_graph(pos, batch, R_OUT)
    vectors.requires_grad_()

    def outputs(vectors):
        out = ecse_frames(vectors, centre, 10, batch, 2, outer_cutoff=R_OUT)
        return out.frames, out.weights, out.aux_weight, out.inner_cutoff

    sizes = [t.numel() for t in outputs(vectors)]
    assert sizes[0] > 0 and sizes[1] > 0
    torch.autograd.gradcheck(outputs, (vectors,))
    # training on forces differentiates twice
    torch.autograd.gradgradcheck(lambda v: (outputs(v)[1] ** 2).sum() + outputs(v)[3].sum(), (vectors,))


def test_gradcheck_float64_with_active_pruning_and_aux():
    """A pool whose weights are small enough that p_on and w_aux are strictly inside (0, 1)."""
    pos = _bending_triatomic(torch.tensor([21.0], dtype=torch.float64))[0]
    out, _ = frames_of(pos)
    assert 0 < float(out.aux_weight) < 1
    vectors, centre, _ = dense_graph(pos, torch.zeros(3, dtype=torch.long), R_OUT)

    def outputs(vectors):
        out = ecse_frames(vectors, centre, 3, torch.zeros(3, dtype=torch.long), 1, outer_cutoff=R_OUT)
        return out.frames, out.weights, out.aux_weight, out.inner_cutoff

    torch.autograd.gradcheck(outputs, (vectors.requires_grad_(),))


def test_zero_length_edges_have_finite_gradients():
    vectors = torch.tensor([[1.0, 0, 0], [0, 1.2, 0], [0, 0, 0], [0.3, 0.2, 1.1]], dtype=torch.float64,
                           requires_grad=True)
    centre = torch.zeros(4, dtype=torch.long)
    out = ecse_frames(vectors, centre, 1, torch.zeros(1, dtype=torch.long), 1, outer_cutoff=R_OUT)
    assert 2 not in out.edge_pairs
    (out.weights.sum() + out.frames.sum() + out.aux_weight.sum() + out.inner_cutoff.sum()).backward()
    assert torch.isfinite(vectors.grad).all()


# ---- degenerate geometries


def _line(n, spacing=1.2, bend=0.0):
    pos = torch.zeros(n, 3, dtype=torch.float64)
    pos[:, 0] = spacing * torch.arange(n, dtype=torch.float64)
    pos[1::2, 1] = bend
    return pos


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_no_frames_without_non_collinear_pairs(mode):
    cases = {
        "single atom": torch.zeros(1, 3, dtype=torch.float64),
        "dimer": _line(2),
        "collinear chain": _line(5),
        "nearly collinear chain": _line(4, bend=0.05),  # s < 0.05 for every pair
    }
    for name, pos in cases.items():
        out, _ = frames_of(pos, mode=mode)
        assert out.frames.shape == (0, 3, 3) and out.weights.shape == (0,), name
        assert torch.all(out.aux_weight == 1), name
        assert torch.all(out.num_candidates == 0), name
        # no pair reaches the stricter window of R_in either: R_in = R_out + delta_R
        torch.testing.assert_close(out.inner_cutoff, torch.full((len(pos),), R_OUT + 0.15, dtype=torch.float64))


def test_weakly_bent_chain_has_small_weights_and_aux_blend():
    pos = _bending_triatomic(torch.tensor([21.0], dtype=torch.float64))[0]  # s = 0.128 at the centre
    out, _ = frames_of(pos, mode="atom")
    assert out.weights.numel() > 0 and float(out.weights.max()) < 0.5
    assert torch.all((out.aux_weight > 0) & (out.aux_weight <= 1))
    assert float(out.aux_weight[0]) < 1


def test_planar_environments():
    # a flat, water-like molecule: every frame has e2 normal to the plane
    pos = torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], dtype=torch.float64)
    out, _ = frames_of(pos, mode="atom")
    assert torch.all(out.num_candidates == 2)
    torch.testing.assert_close(out.frames[:, :, 1].abs(), torch.tensor([0.0, 0, 1]).double().expand(len(out.frames), 3))
    assert torch.all(out.aux_weight == 0)
    # a planar right angle plus, in the same plane but beyond R_out, a dimer without frames
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [12.0, 0, 0], [13.0, 0, 0]], dtype=torch.float64)
    out, _ = frames_of(pos, mode="atom")
    torch.testing.assert_close(out.aux_weight, torch.tensor([0.0, 0, 0, 1, 1], dtype=torch.float64))
    assert set(out.pool.tolist()) == {0, 1, 2}


def test_empty_input():
    out = ecse_frames(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 0,
                      torch.zeros(0, dtype=torch.long), 0, outer_cutoff=R_OUT)
    assert out.frames.shape == (0, 3, 3) and out.aux_weight.shape == (0,) and out.inner_cutoff.shape == (0,)
    out = ecse_frames(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 3,
                      torch.tensor([0, 0, 1]), 2, outer_cutoff=R_OUT)
    assert torch.equal(out.aux_weight, torch.ones(2)) and out.frames.shape == (0, 3, 3)


# ---- statistics of the reference CH4 set


def test_frame_counts_on_random_methane():
    """Spec (100 random CH4, structure pooling, R_out 5 Å): 20.5 frames per structure before
    pruning, 3.4 after (range 2-8), mean R_in 2.66 Å. Standard errors of the 100-structure
    means here: ~0.6, ~0.16 and ~0.04 Å."""
    pos, batch = random_ch4(100)
    out, _ = frames_of(pos, batch)
    before = out.num_candidates.double()
    after = torch.bincount(out.pool, minlength=100)
    print(f"\nCH4: {before.mean():.2f} frames before pruning, {after.double().mean():.2f} after "
          f"(range {int(after.min())}-{int(after.max())}), mean R_in {out.inner_cutoff.mean():.3f} Å")
    assert abs(before.mean() - 20.5) < 2.0
    assert abs(after.double().mean() - 3.4) < 0.6
    assert int(after.min()) >= 2 and int(after.max()) <= 16
    assert torch.all(after % 2 == 0)  # (j, j') and (j', j) always share their weight
    assert abs(out.inner_cutoff.mean() - 2.66) < 0.2


# ---- bad input


def test_bad_input_raises_clear_errors():
    pos, batch = random_ch4(2)
    vectors, centre, _ = dense_graph(pos, batch, R_OUT)
    kwargs = dict(outer_cutoff=R_OUT)
    with pytest.raises(ValueError, match="build the neighbour list with radius outer_cutoff"):
        ecse_frames(vectors, centre, 10, batch, 2, outer_cutoff=2.0)
    # rounding-level excess (a graph test done in another arithmetic) is accepted
    longest = float(vectors.norm(dim=-1).max())
    ecse_frames(vectors, centre, 10, batch, 2, outer_cutoff=longest * (1 - 1e-6))
    with pytest.raises(ValueError, match="build the neighbour list"):
        ecse_frames(vectors, centre, 10, batch, 2, outer_cutoff=longest * (1 - 1e-3))
    with pytest.raises(ValueError, match="centre must be sorted ascending"):
        ecse_frames(vectors, centre.flip(0), 10, batch, 2, **kwargs)
    with pytest.raises(ValueError, match=r"pool_index must be an int64 tensor of shape \[N\]"):
        ecse_frames(vectors, centre, 10, batch[:-1], 2, **kwargs)
    with pytest.raises(ValueError, match="pool_index values must lie in"):
        ecse_frames(vectors, centre, 10, batch, 1, **kwargs)
    with pytest.raises(ValueError, match="centre indices must lie in"):
        ecse_frames(vectors, centre, 5, batch[:5], 2, **kwargs)
    nan = vectors.clone()
    nan[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ecse_frames(nan, centre, 10, batch, 2, **kwargs)
    with pytest.raises(ValueError, match="outer_cutoff must be positive"):
        ecse_frames(vectors, centre, 10, batch, 2, outer_cutoff=-1.0)
    with pytest.raises(ValueError, match="delta_omega <= omega"):
        ecse_frames(vectors, centre, 10, batch, 2, omega=0.1, delta_omega=0.15, **kwargs)
    with pytest.raises(ValueError, match="beta must be positive"):
        ecse_frames(vectors, centre, 10, batch, 2, beta=0.0, **kwargs)
    with pytest.raises(TypeError, match="float32 or float64"):
        ecse_frames(vectors.half(), centre, 10, batch, 2, **kwargs)
