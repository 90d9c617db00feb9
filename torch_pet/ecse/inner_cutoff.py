"""The adaptive inner cutoff R_in of ECSE (arXiv:2305.19302, App. F).

For every atom i a weight-aware smooth minimum over the R_out candidate (u = 1) and the
unordered pairs of its edges,

.. math::
    R_{in,i} = \\frac{\\sum_p v_p u_p e^{-\\beta v_p}}{\\sum_p u_p e^{-\\beta v_p}} + \\Delta_R,
    \\quad v_p = \\mathrm{smax}_\\beta(r_{ij}, r_{ij'}) + W_0(e^{-1})/\\beta,
    \\quad u_p = f(r_{ij}; R_{out}, \\Delta_R) f(r_{ij'}; R_{out}, \\Delta_R) q(s; \\omega, \\Delta\\omega).

:func:`inner_cutoff` works in blocks of atoms (eager, bounded memory);
:func:`smooth_inner_cutoff` is the formula on given pairs (also traced by the export path).

Shapes: N atoms, E edges, P pairs.
"""
import torch

from torch_pet.ecse.switches import collinearity_switch, radial_switch
from torch_pet.ops.ecse_pairs import ecse_pairs

__all__ = ["LAMBERT_W0_INV_E", "inner_cutoff", "smooth_inner_cutoff"]

# W_0(1/e), the principal branch of the Lambert W function at 1/e; T = W_0(1/e) / beta.
LAMBERT_W0_INV_E = 0.2784645427610738

def inner_cutoff(
    edge_vectors: torch.Tensor,
    length: torch.Tensor,
    unit: torch.Tensor,
    centre: torch.Tensor,
    centre_ptr: torch.Tensor,
    *,
    outer_cutoff: float,
    beta: float,
    delta_r: float,
    omega: float,
    delta_omega: float,
) -> torch.Tensor:
    """Adaptive inner cutoff R_in of every atom (weight-aware smooth minimum).

    A box of 10^4 atoms has ~10^7 candidate pairs, so atoms are processed in blocks of about
    ``_PAIRS_PER_BLOCK`` pairs: the per-pair temporaries then stay small and are reused.

    Shapes:
        edge_vectors, unit [E, 3], length [E], centre [E], centre_ptr [N+1] -> R_in [N]
    """
    num_atoms = centre_ptr.numel() - 1
    radial = radial_switch(length, outer_cutoff, delta_r)  # [E], shared by all pairs
    parameters = dict(outer_cutoff=outer_cutoff, beta=beta, omega=omega, delta_omega=delta_omega)
    blocks = _atom_blocks(centre_ptr, _PAIRS_PER_BLOCK)
    r_in = [
        _inner_cutoff_block(edge_vectors, length, unit, radial, centre, centre_ptr, first, last,
                            **parameters)
        for first, last in zip(blocks[:-1], blocks[1:])
    ]
    r_in = torch.cat(r_in) if r_in else edge_vectors.new_zeros(num_atoms)
    return r_in + delta_r


_PAIRS_PER_BLOCK = 1 << 20


def _atom_blocks(centre_ptr: torch.Tensor, pairs_per_block: int) -> list:
    """Atom boundaries [0, ..., N] of blocks with about ``pairs_per_block`` K^2/2 pairs each."""
    num_atoms = centre_ptr.numel() - 1
    if num_atoms == 0:
        return [0]
    counts = centre_ptr.diff().cpu()
    pairs = (counts * counts // 2 + 1).cumsum(0)
    total = int(pairs[-1])
    if total <= pairs_per_block:
        return [0, num_atoms]
    targets = torch.arange(pairs_per_block, total, pairs_per_block)
    inner = (torch.searchsorted(pairs, targets) + 1).tolist()
    return sorted({0, num_atoms, *[i for i in inner if 0 < i < num_atoms]})


def _inner_cutoff_block(edge_vectors, length, unit, radial, centre, centre_ptr, first, last, *,
                        outer_cutoff, beta, omega, delta_omega) -> torch.Tensor:
    """R_in - delta_r of atoms first..last-1 (their edges are a contiguous range)."""
    edge_begin, edge_end = int(centre_ptr[first]), int(centre_ptr[last])
    outer = edge_vectors.new_full((last - first,), outer_cutoff)
    pairs = ecse_pairs(edge_vectors[edge_begin:edge_end],
                       centre_ptr[first:last + 1] - edge_begin, outer, omega, ordered=False)
    pairs = pairs + edge_begin
    atom = centre.index_select(0, pairs[:, 0]) - first  # block-local atom index
    return smooth_inner_cutoff(length, unit, radial, pairs, atom, outer, beta=beta, omega=omega,
                               delta_omega=delta_omega)


def smooth_inner_cutoff(length: torch.Tensor, unit: torch.Tensor, radial: torch.Tensor,
                        pairs: torch.Tensor, atom: torch.Tensor, outer: torch.Tensor, *,
                        beta: float, omega: float, delta_omega: float) -> torch.Tensor:
    """R_in - delta_r from the unordered candidate pairs (s > omega, inside R_out) of atoms.

    Shapes:
        length [E], unit [E, 3], radial [E] (f(r; R_out, delta_r)), pairs [P, 2], atom [P]
        (its atom, in 0..n-1), outer [n] (R_out) -> [n]
    """
    a, b = pairs[:, 0], pairs[:, 1]
    ra, rb = length.index_select(0, a), length.index_select(0, b)
    cosine = (unit.index_select(0, a) * unit.index_select(0, b)).sum(-1)
    sine2 = 1 - cosine * cosine  # s > omega here, so no cancellation worth a cross product
    u = (radial.index_select(0, a) * radial.index_select(0, b)
         * collinearity_switch(sine2, omega, delta_omega))
    # smax(ra, rb) = (ra e^{b ra} + rb e^{b rb}) / (e^{b ra} + e^{b rb}), in a stable form.
    v = rb + (ra - rb) * torch.sigmoid(beta * (ra - rb)) + LAMBERT_W0_INV_E / beta
    # Max-subtracted exponentials: shift_i = max_p (log u_p - beta v_p), the R_out candidate
    # (u = 1, v = R_out) included. The shift cancels in the ratio, so it carries no gradient.
    with torch.no_grad():
        shift = outer.mul(-beta).scatter_reduce(0, atom, torch.log(u) - beta * v, "amax",
                                                include_self=True)
    p_weight = u * torch.exp(-beta * v - shift.index_select(0, atom))
    out_weight = torch.exp(-beta * outer - shift)
    numerator = (outer * out_weight).index_add(0, atom, v * p_weight)
    denominator = out_weight.index_add(0, atom, p_weight)
    return numerator / denominator
