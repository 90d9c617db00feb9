"""Edge tokens in two layouts: flat per edge [E, C] and padded per centre [N, K, C].

PET keeps one token per directed edge. Message passing and the readout work on the flat
layout (row e = edge ``edge_index[:, e]``, PyG order); the transformer of a centre i needs
the tokens of all its neighbours as one sequence, so they are scattered into a padded
tensor whose row i holds centre i's edges in slots 0..deg(i)-1 and padding after.

Edges must be sorted by centre (``edge_index[1]``), as ``radius_graph`` returns them; edge
e then sits in slot ``slot[e] = e - ptr[centre[e]]`` of row ``centre[e]``, and its flat
position in the padded tensor is ``index[e] = centre[e] * K + slot[e]``. All index
formulas live in :func:`layout_from_slots` (which :func:`build_edge_layout` ends with; the
export path calls it on slots built eagerly); the conversions are one
``index_copy`` / ``index_select`` each (differentiable any number of times).

Round-trip invariants (tested in ``tests/nn/test_edge_layout.py``):

1. ``to_flat(to_padded(x)) == x`` for every x [E, *] (no edge lost, none duplicated).
2. ``to_padded(to_flat(y)) == y * mask`` for every y [N, K, *]: padding slots are zero.
3. ``mask.sum() == E``, ``mask[i].sum() == deg(i)``, and each row's True slots come first.
4. ``K == max deg(i)`` (0 when there are no edges, then the padded tensor is [N, 0, *]).
5. ``from_sequence(to_sequence(c, x)) == (c, x)``: the transformer sequences
   [c_i; t_ij...] of shape [N, K+1, *] hold the central token in slot 0 and the edges in
   slots 1..deg(i), at ``sequence_index[e] = centre[e] * (K+1) + slot[e] + 1``.
6. ``reverse[reverse] == arange(E)``: the reverse-edge map (edge (i->j, S) to its partner
   (j->i, -S), from ``torch_pet.ops.reverse_edge_index``) is an involution, so the message
   update ``m <- (m + x[reverse]) / 2`` of PET sends edge e's output to its partner.

Shapes:
    edge_index [2, E], flat tokens [E, C], padded tokens [N, K, C], mask [N, K]
"""
from typing import NamedTuple, Optional

import torch


class EdgeLayout(NamedTuple):
    """Index tensors mapping flat edge rows to padded per-centre slots.

    Shapes:
        centre [E], slot [E], index [E] (= centre * K + slot), sequence_index [E]
        (= centre * (K+1) + slot + 1), ptr [N+1] (None when built from slots), mask [N, K],
        reverse [E] or None
    """

    centre: torch.Tensor
    slot: torch.Tensor
    index: torch.Tensor
    sequence_index: torch.Tensor
    ptr: torch.Tensor
    mask: torch.Tensor
    num_nodes: int
    max_neighbours: int
    reverse: Optional[torch.Tensor] = None


def build_edge_layout(centre: torch.Tensor, num_nodes: int,
                      reverse: Optional[torch.Tensor] = None, *,
                      check: bool = True) -> EdgeLayout:
    """The padded layout of edges sorted by centre.

    Args:
        centre: centre atom i of each edge (``edge_index[1]``), non-decreasing.
        num_nodes: N, the number of atoms (atoms without edges get empty rows).
        reverse: optional reverse-edge index, stored in the layout as given.
        check: verify that ``centre`` is sorted and in range (skip it only for edges
            that are so by construction, e.g. from ``radius_graph``; saves a host sync).

    Shapes:
        centre [E], reverse [E] -> :class:`EdgeLayout`
    """
    if centre.dim() != 1:
        raise ValueError(f"centre must be a 1-D index tensor [E], got shape {tuple(centre.shape)}")
    device = centre.device
    num_edges = centre.numel()
    if check and num_edges > 0:
        unsorted, low, high = torch.stack([(centre[1:] < centre[:-1]).any(), centre.min() < 0,
                                           centre.max() >= num_nodes]).tolist()
        if unsorted:
            raise ValueError("edges must be sorted by centre (edge_index[1]), as radius_graph "
                             "returns them; sort them first (a stable argsort of edge_index[1])")
        if low or high:
            raise ValueError(f"edge centres must lie in [0, {num_nodes}) for {num_nodes} atoms")
    # [N]; index_add rather than bincount keeps the shape static for torch.compile
    counts = torch.zeros(num_nodes, dtype=torch.long, device=device).index_add_(
        0, centre, torch.ones_like(centre))
    ptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=device)
    torch.cumsum(counts, 0, out=ptr[1:])
    max_neighbours = int(counts.max()) if num_edges > 0 else 0
    slot = torch.arange(num_edges, device=device) - ptr[centre]
    mask = torch.arange(max_neighbours, device=device) < counts[:, None]  # [N, K]
    return layout_from_slots(centre, slot, mask, reverse, ptr=ptr)


def layout_from_slots(centre: torch.Tensor, slot: torch.Tensor, mask: torch.Tensor,
                      reverse: Optional[torch.Tensor] = None, *,
                      ptr: Optional[torch.Tensor] = None) -> EdgeLayout:
    """The layout of edges whose slots are known: no data-dependent shapes or host reads
    (N and K are ``mask``'s shape), so torch.compile/torch.export trace it with dynamic
    sizes. ``slot``/``mask`` as :func:`build_edge_layout` returns them (not checked).

    Shapes:
        centre [E], slot [E], mask [N, K], reverse [E], ptr [N+1] -> :class:`EdgeLayout`
    """
    num_nodes, max_neighbours = mask.shape
    index = centre * max_neighbours + slot
    return EdgeLayout(centre, slot, index, index + centre + 1, ptr, mask, num_nodes,
                      max_neighbours, reverse)


def to_padded(x: torch.Tensor, layout: EdgeLayout) -> torch.Tensor:
    """Scatter flat edge rows into the padded per-centre layout (zeros in padding).

    Shapes:
        x [E, *] -> [N, K, *]
    """
    n, k = layout.num_nodes, layout.max_neighbours
    out = x.new_zeros((n * k,) + tuple(x.shape[1:]))
    return out.index_copy(0, layout.index, x).reshape((n, k) + tuple(x.shape[1:]))


def to_flat(x: torch.Tensor, layout: EdgeLayout) -> torch.Tensor:
    """Gather the padded per-centre layout back into flat edge rows (drops padding).

    Shapes:
        x [N, K, *] -> [E, *]
    """
    n, k = layout.num_nodes, layout.max_neighbours
    if tuple(x.shape[:2]) != (n, k):
        raise ValueError(f"expected a padded tensor of shape [{n}, {k}, ...], got {tuple(x.shape)}")
    return x.reshape((n * k,) + tuple(x.shape[2:])).index_select(0, layout.index)


def to_sequence(central: torch.Tensor, x: torch.Tensor, layout: EdgeLayout) -> torch.Tensor:
    """Per-centre sequences [c_i; t_ij1; ...; t_ijK] (zeros in padding), one scatter.

    Shapes:
        central [N, *], x [E, *] -> [N, K+1, *]
    """
    n, k = layout.num_nodes, layout.max_neighbours
    tail = tuple(x.shape[1:])
    out = torch.cat([central[:, None], x.new_zeros((n, k) + tail)], dim=1)  # [N, K+1, *]
    return out.reshape((n * (k + 1),) + tail).index_copy(0, layout.sequence_index, x) \
        .reshape((n, k + 1) + tail)


def from_sequence(sequence: torch.Tensor, layout: EdgeLayout):
    """Split per-centre sequences into central tokens and flat edge tokens.

    Shapes:
        sequence [N, K+1, *] -> central [N, *], x [E, *]
    """
    n, k = layout.num_nodes, layout.max_neighbours
    if tuple(sequence.shape[:2]) != (n, k + 1):
        raise ValueError(f"expected sequences of shape [{n}, {k + 1}, ...], "
                         f"got {tuple(sequence.shape)}")
    tail = tuple(sequence.shape[2:])
    flat = sequence.reshape((n * (k + 1),) + tail).index_select(0, layout.sequence_index)
    return sequence[:, 0], flat
