"""Pure-PyTorch reference implementations of the torch_pet ops (test oracles and the
fallback when the compiled extension is missing)."""
import torch


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
