"""PET building blocks: edge-token layout, cutoff functions, cutoff attention, PETConv, PET,
and autograd forces/stress."""
from torch_pet.nn.attention import CutoffMultiheadAttention, double_backward, resolve_attention
from torch_pet.nn.cutoff import Cutoff, bump_cutoff, cosine_cutoff
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.nn.edge_layout import EdgeLayout, build_edge_layout, from_sequence, to_flat, \
    to_padded, to_sequence
from torch_pet.nn.pet import PET
from torch_pet.nn.pet_conv import PETConv, PETTransformerLayer

__all__ = [
    "Cutoff", "CutoffMultiheadAttention", "EdgeLayout", "PET", "PETConv", "PETTransformerLayer",
    "build_edge_layout", "bump_cutoff", "cosine_cutoff", "double_backward", "energy_and_forces",
    "from_sequence", "resolve_attention", "to_flat", "to_padded", "to_sequence",
]
