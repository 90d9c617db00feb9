"""One PET message-passing block on edge tokens (Pozdnyakov & Ceriotti, arXiv:2305.19302)."""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing

from torch_pet.nn.attention import ATTENTION_MODES, CutoffMultiheadAttention, attention_bias, \
    resolve_attention
from torch_pet.nn.blocks import final_norm, transformer_layer
from torch_pet.nn.edge_layout import EdgeLayout, build_edge_layout, from_sequence, to_padded, \
    to_sequence


class PETTransformerLayer(torch.nn.Module):
    """Post-LayerNorm transformer layer with cutoff-weighted attention.

    .. math::
        x \\leftarrow \\mathrm{LN}(x + \\mathrm{Attn}(x)), \\qquad
        x \\leftarrow \\mathrm{LN}(x + W_2\\,\\mathrm{SiLU}(W_1 x))

    Shapes:
        x [N, L, C], key_weight [N, L] -> [N, L, C]
    """

    def __init__(self, channels: int, num_heads: int, ff_channels: int):
        super().__init__()
        self.attention = CutoffMultiheadAttention(channels, num_heads)
        self.norm_attention = torch.nn.LayerNorm(channels)
        self.feed_forward = torch.nn.Sequential(
            torch.nn.Linear(channels, ff_channels), torch.nn.SiLU(),
            torch.nn.Linear(ff_channels, channels))
        self.norm_feed_forward = torch.nn.LayerNorm(channels)

    def reset_parameters(self):
        self.attention.reset_parameters()
        self.norm_attention.reset_parameters()
        self.feed_forward[0].reset_parameters()
        self.feed_forward[2].reset_parameters()
        self.norm_feed_forward.reset_parameters()

    def forward(self, x: Tensor, key_weight: Tensor, bias: Optional[Tensor] = None,
                mode: str = "explicit") -> Tensor:
        x = self.norm_attention(x + self.attention(x, key_weight, bias, mode))
        return self.norm_feed_forward(x + self.feed_forward(x))


def sequence_weights(cutoff_weight: Tensor, layout: EdgeLayout) -> Tensor:
    """Attention multipliers of the padded sequences [c_i; t_ij...]: 1, f_c(r_ij), 0 (padding).

    Shapes:
        cutoff_weight [E] -> [N, K+1]
    """
    ones = cutoff_weight.new_ones(layout.num_nodes, 1)
    return torch.cat([ones, to_padded(cutoff_weight, layout)], dim=1)


class PETConv(MessagePassing):
    r"""One message-passing block of the Point Edge Transformer (PET) from
    `"Smooth, exact rotational symmetrization for deep learning on point clouds"
    <https://arxiv.org/abs/2305.19302>`_ (Pozdnyakov & Ceriotti, NeurIPS 2023).

    Every directed edge :math:`(i \leftarrow j)` carries an input message :math:`m_{ij}`.
    The block builds the edge tokens (in :meth:`edge_update`) and the central token

    .. math::
        t_{ij} = \mathrm{MLP}\big([\,W_g (x_{ij}, y_{ij}, z_{ij}, |r_{ij}|) \,\|\,
        m_{ij}\,]\big), \qquad c_i = E_c(s_i),

    with :math:`\mathrm{MLP} = \mathrm{Linear}(2C \to C) \to \mathrm{SiLU} \to
    \mathrm{Linear}(C \to C)`, and runs a post-LayerNorm transformer over each centre's
    sequence :math:`[c_i; t_{ij_1}; \dots; t_{ij_n}]`, whose attention weights towards
    neighbour :math:`j` are multiplied by :math:`f_c(r_{ij})` and renormalised. It returns
    the new central tokens and the output edge tokens :math:`x_{ij}` (the message
    :math:`i \to j` of the next block).

    Args:
        channels: C, the token width d.
        num_species: size of the central-token species embedding.
        num_heads: H, attention heads.
        num_layers: transformer layers.
        ff_channels: hidden width of the feed-forward networks.
        geometry_channels: width of the geometric edge features (4 for
            :math:`(x, y, z, |r|)`, 1 for :math:`|r|` only).
        attention: ``"auto"``, ``"fused"`` or ``"explicit"`` (see
            :mod:`torch_pet.nn.attention`).
        block: ``"paper"`` (post-LayerNorm, SiLU) or ``"modern"`` (pre-RMSNorm, SwiGLU)
            transformer layers (:mod:`torch_pet.nn.blocks`).

    Shapes:
        - **input:** species index :math:`[N]` (long, 0..num_species-1),
          edge_index :math:`[2, E]` (sorted by centre ``edge_index[1]``),
          edge_features :math:`[E, G]`, message :math:`[E, C]`, cutoff_weight :math:`[E]`,
          optional layout (:class:`~torch_pet.nn.edge_layout.EdgeLayout`) and
          key_weight :math:`[N, K+1]` to reuse across blocks
        - **output:** central tokens :math:`[N, C]`, edge tokens :math:`[E, C]`
    """

    def __init__(self, channels: int, num_species: int, num_heads: int = 4,
                 num_layers: int = 3, ff_channels: int = 512, geometry_channels: int = 4,
                 attention: str = "auto", block: str = "paper"):
        super().__init__(aggr=None)
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        self.channels = channels
        self.num_species = num_species
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.ff_channels = ff_channels
        self.geometry_channels = geometry_channels
        self.attention = attention
        self.block = block
        self.central_embedding = torch.nn.Embedding(num_species, channels)
        self.geometry_embedding = torch.nn.Linear(geometry_channels, channels)
        self.token_mlp = torch.nn.Sequential(
            torch.nn.Linear(2 * channels, channels), torch.nn.SiLU(),
            torch.nn.Linear(channels, channels))
        self.layers = torch.nn.ModuleList(
            [transformer_layer(block, channels, num_heads, ff_channels)
             for _ in range(num_layers)])
        self.final_norm = final_norm(block, channels)  # Identity for the paper's block
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.central_embedding.reset_parameters()
        self.geometry_embedding.reset_parameters()
        self.token_mlp[0].reset_parameters()
        self.token_mlp[2].reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        if hasattr(self.final_norm, "reset_parameters"):
            self.final_norm.reset_parameters()

    def forward(self, species: Tensor, edge_index: Tensor, edge_features: Tensor,
                message: Tensor, cutoff_weight: Tensor, layout: Optional[EdgeLayout] = None,
                key_weight: Optional[Tensor] = None,
                attention: Optional[str] = None) -> Tuple[Tensor, Tensor]:
        num_nodes = species.shape[0]
        if layout is None:
            layout = build_edge_layout(edge_index[1], num_nodes)
        if key_weight is None:
            key_weight = sequence_weights(cutoff_weight, layout)  # [N, K+1]
        mode = resolve_attention(attention or self.attention, self.training)
        bias = attention_bias(key_weight) if mode == "fused" else None

        tokens = self.edge_updater(edge_index, size=(num_nodes, num_nodes),
                                   edge_features=edge_features, message=message)  # [E, C]
        central = self.central_embedding(species)  # [N, C]
        sequence = to_sequence(central, tokens, layout)  # [N, K+1, C]
        for layer in self.layers:
            sequence = layer(sequence, key_weight, bias, mode)
        return from_sequence(self.final_norm(sequence), layout)

    def edge_update(self, edge_features: Tensor, message: Tensor) -> Tensor:
        geometry = self.geometry_embedding(edge_features)  # [E, C]
        return self.token_mlp(torch.cat([geometry, message], dim=-1))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.channels}, num_species={self.num_species}, "
                f"num_heads={self.num_heads}, num_layers={self.num_layers}, "
                f"ff_channels={self.ff_channels}, attention={self.attention!r}"
                + (f", block={self.block!r})" if self.block != "paper" else ")"))
