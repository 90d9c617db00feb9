"""Round-trip invariants of the flat <-> padded edge-token layout (see its module docstring)."""
import pytest
import torch

import torch_pet.ops
from torch_pet.nn.edge_layout import build_edge_layout, from_sequence, to_flat, to_padded, \
    to_sequence

from pet_helpers import periodic


def random_centres(num_nodes=7, num_edges=30):
    centre = torch.randint(num_nodes, (num_edges,)).sort().values
    return centre


@pytest.mark.parametrize("num_nodes,num_edges", [(7, 30), (5, 0), (1, 4), (9, 3)])
def test_round_trips(num_nodes, num_edges):
    centre = random_centres(num_nodes, num_edges)
    layout = build_edge_layout(centre, num_nodes)
    degree = torch.bincount(centre, minlength=num_nodes)
    # invariant 4: K is the largest degree
    assert layout.max_neighbours == (int(degree.max()) if num_edges else 0)
    # invariant 3: mask counts and True slots first
    assert int(layout.mask.sum()) == num_edges
    assert torch.equal(layout.mask.sum(1), degree)
    assert torch.equal(layout.mask, torch.arange(layout.max_neighbours) < degree[:, None])
    # invariant 1: flat -> padded -> flat is the identity
    x = torch.randn(num_edges, 3, 2, dtype=torch.float64)
    padded = to_padded(x, layout)
    assert padded.shape == (num_nodes, layout.max_neighbours, 3, 2)
    assert torch.equal(to_flat(padded, layout), x)
    # the padded row of centre i holds its edges in order
    for i in range(num_nodes):
        assert torch.equal(padded[i, :int(degree[i])], x[centre == i])
    # invariant 2: padded -> flat -> padded zeroes the padding
    y = torch.randn(num_nodes, layout.max_neighbours, 4)
    assert torch.equal(to_padded(to_flat(y, layout), layout), y * layout.mask[..., None])
    # invariant 5: sequences [c; t...]
    central = torch.randn(num_nodes, 3, 2, dtype=torch.float64)
    sequence = to_sequence(central, x, layout)
    assert sequence.shape == (num_nodes, layout.max_neighbours + 1, 3, 2)
    assert torch.equal(sequence[:, 0], central)
    assert torch.equal(sequence[:, 1:], padded)
    c, flat = from_sequence(sequence, layout)
    assert torch.equal(c, central) and torch.equal(flat, x)


def test_conversions_are_differentiable_twice():
    centre = random_centres()
    layout = build_edge_layout(centre, 7)
    x = torch.randn(centre.numel(), 2, dtype=torch.float64, requires_grad=True)
    central = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, layout.max_neighbours + 1, 2, dtype=torch.float64)

    def f(central, x):
        return (to_sequence(central, x, layout) * weight).sin().sum() \
            + from_sequence(to_sequence(central, x, layout).cos(), layout)[1].sum()

    assert torch.autograd.gradcheck(f, (central, x))
    assert torch.autograd.gradgradcheck(f, (central, x))


def test_reverse_index_is_an_involution():
    data = periodic(n=6, length=3.0)
    edge_index, shifts = torch_pet.ops.radius_graph(data.pos, 3.5, cell=data.cell, pbc=data.pbc)
    reverse = torch_pet.ops.reverse_edge_index(edge_index, shifts)
    layout = build_edge_layout(edge_index[1], 6, reverse)
    assert torch.equal(layout.reverse[layout.reverse], torch.arange(edge_index.shape[1]))
    assert torch.equal(edge_index[0, reverse], edge_index[1])
    assert torch.equal(shifts[reverse], -shifts)
    # self-images (i -> i, S != 0) exist in this small cell and pair with (i -> i, -S)
    assert bool((edge_index[0] == edge_index[1]).any())


def test_errors():
    with pytest.raises(ValueError, match="sorted by centre"):
        build_edge_layout(torch.tensor([0, 2, 1]), 3)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        build_edge_layout(torch.tensor([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="1-D"):
        build_edge_layout(torch.zeros(2, 2, dtype=torch.long), 3)
    layout = build_edge_layout(torch.tensor([0, 0, 1]), 2)
    with pytest.raises(ValueError, match="padded tensor of shape"):
        to_flat(torch.zeros(2, 3, 1), layout)
