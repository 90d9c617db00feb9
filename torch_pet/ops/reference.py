"""Pure-PyTorch reference implementations of the torch_pet ops (test oracles and the
fallback when the compiled extension is missing). One section per op."""
import math

import torch


# ---------------------------------------------------------------------------------------
# radius_graph: brute force per structure over every periodic image that can matter.
# ---------------------------------------------------------------------------------------

# Documented limits, the same as the compiled op's (csrc/kernels/radius_graph.h).
MAX_EDGES = 2**31 - 1  # default and largest max_edges
MAX_IMAGES = 2**30  # periodic images along one cell vector
MAX_COORDINATE_FLOAT64 = 1e100  # |pos| and |periodic cell entries| in float64
MIN_CUTOFF = {torch.float32: 1e-18, torch.float64: 1e-150}  # r * r stays a normal number
_FLOAT32_MAX = torch.finfo(torch.float32).max


def radius_graph_search_radius(r: float, dtype: torch.dtype, max_abs_pos: float,
                               cell_norms_times_images: float) -> float:
    """Cutoff enlarged by a bound on the rounding of the edge test in ``dtype`` (the same
    margin the kernels use to choose which candidates and images to test exactly)."""
    eps = torch.finfo(dtype).eps
    return r * (1.0 + 1e-6) + 64.0 * eps * (max_abs_pos + r + cell_norms_times_images)


def radius_graph_reference(
    pos: torch.Tensor,
    ptr: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    r: float,
    loop: bool = False,
    max_edges: int = MAX_EDGES,
):
    """Pure-PyTorch reference of ``torch_pet::radius_graph`` (same arguments, same output,
    same limits).

    The edge j -> i with integer shift S (zero on non-periodic axes) exists iff, in the dtype
    of ``pos`` and with this exact order of operations,
    ``v = (pos[j] - pos[i]) + ((S0 * cell[0] + S1 * cell[1]) + S2 * cell[2])`` has
    ``(v0 * v0 + v1 * v1) + v2 * v2 < r * r``; j == i with S == 0 only when ``loop``. In
    float32, a pair whose ``v`` or squared norm overflows is decided by the same formula in
    float64 against ``float(float32(r)) ** 2``. Structures (atoms ``ptr[b]:ptr[b+1]``) are
    never connected to each other.

    Raises ValueError for more than ``max_edges`` edges (before enumerating them when a lower
    bound proves it), float64 coordinates beyond 1e100, r below 1e-18 (float32) or 1e-150
    (float64), more than 2**30 periodic images along a cell vector, atoms more than 1e9
    cells away from the origin.

    Shapes:
        pos [N, 3], ptr [B+1] long, cell [B, 3, 3], pbc [B, 3] bool
        -> edge_index [2, E] long (row 0 neighbour j, row 1 centre i), shifts [E, 3] long,
        sorted by (centre, neighbour, shift)
    """
    device, dtype = pos.device, pos.dtype
    _check_limits(pos, cell, pbc, r, max_edges)
    cutoff = torch.tensor(r, dtype=dtype, device=device)  # inf when r overflows float32
    cutoff2 = cutoff * cutoff
    wide_cutoff2 = float(cutoff) * float(cutoff)  # a float product overflows to inf, no error
    max_abs_pos = float(pos.abs().max()) if pos.numel() else 0.0
    bounds = ptr.tolist()
    structures = []
    lower_bound = 0.0
    for b in range(len(bounds) - 1):
        if bounds[b + 1] > bounds[b]:
            setup = _structure_setup(pos[bounds[b]:bounds[b + 1]], cell[b], pbc[b], float(cutoff), max_abs_pos,
                                     loop)
            lower_bound += setup["min_edges"]
            structures.append((b, setup))
    if lower_bound > max_edges:
        raise _too_many_edges(lower_bound, True, max_edges)
    centres, neighbours, all_shifts = [], [], []
    total = 0
    for b, setup in structures:
        start = bounds[b]
        p = pos[start:bounds[b + 1]]
        periodic = setup["periodic"]
        images, wrap = _periodic_images(p, setup, b, max_abs_pos)
        n, num_images = p.shape[0], images.shape[0]
        # Chunks of centres bound the [m, n, I, 3] intermediates to a few million entries.
        chunk = max(1, 1_000_000 // (n * num_images))
        for first in range(0, n, chunk):
            i = torch.arange(first, min(first + chunk, n), device=device)
            diff = p[None, :, None, :] - p[i][:, None, None, :]  # [m, n, 1, 3]
            shift = images[None, None] - wrap[None, :, None] + wrap[i][:, None, None]  # [m, n, I, 3]
            v = _shifted(diff, shift, cell[b], periodic)
            d2 = (v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]) + v[..., 2] * v[..., 2]
            keep = d2 < cutoff2
            if dtype == torch.float32:
                overflow = ~(d2 <= _FLOAT32_MAX)  # inf or NaN: redo in float64
                if bool(overflow.any()):
                    w = _shifted(diff.double(), shift, cell[b].double(), periodic)
                    wide2 = (w[..., 0] * w[..., 0] + w[..., 1] * w[..., 1]) + w[..., 2] * w[..., 2]
                    keep |= overflow & (wide2 < wide_cutoff2)
            if not loop:
                same = i[:, None, None] == torch.arange(n, device=device)[None, :, None]
                keep &= ~(same & (shift == 0).all(-1))
            ci, nj, k = keep.nonzero(as_tuple=True)  # row-major: sorted by (i, j, S)
            total += ci.numel()
            if total > max_edges:
                raise _too_many_edges(total, True, max_edges)
            centres.append(ci + first + start)
            neighbours.append(nj + start)
            all_shifts.append(shift[ci, nj, k])
    if not centres:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return torch.stack([empty, empty]), torch.zeros(0, 3, dtype=torch.long, device=device)
    edge_index = torch.stack([torch.cat(neighbours), torch.cat(centres)])
    return edge_index, torch.cat(all_shifts)


def _check_limits(pos, cell, pbc, r, max_edges) -> None:
    """The op's documented limits on r, max_edges and float64 magnitudes (ValueError)."""
    if not math.isfinite(r) or r <= 0.0:
        raise ValueError(f"radius_graph: the cutoff r must be positive and finite, got {r}")
    if r < MIN_CUTOFF[pos.dtype]:
        raise ValueError(f"radius_graph: the cutoff r = {r} is too small for {pos.dtype} (r * r would "
                         f"underflow); r must be at least {MIN_CUTOFF[pos.dtype]}: rescale the units")
    if isinstance(max_edges, bool) or not isinstance(max_edges, int) or not 0 <= max_edges <= MAX_EDGES:
        raise ValueError(f"radius_graph: max_edges must be an integer in [0, 2**31 - 1], got {max_edges!r}")
    if pos.dtype == torch.float64:
        largest = float(pos.abs().max()) if pos.numel() else 0.0
        if largest > MAX_COORDINATE_FLOAT64:
            raise ValueError(f"radius_graph: pos has a coordinate of magnitude {largest:g}; float64 positions "
                             "must stay within 1e100 (squared distances would overflow): rescale the units")
        periodic_rows = (cell.abs() * pbc[..., None]).flatten(1)
        too_large = (periodic_rows > MAX_COORDINATE_FLOAT64).any(1)
        if bool(too_large.any()):
            b = int(too_large.nonzero()[0])
            raise ValueError(f"radius_graph: the cell of structure {b} has an entry of magnitude "
                             f"{float(periodic_rows[b].max()):g}; float64 cells must stay within 1e100 "
                             "(squared distances would overflow): rescale the units")


def _too_many_edges(count, at_least, max_edges) -> ValueError:
    text = f"{int(count)}" if count < 1e15 else (f"{count:.3g}" if math.isfinite(count) else "more than 1e308")
    return ValueError(f"radius_graph: the graph would have {'at least ' if at_least else ''}{text} edges "
                      f"(pairs closer than r, periodic images included), more than max_edges = {max_edges}; "
                      "use a smaller cutoff r, a larger cell or fewer atoms per structure, or raise "
                      "max_edges (at most 2**31 - 1)")


def _structure_setup(p, cell, pbc, r, max_abs_pos, loop):
    """Periodic rows, reciprocal vectors, search radius and a lower bound on the edges of one
    non-empty structure (the bound of ``min_edges`` in csrc/kernels/radius_graph.h)."""
    periodic = pbc.nonzero().flatten()
    rows = cell.double()[periodic]  # [P, 3]
    setup = {"periodic": periodic, "rows": rows}
    if periodic.numel():
        unit = rows / rows.norm(dim=1, keepdim=True)
        dual = torch.linalg.solve(unit @ unit.T, unit) / rows.norm(dim=1, keepdim=True)  # reciprocal vectors
        recip_norm = dual.norm(dim=1)
        images = [math.ceil(r * float(x)) + 2.0 if math.isfinite(r) else math.inf for x in recip_norm]
        cell_term = sum(float(n) * m for n, m in zip(rows.norm(dim=1), images))
        perp = p.double() - (p.double() @ dual.T) @ rows  # part of pos outside the periodic span
    else:
        dual, recip_norm, images, cell_term, unit = None, None, [], 0.0, None
        perp = p.double()
    eps = torch.finfo(p.dtype).eps
    margin = 1e-6 * r + 64.0 * eps * (max_abs_pos + r + cell_term)
    finite = math.isfinite(r) and math.isfinite(margin)
    setup.update(dual=dual, recip_norm=recip_norm, images=images,
                 search=r + margin if finite else math.inf)
    inner = r - margin if finite else math.inf
    n = p.shape[0]
    extent2 = float(((perp.max(0).values - perp.min(0).values) ** 2).sum()) if periodic.numel() < 3 else 0.0
    rho2 = inner * inner - extent2 if inner > 0 else 0.0
    bound = 0.0
    if rho2 > 0 and periodic.numel() == 0:
        bound = n * n - (0 if loop else n)
    elif rho2 > 0:
        lengths = rows.norm(dim=1).tolist()
        free = math.sqrt(rho2) - sum(lengths)
        if free > 0:
            if len(lengths) == 1:
                per_pair = 2.0 * free / lengths[0]
            elif len(lengths) == 2:
                per_pair = math.pi * (free / lengths[0]) * (free / lengths[1]) / float(
                    torch.linalg.cross(unit[0], unit[1]).norm())
            else:
                per_pair = 4.0 / 3.0 * math.pi * (free / lengths[0]) * (free / lengths[1]) * (
                    free / lengths[2]) / abs(float(torch.linalg.det(unit)))
            per_pair = math.floor(per_pair * (1.0 - 1e-9)) if math.isfinite(per_pair) else math.inf
            bound = max(0.0, n * n * per_pair - (0 if loop else n))
    setup["min_edges"] = bound
    return setup


def _shifted(diff, shift, cell, periodic):
    """(pos[j] - pos[i]) + ((S0 * cell[0] + S1 * cell[1]) + S2 * cell[2]) in the dtype of diff."""
    if periodic.numel() == 0:
        return diff
    s = shift.to(diff.dtype)
    return diff + ((s[..., 0:1] * cell[0] + s[..., 1:2] * cell[1]) + s[..., 2:3] * cell[2])


def _periodic_images(p, setup, b, max_abs_pos):
    """Image shifts s' [I, 3] (lexicographic) relative to the wrapped positions and the
    integer wraps w [n, 3] of the atoms; S = s' - w_j + w_i covers every edge."""
    n, device = p.shape[0], p.device
    periodic = setup["periodic"]
    wrap = torch.zeros(n, 3, dtype=torch.long, device=device)
    if periodic.numel() == 0:
        return torch.zeros(1, 3, dtype=torch.long, device=device), wrap
    for axis, images in zip(periodic.tolist(), setup["images"]):
        if images > MAX_IMAGES:
            raise ValueError(f"radius_graph: the cutoff spans {images:.3g} periodic images along cell "
                             f"vector {axis} of structure {b} (at most 2**30); use a smaller cutoff or a "
                             "larger cell")
    dual = setup["dual"]
    bound = max_abs_pos * dual.abs().sum(dim=1)
    if bool((bound >= 1e9).any()):
        raise ValueError(f"radius_graph: atoms of structure {b} lie more than 1e9 cells away from the "
                         "origin; wrap the positions into the cell first")
    frac = p.double() @ dual.T  # [n, P]
    wrap[:, periodic] = torch.floor(frac).long()
    # |s'_k| <= |f_j + S - f_i|_k + |f'_j - f'_i|_k <= search * |b_k| + 1
    reach = [math.ceil(setup["search"] * float(x)) + 1 for x in setup["recip_norm"]]
    ranges = [torch.zeros(1, dtype=torch.long, device=device)] * 3
    for axis, m in zip(periodic.tolist(), reach):
        ranges[axis] = torch.arange(-m, m + 1, device=device)
    images = torch.stack(torch.meshgrid(*ranges, indexing="ij"), dim=-1).reshape(-1, 3)
    return images, wrap


# ---------------------------------------------------------------------------------------
# reverse_edge_index: partner (i -> j, -S) of every edge (j -> i, S), by row matching.
# ---------------------------------------------------------------------------------------


def reverse_edge_index_reference(edge_index: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch reference of ``torch_pet::reverse_edge_index`` (any edge order).

    For the edge e = (j -> i, S) returns the index of the edge (i -> j, -S), the first one
    if it is listed several times, or -1 when there is none.

    Shapes:
        edge_index [2, E] long, shifts [E, 3] long -> partner [E] long
    """
    num_edges = edge_index.shape[1]
    if num_edges == 0:
        return torch.zeros(0, dtype=torch.long, device=edge_index.device)
    keys = torch.cat([edge_index.flip(0).T, shifts], dim=1)  # (centre, neighbour, S)
    partner_keys = torch.cat([edge_index.T, -shifts], dim=1)  # (neighbour, centre, -S)
    _, inverse = torch.unique(torch.cat([keys, partner_keys]), dim=0, return_inverse=True)
    first = torch.full((2 * num_edges,), -1, dtype=torch.long, device=edge_index.device)
    first.scatter_reduce_(0, inverse[:num_edges], torch.arange(num_edges, device=edge_index.device),
                          reduce="amin", include_self=False)
    return first[inverse[num_edges:]]


# ---------------------------------------------------------------------------------------
# ecse_pairs (ECSE engineer): candidate and frame pairs of ECSE, dense per centre.
# ---------------------------------------------------------------------------------------


def ecse_pairs_reference(
    edge_vectors: torch.Tensor,
    centre_ptr: torch.Tensor,
    radius: torch.Tensor,
    s_min: float,
    ordered: bool,
) -> torch.Tensor:
    """Pure-PyTorch reference of ``torch_pet::ecse_pairs`` (dense K x K per centre).

    Keeps the pairs of edges (a, b), a != b, of one centre c with ``|r_a| < radius[c]``,
    ``|r_b| < radius[c]`` and ``s = |r̂_a x r̂_b|^2 > s_min`` (zero-length edges never pair);
    both orders when ``ordered``, else ``a < b``. Sorted by (centre, a, b).

    Shapes:
        edge_vectors [E, 3], centre_ptr [N+1] (long, CSR over edges grouped by centre),
        radius [N] -> pairs [P, 2] (long edge ids)
    """
    device = edge_vectors.device
    num_centres = centre_ptr.numel() - 1
    counts = centre_ptr.diff()
    num_edges = edge_vectors.shape[0]
    if num_edges == 0 or num_centres == 0:
        return torch.zeros(0, 2, dtype=torch.long, device=device)
    max_neighbours = int(counts.max())
    centre = torch.repeat_interleave(torch.arange(num_centres, device=device), counts)
    slot = torch.arange(num_edges, device=device) - centre_ptr[centre]
    # Padded [N, K] layout of the edges; padding has id -1 and never pairs.
    edge_id = torch.full((num_centres, max_neighbours), -1, dtype=torch.long, device=device)
    edge_id[centre, slot] = torch.arange(num_edges, device=device)
    vectors = edge_vectors.new_zeros(num_centres, max_neighbours, 3)
    vectors[centre, slot] = edge_vectors
    eye = torch.eye(max_neighbours, dtype=torch.bool, device=device)
    allowed = ~eye if ordered else torch.ones_like(eye).triu(1)
    pairs = []
    # Chunks of centres bound the [n, K, K, 3] intermediates to a few million entries.
    chunk = max(1, 4_000_000 // (max_neighbours * max_neighbours))
    for start in range(0, num_centres, chunk):
        vec = vectors[start:start + chunk]  # [n, K, 3]
        length2 = (vec * vec).sum(-1)  # [n, K]
        inside = (length2 > 0) & (length2.sqrt() < radius[start:start + chunk, None])
        cross = torch.cross(vec[:, :, None, :].expand(-1, -1, max_neighbours, -1),
                            vec[:, None, :, :].expand(-1, max_neighbours, -1, -1), dim=-1)
        sine2 = (cross * cross).sum(-1) / (length2[:, :, None] * length2[:, None, :])
        keep = inside[:, :, None] & inside[:, None, :] & (sine2 > s_min) & allowed
        c, i, j = keep.nonzero(as_tuple=True)
        c = c + start
        pairs.append(torch.stack([edge_id[c, i], edge_id[c, j]], dim=1))
    return torch.cat(pairs, dim=0)
