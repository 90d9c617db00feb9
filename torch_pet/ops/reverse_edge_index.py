"""Reverse-edge map of a neighbour list: for each edge (j -> i, S) its partner (i -> j, -S).

Message-passing layers that update edge tokens (PET) read the token of the reversed edge
through this index. For a full radius graph every edge has exactly one partner.
"""
import torch

from torch_pet import _extension
from torch_pet.ops.reference import reverse_edge_index_reference

__all__ = ["reverse_edge_index"]

_MISSING, _UNSORTED = -1, -2


def reverse_edge_index(edge_index: torch.Tensor, shifts=None) -> torch.Tensor:
    """Index of the reversed edge of every edge.

    Args:
        edge_index: row 0 neighbour j, row 1 centre i (PyG convention). Fastest when sorted
            by (centre, neighbour, shift) as :func:`torch_pet.ops.radius_graph` returns
            them; other orders are sorted internally.
        shifts: integer cell shifts of the edges (None: all zero, no periodicity).

    Returns:
        ``rev`` with ``edge_index[:, rev] == edge_index.flip(0)`` and
        ``shifts[rev] == -shifts``. Raises ValueError naming the first edge without a
        partner (not a full neighbour list). Duplicated edges map to their first copy.

    Shapes:
        edge_index [2, E] long, shifts [E, 3] long -> [E] long
    """
    edge_index, shifts = _check_inputs(edge_index, shifts)
    partner = _partners(edge_index, shifts)
    if partner.numel() and bool((partner < 0).any()):
        if bool((partner == _UNSORTED).any()):
            order = _canonical_order(edge_index, shifts)
            sorted_partner = _partners(edge_index[:, order], shifts[order])
            partner = torch.full_like(partner, _MISSING)
            found = sorted_partner >= 0
            partner[order[found]] = order[sorted_partner[found]]
        missing = (partner == _MISSING).nonzero()
        if missing.numel():
            e = int(missing[0])
            j, i = edge_index[:, e].tolist()
            s = shifts[e].tolist()
            raise ValueError(f"reverse_edge_index: edge {e} ({j} -> {i}, shift {s}) has no reverse "
                             f"edge ({i} -> {j}, shift {[-x for x in s]}); {missing.numel()} edges lack "
                             "one. Pass a full neighbour list (both directions, as radius_graph "
                             "returns it)")
    return partner


def _partners(edge_index, shifts):
    if _extension.use_extension(edge_index.device):
        return torch.ops.torch_pet.reverse_edge_index(edge_index, shifts)
    return reverse_edge_index_reference(edge_index, shifts)


def _canonical_order(edge_index, shifts):
    """Permutation sorting the edges by (centre, neighbour, s0, s1, s2)."""
    order = torch.arange(edge_index.shape[1], device=edge_index.device)
    for key in (shifts[:, 2], shifts[:, 1], shifts[:, 0], edge_index[0], edge_index[1]):
        order = order[torch.sort(key[order], stable=True).indices]
    return order


def _check_inputs(edge_index, shifts):
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"reverse_edge_index: edge_index must be a torch.Tensor, got "
                        f"{type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"reverse_edge_index: edge_index must have shape [2, E], got "
                         f"{tuple(edge_index.shape)}")
    if edge_index.dtype != torch.long:
        raise TypeError(f"reverse_edge_index: edge_index must be int64 (torch.long), got {edge_index.dtype}")
    num_edges = edge_index.shape[1]
    if shifts is None:
        shifts = edge_index.new_zeros(num_edges, 3)
    if not isinstance(shifts, torch.Tensor):
        raise TypeError(f"reverse_edge_index: shifts must be a torch.Tensor, got {type(shifts).__name__}")
    if shifts.shape != (num_edges, 3):
        raise ValueError(f"reverse_edge_index: shifts must have shape [E, 3] = [{num_edges}, 3], got "
                         f"{tuple(shifts.shape)}")
    if shifts.dtype != torch.long:
        raise TypeError(f"reverse_edge_index: shifts must be int64 (torch.long), got {shifts.dtype}")
    if shifts.device != edge_index.device:
        raise ValueError(f"reverse_edge_index: shifts is on {shifts.device} but edge_index is on "
                         f"{edge_index.device}")
    return edge_index.contiguous(), shifts.contiguous()


if _extension.WITH_EXTENSION:

    @torch.library.register_fake("torch_pet::reverse_edge_index")
    def _reverse_edge_index_fake(edge_index, shifts):
        return edge_index.new_empty((edge_index.shape[1],))
