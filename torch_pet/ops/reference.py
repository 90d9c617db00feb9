"""Pure-PyTorch reference implementations of the torch_pet ops (test oracles and the
fallback when the compiled extension is missing). One section per op."""
import itertools

import torch


# ---------------------------------------------------------------------------------------
# radius_graph: brute force per structure over every periodic image that can matter.
# ---------------------------------------------------------------------------------------


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
):
    """Pure-PyTorch reference of ``torch_pet::radius_graph`` (same arguments, same output).

    The edge j -> i with integer shift S (zero on non-periodic axes) exists iff, in the dtype
    of ``pos`` and with this exact order of operations,
    ``v = (pos[j] - pos[i]) + ((S0 * cell[0] + S1 * cell[1]) + S2 * cell[2])`` has
    ``(v0 * v0 + v1 * v1) + v2 * v2 < r * r``; j == i with S == 0 only when ``loop``.
    Structures (atoms ``ptr[b]:ptr[b+1]``) are never connected to each other.

    Shapes:
        pos [N, 3], ptr [B+1] long, cell [B, 3, 3], pbc [B, 3] bool
        -> edge_index [2, E] long (row 0 neighbour j, row 1 centre i), shifts [E, 3] long,
        sorted by (centre, neighbour, shift)
    """
    device, dtype = pos.device, pos.dtype
    cutoff = torch.tensor(r, dtype=dtype, device=device)
    cutoff2 = cutoff * cutoff
    max_abs_pos = float(pos.abs().max()) if pos.numel() else 0.0
    bounds = ptr.tolist()
    centres, neighbours, all_shifts = [], [], []
    for b in range(len(bounds) - 1):
        start, stop = bounds[b], bounds[b + 1]
        if stop == start:
            continue
        p = pos[start:stop]
        periodic = pbc[b].nonzero().flatten()
        images, wrap = _periodic_images(p, cell[b], periodic, r, max_abs_pos)
        n, num_images = p.shape[0], images.shape[0]
        # Chunks of centres bound the [m, n, I, 3] intermediates to a few million entries.
        chunk = max(1, 1_000_000 // (n * num_images))
        for first in range(0, n, chunk):
            i = torch.arange(first, min(first + chunk, n), device=device)
            diff = p[None, :, None, :] - p[i][:, None, None, :]  # [m, n, 1, 3]
            shift = images[None, None] - wrap[None, :, None] + wrap[i][:, None, None]  # [m, n, I, 3]
            if periodic.numel():
                s = shift.to(dtype)
                c = cell[b]
                v = diff + ((s[..., 0:1] * c[0] + s[..., 1:2] * c[1]) + s[..., 2:3] * c[2])
            else:
                v = diff
            d2 = (v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]) + v[..., 2] * v[..., 2]
            keep = d2 < cutoff2
            if not loop:
                same = i[:, None, None] == torch.arange(n, device=device)[None, :, None]
                keep &= ~(same & (shift == 0).all(-1))
            ci, nj, k = keep.nonzero(as_tuple=True)  # row-major: sorted by (i, j, S)
            centres.append(ci + first + start)
            neighbours.append(nj + start)
            all_shifts.append(shift[ci, nj, k])
    if not centres:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return torch.stack([empty, empty]), torch.zeros(0, 3, dtype=torch.long, device=device)
    edge_index = torch.stack([torch.cat(neighbours), torch.cat(centres)])
    return edge_index, torch.cat(all_shifts)


def _periodic_images(p, cell, periodic, r, max_abs_pos):
    """Image shifts s' [I, 3] (lexicographic) relative to the wrapped positions and the
    integer wraps w [n, 3] of the atoms; S = s' - w_j + w_i covers every edge."""
    n, device = p.shape[0], p.device
    wrap = torch.zeros(n, 3, dtype=torch.long, device=device)
    if periodic.numel() == 0:
        return torch.zeros(1, 3, dtype=torch.long, device=device), wrap
    rows = cell.double()[periodic]  # [P, 3]
    dual = torch.linalg.solve(rows @ rows.T, rows)  # [P, 3], reciprocal vectors within the span
    recip_norm = dual.norm(dim=1)
    images_per_axis = torch.ceil(r * recip_norm) + 2.0
    search = radius_graph_search_radius(r, p.dtype, max_abs_pos,
                                        float((rows.norm(dim=1) * images_per_axis).sum()))
    frac = p.double() @ dual.T  # [n, P]
    wrap[:, periodic] = torch.floor(frac).long()
    # |s'_k| <= |f_j + S - f_i|_k + |f'_j - f'_i|_k <= search * |b_k| + 1
    reach = (torch.ceil(search * recip_norm) + 1).long().tolist()
    ranges = [[0]] * 3
    for axis, m in zip(periodic.tolist(), reach):
        ranges[axis] = list(range(-m, m + 1))
    images = torch.tensor(list(itertools.product(*ranges)), dtype=torch.long, device=device)
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
