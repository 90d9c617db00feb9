"""ECSE frames and weights, batched over atoms and structures.

Pozdnyakov & Ceriotti, "Smooth, exact rotational symmetrization for deep learning on point
clouds", NeurIPS 2023 (arXiv:2305.19302). For every atom i, each ordered pair of its edges
(j, j') with both lengths below the adaptive inner cutoff :math:`R_{in,i}` and
:math:`s = |\\hat r_{ij} \\times \\hat r_{ij'}|^2 > \\omega - \\Delta\\omega` defines a proper
rotation (columns :math:`e_1, e_2, e_3`)

.. math::
    e_1 = \\hat r_{ij}, \\quad e_2 = \\frac{\\hat r_{ij} \\times \\hat r_{ij'}}
    {|\\hat r_{ij} \\times \\hat r_{ij'}|}, \\quad e_3 = e_1 \\times e_2

with weight

.. math::
    w = f(r_{ij}; R_{in,i}, \\Delta_R)\\, f(r_{ij'}; R_{in,i}, \\Delta_R)\\,
        q(s; \\omega - \\Delta\\omega, \\Delta\\omega)\\, \\frac{s - (\\omega - \\Delta\\omega)}{\\Delta\\omega}.

The inner cutoff is a weight-aware smooth minimum over the R_out candidate (u = 1) and the
unordered pairs of the atom,

.. math::
    R_{in,i} = \\frac{\\sum_p v_p u_p e^{-\\beta v_p}}{\\sum_p u_p e^{-\\beta v_p}} + \\Delta_R,
    \\quad v_p = \\mathrm{smax}_\\beta(r_{ij}, r_{ij'}) + W_0(e^{-1})/\\beta,
    \\quad u_p = f(r_{ij}; R_{out}, \\Delta_R) f(r_{ij'}; R_{out}, \\Delta_R) q(s; \\omega, \\Delta\\omega).

Frames are pooled (per structure or per atom) and pruned smoothly towards the largest
weights; the auxiliary weight :math:`w_{aux} = f(M; 0.5, 0.5)` (M: smooth maximum of the
pool's weights; 1 for a pool without frames) blends in an intrinsically invariant model.
The integer pair lists come from :func:`torch_pet.ops.ecse_pairs.ecse_pairs`; everything
else is differentiable torch code, vectorised over the whole batch.

Shapes: N atoms, E edges, F frames, P pools.
"""
import math
from typing import NamedTuple, Optional

import torch

from torch_pet.ecse.inner_cutoff import inner_cutoff
from torch_pet.ecse.options import FrameOptions
from torch_pet.ecse.switches import collinearity_switch, radial_switch
from torch_pet.nn.rows import sum_rows, take_rows
from torch_pet.ops.ecse_pairs import ecse_pairs

__all__ = ["ECSEFrames", "ecse_frames", "inner_cutoff", "prune_weights", "frame_weights",
           "frame_matrices", "with_mirrors", "weighted_candidates", "lengths_and_directions",
           "centre_pointer", "check_frame_inputs"]

class ECSEFrames(NamedTuple):
    """Output of :func:`ecse_frames`; frames are sorted by pool, then centre, then edge pair.

    Shapes:
        frames [F, 3, 3] (columns e1, e2, e3), weights [F], centre [F] (atom of each frame),
        pool [F], aux_weight [P], inner_cutoff [N], num_candidates [P] (frames with nonzero
        weight before pruning; mirrors included with ``o3``), edge_pairs [F, 2] (edge ids
        (j, j') that define each frame)
    """

    frames: torch.Tensor
    weights: torch.Tensor
    centre: torch.Tensor
    pool: torch.Tensor
    aux_weight: torch.Tensor
    inner_cutoff: torch.Tensor
    num_candidates: torch.Tensor
    edge_pairs: torch.Tensor


def ecse_frames(
    edge_vectors: torch.Tensor,
    centre: torch.Tensor,
    num_atoms: int,
    pool_index: torch.Tensor,
    num_pools: int,
    *,
    outer_cutoff: float,
    o3: bool = False,
    options: Optional[FrameOptions] = None,
    **overrides,
) -> ECSEFrames:
    """Weighted ECSE frames of every atom, pooled and pruned; differentiable in edge_vectors.

    Args:
        edge_vectors: r_ij of the neighbour list built at ``outer_cutoff`` (all shorter; edges
            longer than ``outer_cutoff`` beyond a relative rounding tolerance of 1e-4 raise).
        centre: centre atom i of each edge, sorted ascending (PyG ``edge_index[1]``).
        num_atoms: N.
        pool_index: pool of each atom: the batch vector (structure mode) or ``arange(N)``
            (atom mode).
        num_pools: P.
        outer_cutoff: R_out.
        o3: add for each frame its mirror F·diag(1, -1, 1) with the same weight.
        options: :class:`~torch_pet.ecse.options.FrameOptions` (beta, delta_r, omega,
            delta_omega, weight_eps, beta_w, prune_steps, smooth_outer_cutoff: their
            meaning and defaults are documented there, once); ``**overrides`` replace
            single fields (``prune_steps=0``).

    Shapes:
        edge_vectors [E, 3], centre [E], pool_index [N] -> :class:`ECSEFrames`
    """
    opts = FrameOptions.coerce(options, **overrides)
    beta, delta_r, omega, delta_omega = opts.beta, opts.delta_r, opts.omega, opts.delta_omega
    weight_eps, beta_w = opts.weight_eps, opts.beta_w
    check_frame_inputs(edge_vectors, centre, num_atoms, pool_index, num_pools, outer_cutoff)
    centre_ptr = centre_pointer(centre, num_atoms)
    length, unit = lengths_and_directions(edge_vectors)
    r_in, pool, pairs, weights, cross, sine2 = weighted_candidates(
        edge_vectors, length, unit, centre, centre_ptr, pool_index, outer_cutoff=outer_cutoff,
        beta=beta, delta_r=delta_r, omega=omega, delta_omega=delta_omega,
        weight_eps=weight_eps, smooth_outer_cutoff=opts.smooth_outer_cutoff)
    num_candidates = torch.bincount(pool, minlength=num_pools)

    kept, weights, aux_weight = prune_weights(weights, pool, num_pools, weight_eps=weight_eps,
                                              beta_w=beta_w, steps=opts.prune_steps)
    pairs, pool, cross, sine2 = pairs[kept], pool[kept], cross[kept], sine2[kept]
    frames = frame_matrices(unit, pairs, cross, sine2)
    atom = centre[pairs[:, 0]]
    if o3:
        frames, weights, atom, pool, pairs = with_mirrors(frames, weights, atom, pool, pairs)
        num_candidates = 2 * num_candidates
    return ECSEFrames(frames, weights, atom, pool, aux_weight, r_in, num_candidates, pairs)


def weighted_candidates(edge_vectors, length, unit, centre, centre_ptr, pool_index, *,
                         outer_cutoff, beta, delta_r, omega, delta_omega, weight_eps,
                         smooth_outer_cutoff):
    """R_in of every atom and the candidate frames: ordered edge pairs inside R_in with
    s > omega - delta_omega (integer kernel) and weight > weight_eps, sorted by pool
    (stable: then by centre). Frames with zero weight do not exist.

    Returns r_in [N] and, per candidate, pool [F], pairs [F, 2], weights, cross, sine2.
    """
    r_in = inner_cutoff(edge_vectors, length, unit, centre, centre_ptr,
                        outer_cutoff=outer_cutoff, beta=beta, delta_r=delta_r, omega=omega,
                        delta_omega=delta_omega)
    pairs = ecse_pairs(edge_vectors, centre_ptr, r_in.detach(), omega - delta_omega, ordered=True)
    weights, cross, sine2 = frame_weights(length, unit, pairs, r_in[centre[pairs[:, 0]]],
                                          outer_cutoff=outer_cutoff, delta_r=delta_r, omega=omega,
                                          delta_omega=delta_omega,
                                          smooth_outer_cutoff=smooth_outer_cutoff)
    keep = weights > weight_eps
    pairs, weights, cross, sine2 = pairs[keep], weights[keep], cross[keep], sine2[keep]
    pool = pool_index[centre[pairs[:, 0]]]
    if pool.numel() > 1 and bool((pool[1:] < pool[:-1]).any()):
        order = torch.argsort(pool, stable=True)
        pool, pairs, weights, cross, sine2 = (t[order] for t in (pool, pairs, weights, cross, sine2))
    return r_in, pool, pairs, weights, cross, sine2


def frame_weights(length: torch.Tensor, unit: torch.Tensor, pairs: torch.Tensor,
                  cutoff: torch.Tensor, *, outer_cutoff: float, delta_r: float, omega: float,
                  delta_omega: float, smooth_outer_cutoff: bool):
    """Weights of the frames defined by edge pairs (before pruning), with the cross
    products and s = |r̂_a x r̂_b|^2 the frames are built from.

    Shapes:
        length [E], unit [E, 3], pairs [F, 2], cutoff [F] (R_in of each frame's atom)
        -> weights [F], cross [F, 3], sine2 [F]
    """
    a, b = pairs[:, 0], pairs[:, 1]
    s_onset = omega - delta_omega
    cross = torch.cross(unit.index_select(0, a), unit.index_select(0, b), dim=-1)  # [F, 3]
    sine2 = (cross * cross).sum(-1)
    length_a, length_b = length.index_select(0, a), length.index_select(0, b)
    weights = (radial_switch(length_a, cutoff, delta_r) * radial_switch(length_b, cutoff, delta_r)
               * collinearity_switch(sine2, s_onset, delta_omega) * (sine2 - s_onset) / delta_omega)
    if smooth_outer_cutoff:
        weights = weights * radial_switch(length_a, outer_cutoff, delta_r) \
            * radial_switch(length_b, outer_cutoff, delta_r)
    return weights, cross, sine2


def frame_matrices(unit: torch.Tensor, pairs: torch.Tensor, cross: torch.Tensor,
                   sine2: torch.Tensor) -> torch.Tensor:
    """Proper rotations with columns e1 = r̂_a, e2 = r̂_a x r̂_b / |.|, e3 = e1 x e2.

    Shapes:
        unit [E, 3], pairs [F, 2], cross [F, 3], sine2 [F] -> [F, 3, 3]
    """
    e1 = unit.index_select(0, pairs[:, 0])
    e2 = cross / sine2.sqrt().unsqueeze(-1)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def with_mirrors(frames: torch.Tensor, weights: torch.Tensor, *per_frame: torch.Tensor):
    """Each frame followed by its mirror F·diag(1, -1, 1), with the same weight (O(3)).

    Shapes:
        frames [F, 3, 3], weights [F], per_frame [F, ...] -> [2F, 3, 3], [2F], [2F, ...]
    """
    mirror = frames * frames.new_tensor([1.0, -1.0, 1.0])
    frames = torch.stack([frames, mirror], dim=1).reshape(-1, 3, 3)
    return (frames, *(t.repeat_interleave(2, dim=0) for t in (weights, *per_frame)))


def prune_weights(
    weights: torch.Tensor,
    pool: torch.Tensor,
    num_pools: int,
    *,
    weight_eps: float = 1e-10,
    beta_w: float = 1.0,
    steps: int = 4,
    drop: bool = True,
):
    """Smooth pruning of the frame weights of each pool, and the auxiliary weight.

    M is the smooth maximum of a pool's weights; ``w_aux = f(M; 0.5, 0.5)`` (1 without
    frames), ``p_on = f(M; 0.5, 0.25)``; then ``steps`` times: recompute M,
    ``w <- w (q(w; 0.9 M, 0.1 M) (1 - p_on) + p_on)`` and drop ``w <= weight_eps``.
    Input weights must all exceed ``weight_eps``. ``drop=False`` keeps every frame (no
    data-dependent shapes; the frames eager pruning drops then keep weights <= weight_eps,
    which change M of their pool by at most about weight_eps^2).

    Returns:
        kept (indices of the surviving frames), their weights, aux_weight.

    Shapes:
        weights [F], pool [F] -> kept [F'], weights [F'], aux_weight [P]
    """
    kept = torch.arange(weights.numel(), device=weights.device)
    smooth_max = _pool_smooth_max(weights, pool, num_pools, beta_w)
    aux_weight = radial_switch(smooth_max, 0.5, 0.5)
    pruning_off = radial_switch(smooth_max, 0.5, 0.25)
    for _ in range(steps):
        smooth_max = take_rows(_pool_smooth_max(weights, pool, num_pools, beta_w), pool)
        factor = collinearity_switch(weights, 0.9 * smooth_max, 0.1 * smooth_max)
        off = take_rows(pruning_off, pool)
        weights = weights * (factor * (1 - off) + off)
        if drop:
            keep = weights > weight_eps
            kept, weights, pool = kept[keep], weights[keep], pool[keep]
    return kept, weights, aux_weight


def _pool_smooth_max(weights: torch.Tensor, pool: torch.Tensor, num_pools: int,
                     beta_w: float) -> torch.Tensor:
    """M = sum w^2 e^{beta_w w} / sum w e^{beta_w w} per pool (max-subtracted); 0 if empty."""
    with torch.no_grad():
        top = weights.new_zeros(num_pools).scatter_reduce(0, pool, weights, "amax",
                                                          include_self=False)
    scaled = weights * torch.exp(beta_w * (weights - take_rows(top, pool)))
    numerator = sum_rows(weights * scaled, pool, num_pools)
    denominator = sum_rows(scaled, pool, num_pools)
    occupied = denominator > 0
    return torch.where(occupied, numerator / torch.where(occupied, denominator, 1.0), 0.0)


def lengths_and_directions(edge_vectors: torch.Tensor):
    """|r| and r̂ with safe gradients at r = 0 (length 0, direction 0 there)."""
    length2 = (edge_vectors * edge_vectors).sum(-1)
    nonzero = length2 > 0
    length = torch.where(nonzero, torch.where(nonzero, length2, 1.0).sqrt(), 0.0)
    unit = edge_vectors / torch.where(nonzero, length, 1.0).unsqueeze(-1)
    return length, unit


def centre_pointer(centre: torch.Tensor, num_atoms: int) -> torch.Tensor:
    counts = torch.bincount(centre, minlength=num_atoms)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def check_frame_inputs(edge_vectors, centre, num_atoms, pool_index, num_pools, outer_cutoff) -> None:
    if not isinstance(edge_vectors, torch.Tensor) or edge_vectors.dim() != 2 or edge_vectors.shape[1] != 3:
        raise ValueError("ecse_frames: edge_vectors must be a tensor of shape [E, 3], got "
                         f"{getattr(edge_vectors, 'shape', type(edge_vectors).__name__)}")
    if edge_vectors.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"ecse_frames: edge_vectors must be float32 or float64, got {edge_vectors.dtype}")
    num_edges = edge_vectors.shape[0]
    if not isinstance(centre, torch.Tensor) or centre.dtype != torch.long or centre.shape != (num_edges,):
        raise ValueError(f"ecse_frames: centre must be an int64 tensor of shape [E] = [{num_edges}], "
                         f"got {getattr(centre, 'shape', None)} {getattr(centre, 'dtype', None)}")
    if not isinstance(pool_index, torch.Tensor) or pool_index.dtype != torch.long \
            or pool_index.shape != (num_atoms,):
        raise ValueError(f"ecse_frames: pool_index must be an int64 tensor of shape [N] = [{num_atoms}] "
                         "(the batch vector in structure mode, arange(N) in atom mode), got "
                         f"{getattr(pool_index, 'shape', None)} {getattr(pool_index, 'dtype', None)}")
    if not (edge_vectors.device == centre.device == pool_index.device):
        raise ValueError("ecse_frames: edge_vectors, centre and pool_index must be on one device")
    if not bool(torch.isfinite(edge_vectors).all()):
        raise ValueError("ecse_frames: edge_vectors contain NaN or Inf; check positions and cell")
    if num_edges > 0:
        if int(centre.min()) < 0 or int(centre.max()) >= num_atoms:
            raise ValueError(f"ecse_frames: centre indices must lie in [0, num_atoms = {num_atoms})")
        if bool((centre[1:] < centre[:-1]).any()):
            raise ValueError("ecse_frames: centre must be sorted ascending (edges grouped by centre, "
                             "as radius_graph returns them); sort the edges by centre first")
    if num_atoms > 0 and (int(pool_index.min()) < 0 or int(pool_index.max()) >= num_pools):
        raise ValueError(f"ecse_frames: pool_index values must lie in [0, num_pools = {num_pools})")
    outer_cutoff = float(outer_cutoff)
    if not (math.isfinite(outer_cutoff) and outer_cutoff > 0):
        raise ValueError(f"ecse_frames: outer_cutoff must be positive and finite, got {outer_cutoff}")
    if num_edges > 0:
        # The graph's own edge test may round differently from this norm (float32, large
        # coordinates), so only edges clearly beyond R_out are errors; edges within the
        # tolerance are treated like edges just inside R_out.
        longest = float(edge_vectors.detach().norm(dim=-1).max())
        if longest >= outer_cutoff * (1 + _CUTOFF_TOLERANCE):
            raise ValueError(f"ecse_frames: an edge has length {longest:.6g} > outer_cutoff = "
                             f"{outer_cutoff:.6g}; build the neighbour list with radius outer_cutoff "
                             "(R_out) so that every edge is shorter")


_CUTOFF_TOLERANCE = 1e-4
