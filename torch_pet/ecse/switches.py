"""C-infinity switching functions of ECSE (Pozdnyakov & Ceriotti, arXiv:2305.19302).

The stitching function

.. math::
    \\sigma(g) = \\begin{cases} 0 & g \\le -1 \\\\ 1 & g \\ge 1 \\\\
    \\tfrac12\\left[1 + \\tanh\\frac{2g}{1-g^2}\\right] & \\text{otherwise} \\end{cases}

is C-infinity with every derivative zero at both window ends, so that frames and weights
can appear and disappear smoothly. It is evaluated as ``sigmoid(4g / (1 - g^2))`` (the same
function, accurate near 0 where ``1 + tanh`` would cancel) on ``g`` clamped just inside
(-1, 1), so that values are exactly 0 or 1 and gradients exactly 0, never NaN, outside the
window and at its ends.

Radial switch (1 below ``cutoff - width``, 0 above ``cutoff``) and collinearity switch
(0 below ``onset``, 1 above ``onset + width``):

.. math::
    f(r; r_c, \\delta) = 1 - \\sigma\\!\\left(\\frac{2(r - r_c + \\delta/2)}{\\delta}\\right),
    \\qquad q(x; w, \\delta) = \\sigma\\!\\left(\\frac{2(x - w - \\delta/2)}{\\delta}\\right)

Parameters may be tensors broadcasting against the input (e.g. one cutoff per pair).
"""
import torch

__all__ = ["stitching_function", "radial_switch", "collinearity_switch"]


def stitching_function(g: torch.Tensor) -> torch.Tensor:
    """sigma(g): 0 for g <= -1, 1 for g >= 1, C-infinity in between (any shape)."""
    # Clamping to the largest float below 1 keeps 1 - g^2 > 0: outside the window the sigmoid
    # saturates to exactly 0 or 1 and the clamp passes a zero gradient (never NaN).
    limit = 1.0 - torch.finfo(g.dtype).eps
    g = g.clamp(-limit, limit)
    return torch.sigmoid(4 * g / ((1 - g) * (1 + g)))


def radial_switch(r: torch.Tensor, cutoff, width) -> torch.Tensor:
    """f(r; cutoff, width): 1 for r <= cutoff - width, 0 for r >= cutoff."""
    # 1 - sigma(g) = sigma(-g): the second form keeps full relative precision near 0.
    return stitching_function(-2 * (r - cutoff + 0.5 * width) / width)


def collinearity_switch(x: torch.Tensor, onset, width) -> torch.Tensor:
    """q(x; onset, width): 0 for x <= onset, 1 for x >= onset + width."""
    return stitching_function(2 * (x - onset - 0.5 * width) / width)
