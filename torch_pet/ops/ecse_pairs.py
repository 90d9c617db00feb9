"""Pairs of edges that can define ECSE frames (Pozdnyakov & Ceriotti, arXiv:2305.19302).

For each centre c, the op lists the pairs of its edges (a, b), a != b, with

.. math::
    |r_a| < R_c, \\qquad |r_b| < R_c, \\qquad s = |\\hat r_a \\times \\hat r_b|^2 > s_{min}.

ECSE uses it twice: unordered candidate pairs for the adaptive inner cutoff (R = R_out,
s_min = omega) and ordered frame pairs (R = R_in, s_min = omega - delta_omega). The op is
integer structure only; the differentiable geometry is computed from the pairs by
:func:`torch_pet.ecse.frames.ecse_frames`.
"""
import torch

from torch_pet import _extension
from torch_pet.ops.reference import ecse_pairs_reference

__all__ = ["ecse_pairs"]


def ecse_pairs(
    edge_vectors: torch.Tensor,
    centre_ptr: torch.Tensor,
    radius: torch.Tensor,
    s_min: float,
    ordered: bool = True,
) -> torch.Tensor:
    """Edge pairs (a, b) of a common centre, both inside its radius and not collinear.

    Args:
        edge_vectors: edge vectors, grouped by centre (not differentiated through).
        centre_ptr: CSR pointer; the edges of centre c are ``centre_ptr[c]:centre_ptr[c+1]``.
        radius: per-centre radius; an edge pairs only if strictly shorter.
        s_min: pairs need ``|r̂_a x r̂_b|^2 > s_min`` (zero-length edges never pair).
        ordered: both (a, b) and (b, a) if True, else only a < b.

    Returns:
        Edge ids of the pairs, sorted by (centre, a, b). The full list, never truncated.

    Shapes:
        edge_vectors [E, 3], centre_ptr [N+1] long, radius [N] -> pairs [P, 2] long
    """
    _check_inputs(edge_vectors, centre_ptr, radius, s_min)
    edge_vectors = edge_vectors.detach()
    radius = radius.detach()
    if _extension.use_extension(edge_vectors.device):
        return torch.ops.torch_pet.ecse_pairs(edge_vectors, centre_ptr, radius, float(s_min),
                                              bool(ordered))
    return ecse_pairs_reference(edge_vectors, centre_ptr, radius, float(s_min), bool(ordered))


def _check_inputs(edge_vectors, centre_ptr, radius, s_min) -> None:
    for name, value in (("edge_vectors", edge_vectors), ("centre_ptr", centre_ptr),
                        ("radius", radius)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"ecse_pairs: {name} must be a torch.Tensor, got {type(value).__name__}")
    if edge_vectors.dim() != 2 or edge_vectors.shape[1] != 3:
        raise ValueError(f"ecse_pairs: edge_vectors must have shape [E, 3], got "
                         f"{tuple(edge_vectors.shape)}")
    if edge_vectors.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"ecse_pairs: edge_vectors must be float32 or float64, got "
                        f"{edge_vectors.dtype}")
    if centre_ptr.dim() != 1 or centre_ptr.numel() < 1 or centre_ptr.dtype != torch.long:
        raise ValueError("ecse_pairs: centre_ptr must be a 1-D int64 tensor of length N+1, got "
                         f"shape {tuple(centre_ptr.shape)} and dtype {centre_ptr.dtype}")
    num_centres = centre_ptr.numel() - 1
    if radius.shape != (num_centres,):
        raise ValueError(f"ecse_pairs: radius must have shape [N] = [{num_centres}] "
                         f"(one per centre, N = len(centre_ptr) - 1), got {tuple(radius.shape)}")
    if radius.dtype != edge_vectors.dtype:
        raise TypeError(f"ecse_pairs: radius must have the dtype of edge_vectors "
                        f"({edge_vectors.dtype}), got {radius.dtype}")
    if not (edge_vectors.device == centre_ptr.device == radius.device):
        raise ValueError("ecse_pairs: edge_vectors, centre_ptr and radius must be on the same "
                         f"device, got {edge_vectors.device}, {centre_ptr.device}, {radius.device}")
    s_min = float(s_min)
    if s_min != s_min or abs(s_min) == float("inf"):
        raise ValueError(f"ecse_pairs: s_min must be finite, got {s_min}")
    if not bool(torch.isfinite(edge_vectors).all()):
        raise ValueError("ecse_pairs: edge_vectors contain NaN or Inf; check the positions and "
                         "cell that produced them")
    if not bool(torch.isfinite(radius).all()):
        raise ValueError("ecse_pairs: radius contains NaN or Inf")
    num_edges = edge_vectors.shape[0]
    if int(centre_ptr[0]) != 0 or int(centre_ptr[-1]) != num_edges:
        raise ValueError(f"ecse_pairs: centre_ptr must start at 0 and end at E = {num_edges}, "
                         f"got {int(centre_ptr[0])} and {int(centre_ptr[-1])}; build it as "
                         "[0] + cumsum(bincount(centre, minlength=N))")
    if num_centres > 0 and bool((centre_ptr.diff() < 0).any()):
        raise ValueError("ecse_pairs: centre_ptr must be non-decreasing (edges grouped by "
                         "centre); sort the edges by centre first")


if _extension.WITH_EXTENSION:

    @torch.library.register_fake("torch_pet::ecse_pairs")
    def _ecse_pairs_fake(edge_vectors, centre_ptr, radius, s_min, ordered):
        num_pairs = torch.library.get_ctx().new_dynamic_size()
        return centre_ptr.new_empty((num_pairs, 2))
