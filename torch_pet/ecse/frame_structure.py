"""ECSE frames in two steps, for torch.export: the integer structure, then the weights.

:func:`frame_structure` finds (eagerly, without gradients) which edge pairs
:func:`~torch_pet.ecse.frames.ecse_frames` uses for a geometry; :func:`frames_from_structure`
computes the weighted frames of those pairs with no data-dependent shapes or host reads.
Both are built from the functions of :mod:`torch_pet.ecse.frames`.

Shapes: N atoms, E edges, P inner-cutoff pairs, F candidate frames, C kept frames.
"""
from typing import NamedTuple, Optional

import torch

from torch_pet.ecse.frames import (ECSEFrames, centre_pointer, check_frame_inputs, frame_matrices,
                                   frame_weights, lengths_and_directions, prune_weights,
                                   weighted_candidates, with_mirrors)
from torch_pet.ecse.inner_cutoff import smooth_inner_cutoff
from torch_pet.ecse.options import FrameOptions
from torch_pet.ecse.switches import radial_switch
from torch_pet.nn.rows import sum_rows
from torch_pet.ops.ecse_pairs import ecse_pairs

__all__ = ["FrameStructure", "frame_structure", "frames_from_structure"]


class FrameStructure(NamedTuple):
    """The integer part of a batch's ECSE frames, for :func:`frames_from_structure`, and
    the auxiliary weights (no gradient) for host-side checks.

    Shapes:
        inner_pairs [P, 2] (unordered edge pairs, s > omega, inside R_out: the R_in
        candidates), candidates [F, 2] (ordered frame pairs with weight > weight_eps, sorted
        by pool), kept [C] (the candidates that survive pruning, ascending), aux_weight
        [pools] (None when not computed)
    """

    inner_pairs: torch.Tensor
    candidates: torch.Tensor
    kept: torch.Tensor
    aux_weight: Optional[torch.Tensor] = None


def frame_structure(edge_vectors: torch.Tensor, centre: torch.Tensor, num_atoms: int,
                    pool_index: torch.Tensor, num_pools: int, *, outer_cutoff: float,
                    options: Optional[FrameOptions] = None, **overrides) -> FrameStructure:
    """Which edge pairs :func:`ecse_frames` uses for this geometry (no gradients).

    Same arguments as :func:`ecse_frames` (``o3`` is ignored: mirrors are added later).
    With it, :func:`frames_from_structure` computes the weighted frames with no
    data-dependent shapes or host reads (for torch.export).

    Shapes:
        edge_vectors [E, 3], centre [E], pool_index [N] -> :class:`FrameStructure`
    """
    overrides.pop("o3", None)
    options = FrameOptions.coerce(options, **overrides)
    check_frame_inputs(edge_vectors, centre, num_atoms, pool_index, num_pools, outer_cutoff)
    with torch.no_grad():
        edge_vectors = edge_vectors.detach()
        centre_ptr = centre_pointer(centre, num_atoms)
        length, unit = lengths_and_directions(edge_vectors)
        inner_pairs = ecse_pairs(edge_vectors, centre_ptr,
                                 edge_vectors.new_full((num_atoms,), outer_cutoff),
                                 options.omega, ordered=False)
        _, pool, pairs, weights, _, _ = weighted_candidates(
            edge_vectors, length, unit, centre, centre_ptr, pool_index, outer_cutoff=outer_cutoff,
            **{k: getattr(options, k) for k in ("beta", "delta_r", "omega", "delta_omega",
                                                "weight_eps", "smooth_outer_cutoff")})
        kept, _, aux_weight = prune_weights(weights, pool, num_pools,
                                            weight_eps=options.weight_eps,
                                            beta_w=options.beta_w, steps=options.prune_steps)
    return FrameStructure(inner_pairs, pairs, kept, aux_weight)


def frames_from_structure(edge_vectors: torch.Tensor, centre: torch.Tensor,
                          pool_index: torch.Tensor, num_pools: int, structure: FrameStructure,
                          *, outer_cutoff: float, o3: bool = False,
                          options: Optional[FrameOptions] = None, **overrides) -> ECSEFrames:
    """:func:`ecse_frames` for a given :class:`FrameStructure`: differentiable, with no
    data-dependent shapes, no host reads and no input checks (those ran in
    :func:`frame_structure`). Agrees with :func:`ecse_frames` to round-off (pruning keeps
    the frames it drops at weights <= weight_eps, see :func:`prune_weights`).

    Shapes:
        edge_vectors [E, 3], centre [E], pool_index [N] -> :class:`ECSEFrames` (C frames,
        2C with ``o3``)
    """
    if not (isinstance(options, FrameOptions) and not overrides):  # traced: no coerce
        options = FrameOptions.coerce(options, **overrides)
    delta_r, omega, delta_omega = options.delta_r, options.omega, options.delta_omega
    num_atoms = pool_index.shape[0]
    length, unit = lengths_and_directions(edge_vectors)
    radial = radial_switch(length, outer_cutoff, delta_r)
    inner_pairs, pairs, kept = structure.inner_pairs, structure.candidates, structure.kept
    r_in = smooth_inner_cutoff(length, unit, radial, inner_pairs,
                               centre.index_select(0, inner_pairs[:, 0]),
                               edge_vectors.new_full((num_atoms,), outer_cutoff),
                               beta=options.beta, omega=omega, delta_omega=delta_omega) + delta_r
    atom = centre.index_select(0, pairs[:, 0])
    weights, cross, sine2 = frame_weights(length, unit, pairs, r_in.index_select(0, atom),
                                          outer_cutoff=outer_cutoff, delta_r=delta_r, omega=omega,
                                          delta_omega=delta_omega,
                                          smooth_outer_cutoff=options.smooth_outer_cutoff)
    pool = pool_index.index_select(0, atom)
    num_candidates = sum_rows(torch.ones_like(pool), pool, num_pools)
    _, weights, aux_weight = prune_weights(weights, pool, num_pools,
                                           weight_eps=options.weight_eps,
                                           beta_w=options.beta_w,
                                           steps=options.prune_steps, drop=False)
    weights, pairs, pool, cross, sine2 = (t.index_select(0, kept)
                                          for t in (weights, pairs, pool, cross, sine2))
    frames = frame_matrices(unit, pairs, cross, sine2)
    atom = centre.index_select(0, pairs[:, 0])
    if o3:
        frames, weights, atom, pool, pairs = with_mirrors(frames, weights, atom, pool, pairs)
        num_candidates = 2 * num_candidates
    return ECSEFrames(frames, weights, atom, pool, aux_weight, r_in, num_candidates, pairs)
