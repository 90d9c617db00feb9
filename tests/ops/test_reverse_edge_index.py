"""torch_pet::reverse_edge_index: kernels (CPU, CUDA) vs the pure-PyTorch reference,
unsorted input, missing partners, errors."""
import pytest
import torch

from torch_pet import _extension
from torch_pet.ops import radius_graph, reverse_edge_index
from torch_pet.ops.reference import reverse_edge_index_reference

DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

needs_extension = pytest.mark.skipif(not _extension.WITH_EXTENSION, reason="torch_pet._C is not built")


def _device_ok(device):
    if device.type == "cuda" and not _extension.WITH_CUDA_EXT:
        pytest.skip("torch_pet._C was built without CUDA kernels")


def periodic_graph(device="cpu"):
    """A batch of a small periodic cell (self-images, several images per pair) and a molecule."""
    cell = torch.tensor([[3.0, 0.0, 0.0], [0.8, 2.7, 0.0], [-0.5, 0.4, 3.1]], dtype=torch.float64)
    pos = torch.cat([torch.rand(5, 3, dtype=torch.float64) @ cell,
                     torch.rand(9, 3, dtype=torch.float64) * 4.0])
    batch = torch.tensor([0] * 5 + [1] * 9)
    cells = torch.stack([cell, torch.zeros(3, 3, dtype=torch.float64)])
    pbc = torch.tensor([[True] * 3, [False] * 3])
    edge_index, shifts = radius_graph(pos, 4.0, batch, cell=cells, pbc=pbc)
    return edge_index.to(device), shifts.to(device)


def assert_is_reverse(edge_index, shifts, rev):
    assert torch.equal(edge_index[:, rev], edge_index.flip(0))
    assert torch.equal(shifts[rev], -shifts)


@needs_extension
@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_kernel_matches_reference(device):
    _device_ok(device)
    edge_index, shifts = periodic_graph(device)
    assert edge_index.shape[1] > 200 and bool((shifts != 0).any())
    rev = torch.ops.torch_pet.reverse_edge_index(edge_index, shifts)
    assert rev.device == device and rev.dtype == torch.long
    assert torch.equal(rev.cpu(), reverse_edge_index_reference(edge_index.cpu(), shifts.cpu()))
    assert_is_reverse(edge_index, shifts, rev)
    assert torch.equal(rev[rev], torch.arange(rev.numel(), device=device))


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_unsorted_input_is_sorted_internally(device):
    _device_ok(device)
    edge_index, shifts = periodic_graph(device)
    perm = torch.randperm(edge_index.shape[1]).to(device)
    edge_index, shifts = edge_index[:, perm], shifts[perm]
    rev = reverse_edge_index(edge_index, shifts)
    assert_is_reverse(edge_index, shifts, rev)
    assert torch.equal(rev.cpu(), reverse_edge_index_reference(edge_index.cpu(), shifts.cpu()))


def test_without_shifts_and_duplicates():
    edge_index = torch.tensor([[1, 2, 0, 0, 2, 1], [0, 0, 1, 2, 1, 2]])
    rev = reverse_edge_index(edge_index)
    assert rev.tolist() == [2, 3, 0, 1, 5, 4]
    doubled = torch.cat([edge_index, edge_index], dim=1)  # duplicates map to the first copy
    assert reverse_edge_index(doubled).tolist() == [2, 3, 0, 1, 5, 4] * 2


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_empty(device):
    _device_ok(device)
    rev = reverse_edge_index(torch.zeros(2, 0, dtype=torch.long, device=device),
                             torch.zeros(0, 3, dtype=torch.long, device=device))
    assert rev.shape == (0,) and rev.dtype == torch.long


def test_missing_partner_raises():
    edge_index, shifts = periodic_graph()
    shifts = shifts.clone()
    e = int((shifts != 0).any(dim=1).nonzero()[3])
    shifts[e] = shifts[e] * 2  # no longer matched by its partner
    with pytest.raises(ValueError, match=rf"edge {e} \(.* has no reverse edge .* 2 edges lack one"):
        reverse_edge_index(edge_index, shifts)
    half = torch.tensor([[1, 2], [0, 0]])
    with pytest.raises(ValueError, match=r"edge 0 \(1 -> 0, shift \[0, 0, 0\]\) has no reverse edge "
                                         r"\(0 -> 1, shift \[0, 0, 0\]\).*full neighbour list"):
        reverse_edge_index(half)
    with pytest.raises(ValueError, match="has no reverse edge"):  # unsorted and incomplete
        reverse_edge_index(torch.tensor([[2, 0, 1], [0, 2, 0]]))


def test_errors():
    edge_index = torch.tensor([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, E\]"):
        reverse_edge_index(edge_index.T.reshape(1, 4))
    with pytest.raises(TypeError, match="edge_index must be int64"):
        reverse_edge_index(edge_index.int())
    with pytest.raises(ValueError, match=r"shifts must have shape \[E, 3\] = \[2, 3\]"):
        reverse_edge_index(edge_index, torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="shifts must be int64"):
        reverse_edge_index(edge_index, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="shifts is on meta but edge_index is on cpu"):
        reverse_edge_index(edge_index, torch.zeros(2, 3, dtype=torch.long, device="meta"))
    with pytest.raises(TypeError, match="edge_index must be a torch.Tensor"):
        reverse_edge_index([[1, 0], [0, 1]])


@needs_extension
def test_op_checks_and_opcheck():
    edge_index, shifts = periodic_graph()
    op = torch.ops.torch_pet.reverse_edge_index
    torch.library.opcheck(op.default, (edge_index, shifts))
    with pytest.raises(RuntimeError, match=r"shifts must have shape \[E, 3\]"):
        op(edge_index, shifts[:-1])
    with pytest.raises(RuntimeError, match="edge_index must be int64"):
        op(edge_index.int(), shifts)
    # The op itself flags edges that break the sort order (-2) and missing partners (-1).
    assert op(torch.tensor([[1, 0], [1, 0]]), torch.zeros(2, 3, dtype=torch.long))[1] == -2
    assert op(torch.tensor([[1], [0]]), torch.zeros(1, 3, dtype=torch.long)).tolist() == [-1]
