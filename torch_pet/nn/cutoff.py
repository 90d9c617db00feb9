"""Smooth cutoff functions f_c(r) of PET.

PET multiplies every attention weight towards a neighbour, and every bond-head
contribution, by :math:`f_c(r_{ij})`, so a neighbour crossing the cutoff sphere fades out
continuously (Pozdnyakov & Ceriotti, arXiv:2305.19302). With :math:`x = (r - R_c +
\\Delta)/\\Delta`:

.. math::
    f_c^{\\mathrm{cos}}(r) = \\begin{cases} 1 & x \\le 0 \\\\
        \\tfrac12 + \\tfrac12\\cos(\\pi x) & 0 < x < 1 \\\\ 0 & x \\ge 1 \\end{cases}
    \\qquad
    f_c^{\\mathrm{bump}}(r) = \\tfrac12\\big(1 + \\tanh(\\cot(\\pi x))\\big)\\ (0 < x < 1)

The cosine cutoff (the paper's) has a continuous first derivative; the "bump" variant of
later PET versions is infinitely differentiable. Both are finite, with finite first and
second derivatives, everywhere (no NaN in double backward).
"""
import math

import torch

CUTOFF_FUNCTIONS = ("cosine", "bump")


def cosine_cutoff(r: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """PET's cosine cutoff: 1 below ``cutoff - width``, 0 from ``cutoff`` on.

    Shapes:
        r [*] -> [*]
    """
    x = ((r - (cutoff - width)) / width).clamp(0.0, 1.0)
    return 0.5 + 0.5 * torch.cos(math.pi * x)


def bump_cutoff(r: torch.Tensor, cutoff: float, width: float) -> torch.Tensor:
    """C-infinity "bump" cutoff 1/2 (1 + tanh(cot(pi x))) on the switching shell.

    Shapes:
        r [*] -> [*]
    """
    x = (r - (cutoff - width)) / width
    inside = (x > 0) & (x < 1)
    # Keep the argument away from the poles of cot so the unused branch of `where` has
    # finite gradients (a NaN there would leak into the gradient through `where`).
    safe = torch.where(inside, x, torch.full_like(x, 0.5))
    value = 0.5 * (1.0 + torch.tanh(torch.cos(math.pi * safe) / torch.sin(math.pi * safe)))
    return torch.where(inside, value, (x <= 0).to(r.dtype))


class Cutoff(torch.nn.Module):
    """f_c(r) as a module (no parameters).

    Args:
        cutoff: R_c; f_c = 0 for r >= R_c.
        width: Δ, the width of the switching shell [R_c - Δ, R_c].
        function: ``"cosine"`` (the paper's) or ``"bump"``.

    Shapes:
        r [*] -> [*]
    """

    def __init__(self, cutoff: float, width: float, function: str = "cosine"):
        super().__init__()
        if not (math.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive finite number, got {cutoff}")
        if not (math.isfinite(width) and 0 < width <= cutoff):
            raise ValueError(f"cutoff_width must be in (0, cutoff={cutoff}], got {width}")
        if function not in CUTOFF_FUNCTIONS:
            raise ValueError(f"cutoff function must be one of {CUTOFF_FUNCTIONS}, got {function!r}")
        self.cutoff = float(cutoff)
        self.width = float(width)
        self.function = function

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        if self.function == "cosine":
            return cosine_cutoff(r, self.cutoff, self.width)
        return bump_cutoff(r, self.cutoff, self.width)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, width={self.width}, function={self.function!r}"
