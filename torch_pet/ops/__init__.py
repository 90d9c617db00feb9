"""Graph ops of torch_pet: compiled C++/CUDA kernels with pure-PyTorch references.

* :func:`radius_graph` — neighbour list with periodic boundaries (cell list).
* :func:`edge_vectors` — differentiable edge vectors from ``(edge_index, shifts)``.
* :func:`reverse_edge_index` — partner (i -> j, -S) of every edge (j -> i, S).
* :func:`ecse_pairs` — edge pairs that can define ECSE frames.
"""
from torch_pet.ops.ecse_pairs import ecse_pairs
from torch_pet.ops.radius_graph import edge_vectors, radius_graph
from torch_pet.ops.reverse_edge_index import reverse_edge_index

__all__ = ["radius_graph", "edge_vectors", "reverse_edge_index", "ecse_pairs"]
