"""Multi-head self-attention with per-key cutoff multipliers (PET's smooth attention).

Each key token n of a sequence carries a multiplier :math:`w_n \\in [0, 1]` (PET: 1 for the
central token, :math:`f_c(r_{ij})` for neighbour j, 0 for padding). The softmax weights
are multiplied by the multipliers and renormalised per row, which equals adding
:math:`\\log w_n` to the scores:

.. math::
    \\alpha_{mn} = \\frac{w_n \\exp(q_m \\cdot k_n / \\sqrt{d_h})}
                        {\\sum_l w_l \\exp(q_m \\cdot k_l / \\sqrt{d_h})}
                 = \\mathrm{softmax}_n\\big(q_m \\cdot k_n / \\sqrt{d_h} + \\log w_n\\big).

Two implementations, equal to round-off:

* ``"fused"``: :func:`torch.nn.functional.scaled_dot_product_attention` with the additive
  bias :math:`\\log w` (``-inf`` for w = 0, the log clamped at the dtype's smallest normal
  number so no ``-inf * 0`` NaN reaches a gradient). PyTorch's fused kernels have no double
  backward, and when the multipliers require grad (forces) PyTorch runs its unfused math
  backend anyway; the fused path pays off for energies without gradients.
* ``"explicit"``: ``e = w exp(s - m)`` with m the row maximum over keys of nonzero
  weight (a constant: it cancels), then ``(e / Σ e) v`` (the same weights),
  differentiable any number of times (training on forces needs the double backward). It
  runs no masked fill, softmax or concatenation: fewer, cheaper kernels on the short
  sequences of molecules (one CH4 atom: L = 5), where the op count, not the matmuls,
  sets the cost.

``attention="auto"`` resolves per call with :func:`resolve_attention`: **explicit when
gradients are being recorded** (``torch.is_grad_enabled()``) **and a double backward may
follow** — the module is in training mode, or the call runs inside
:func:`double_backward` (``energy_and_forces(..., create_graph=True)`` enters it) —
**fused otherwise** (inference, evaluation, forces without ``create_graph``).
"""
import contextlib
import math

import torch
import torch.nn.functional as F

ATTENTION_MODES = ("auto", "fused", "explicit")

_double_backward_depth = 0


@contextlib.contextmanager
def double_backward():
    """Within this context ``attention="auto"`` picks the explicit path (double backward)."""
    global _double_backward_depth
    _double_backward_depth += 1
    try:
        yield
    finally:
        _double_backward_depth -= 1


def double_backward_requested() -> bool:
    """Whether the code runs inside :func:`double_backward`."""
    return _double_backward_depth > 0


def resolve_attention(attention: str, training: bool) -> str:
    """``"fused"`` or ``"explicit"`` for the mode ``attention`` (see the module docstring)."""
    if attention != "auto":
        return attention
    if torch.is_grad_enabled() and (training or double_backward_requested()):
        return "explicit"
    return "fused"


def attention_bias(key_weight: torch.Tensor) -> torch.Tensor:
    """The additive score bias log w of the fused path (``-inf`` where w = 0).

    Shapes:
        key_weight [B, L] -> [B, 1, 1, L]
    """
    tiny = torch.finfo(key_weight.dtype).tiny
    bias = torch.log(key_weight.clamp_min(tiny)).masked_fill(key_weight <= 0, float("-inf"))
    return bias[:, None, None, :]


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       key_weight: torch.Tensor) -> torch.Tensor:
    """Softmax attention with the keys re-weighted by ``key_weight`` (double-differentiable).

    ``e = w exp(min(s - m, 0))``, ``out = (e / Σ_n e) v``, with s the scores and m each
    row's largest score over keys of nonzero weight, taken without gradient (a shift that
    cancels in the ratio, exactly, at every order). Keys of weight 0 get e = 0; clamping at
    0 keeps their exponential finite, so no ``inf * 0`` appears. Every row needs a key with
    nonzero weight (PET: the central token, weight 1), so Σ e >= 1. As on the fused path,
    a key of weight exactly 0 passes no gradient to its weight.

    Shapes:
        q, k, v [B, H, L, D], key_weight [B, L] -> [B, H, L, D]
    """
    key_weight = key_weight.where(key_weight > 0, 0.0)  # no gradient at w = 0, as fused
    weight = key_weight[:, None, None, :]  # [B, 1, 1, L]
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)  # [B, H, L, L]
    with torch.no_grad():
        top = scores.masked_fill(weight <= 0, float("-inf")).amax(-1, keepdim=True)
    e = torch.exp((scores - top).clamp_max(0.0)) * weight
    return (e / e.sum(-1, keepdim=True)) @ v


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    bias: torch.Tensor) -> torch.Tensor:
    """``scaled_dot_product_attention`` with the additive bias of :func:`attention_bias`.

    Shapes:
        q, k, v [B, H, L, D], bias [B, 1, 1, L] -> [B, H, L, D]
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))


class CutoffMultiheadAttention(torch.nn.Module):
    """Multi-head self-attention whose keys are re-weighted by cutoff multipliers.

    Args:
        channels: C, the token width (divisible by ``num_heads``).
        num_heads: H.

    Shapes:
        x [B, L, C], key_weight [B, L] (explicit) or bias [B, 1, 1, L] (fused) -> [B, L, C]
    """

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"hidden_channels={channels} must be divisible by "
                             f"num_heads={num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.qkv = torch.nn.Linear(channels, 3 * channels)
        self.out = torch.nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self):
        self.qkv.reset_parameters()
        self.out.reset_parameters()

    def forward(self, x: torch.Tensor, key_weight: torch.Tensor, bias: torch.Tensor = None,
                mode: str = "explicit") -> torch.Tensor:
        b, length, c = x.shape
        h = self.num_heads
        # [B, L, 3C] -> 3 x [B, H, L, C/H]
        q, k, v = self.qkv(x).reshape(b, length, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
        if mode == "fused":
            out = fused_attention(q, k, v, attention_bias(key_weight) if bias is None else bias)
        elif mode == "explicit":
            out = explicit_attention(q, k, v, key_weight)
        else:
            raise ValueError(f"attention mode must be 'fused' or 'explicit', got {mode!r}")
        return self.out(out.transpose(1, 2).reshape(b, length, c))  # [B, L, C]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, num_heads={self.num_heads})"
