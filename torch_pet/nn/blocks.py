"""Transformer layers of a PET block: the paper's and the modern one.

PET's message-passing block (:class:`~torch_pet.nn.pet_conv.PETConv`) runs a stack of
transformer layers over each centre's sequence :math:`[c_i; t_{ij_1}; \\dots]`. Two kinds:

* ``"paper"`` (Pozdnyakov & Ceriotti, arXiv:2305.19302):
  :class:`~torch_pet.nn.pet_conv.PETTransformerLayer`, post-LayerNorm, SiLU feed-forward,

  .. math::
      x \\leftarrow \\mathrm{LN}(x + \\mathrm{Attn}(x)), \\qquad
      x \\leftarrow \\mathrm{LN}(x + W_2\\,\\mathrm{SiLU}(W_1 x));

* ``"modern"`` (the block of the maintained re-implementation, metatrain's PET):
  :class:`ModernTransformerLayer`, pre-RMSNorm with residual streams and a SwiGLU
  feed-forward, and one RMSNorm after the last layer of the stack (:func:`final_norm`),

  .. math::
      x \\leftarrow x + \\mathrm{Attn}(\\mathrm{RMS}(x)), \\qquad
      x \\leftarrow x + W_2\\big(\\mathrm{SiLU}(W_1 \\mathrm{RMS}(x)) \\odot W_3
      \\mathrm{RMS}(x)\\big).

Both use the cutoff-weighted attention of :mod:`torch_pet.nn.attention` and are
differentiable twice (force training). Shapes: N sequences of length L = K + 1, width C.
"""
from typing import Optional

import torch
from torch import Tensor

from torch_pet.nn.attention import CutoffMultiheadAttention

__all__ = ["BLOCKS", "SwiGLU", "ModernTransformerLayer", "transformer_layer", "final_norm"]

BLOCKS = ("paper", "modern")


class SwiGLU(torch.nn.Module):
    """Gated feed-forward ``W_2 (SiLU(W_1 x) * W_3 x)``; W_1 and W_3 are one Linear.

    Shapes:
        x [..., C] -> [..., C]
    """

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gate_value = torch.nn.Linear(channels, 2 * hidden_channels)
        self.out = torch.nn.Linear(hidden_channels, channels)

    def reset_parameters(self):
        self.gate_value.reset_parameters()
        self.out.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.gate_value(x).chunk(2, dim=-1)
        return self.out(torch.nn.functional.silu(gate) * value)


class ModernTransformerLayer(torch.nn.Module):
    """Pre-RMSNorm transformer layer with cutoff-weighted attention and a SwiGLU
    feed-forward of hidden width ``ff_channels`` (see the module docstring).

    Shapes:
        x [N, L, C], key_weight [N, L] -> [N, L, C]
    """

    def __init__(self, channels: int, num_heads: int, ff_channels: int):
        super().__init__()
        self.norm_attention = torch.nn.RMSNorm(channels)
        self.attention = CutoffMultiheadAttention(channels, num_heads)
        self.norm_feed_forward = torch.nn.RMSNorm(channels)
        self.feed_forward = SwiGLU(channels, ff_channels)

    def reset_parameters(self):
        self.norm_attention.reset_parameters()
        self.attention.reset_parameters()
        self.norm_feed_forward.reset_parameters()
        self.feed_forward.reset_parameters()

    def forward(self, x: Tensor, key_weight: Tensor, bias: Optional[Tensor] = None,
                mode: str = "explicit") -> Tensor:
        x = x + self.attention(self.norm_attention(x), key_weight, bias, mode)
        return x + self.feed_forward(self.norm_feed_forward(x))


def transformer_layer(block: str, channels: int, num_heads: int,
                      ff_channels: int) -> torch.nn.Module:
    """One transformer layer of the kind ``block`` (``"paper"`` or ``"modern"``)."""
    if block == "paper":
        from torch_pet.nn.pet_conv import PETTransformerLayer

        return PETTransformerLayer(channels, num_heads, ff_channels)
    if block == "modern":
        return ModernTransformerLayer(channels, num_heads, ff_channels)
    raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")


def final_norm(block: str, channels: int) -> torch.nn.Module:
    """What follows the last layer of a stack: nothing for the paper's post-norm layers,
    an RMSNorm for the modern pre-norm ones (their residual stream is not normalised)."""
    if block == "modern":
        return torch.nn.RMSNorm(channels)
    return torch.nn.Identity()
