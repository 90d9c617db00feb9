"""torch_pet::ecse_pairs: kernels (CPU, CUDA) vs the dense pure-PyTorch reference."""
import pytest
import torch

from torch_pet import _extension
from torch_pet.ops.ecse_pairs import ecse_pairs
from torch_pet.ops.reference import ecse_pairs_reference

DTYPES = [torch.float32, torch.float64]
DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

needs_extension = pytest.mark.skipif(not _extension.WITH_EXTENSION,
                                     reason="torch_pet._C is not built")


def _device_ok(device):
    if device.type == "cuda" and not _extension.WITH_CUDA_EXT:
        pytest.skip("torch_pet._C was built without CUDA kernels")


def random_environments(num_centres, max_neighbours, dtype, device="cpu"):
    """Edge vectors grouped by centre, with zero-length and exactly collinear edges mixed in."""
    counts = torch.randint(0, max_neighbours + 1, (num_centres,))
    num_edges = int(counts.sum())
    vectors = torch.randn(num_edges, 3, dtype=torch.float64)
    vectors = vectors / vectors.norm(dim=1, keepdim=True) * 4 * torch.rand(num_edges, 1, dtype=torch.float64)
    special = torch.rand(num_edges)
    vectors[special < 0.03] = 0.0  # zero-length edges never pair
    collinear = (special > 0.95).nonzero().flatten()
    collinear = collinear[collinear > 0]
    vectors[collinear] = -1.5 * vectors[collinear - 1]  # exactly (anti)collinear, s = 0
    centre_ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    radius = 1.0 + 3.0 * torch.rand(num_centres, dtype=torch.float64)
    return (vectors.to(dtype=dtype, device=device), centre_ptr.to(device),
            radius.to(dtype=dtype, device=device))


@needs_extension
@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("s_min", [0.05, 0.2])
def test_kernel_matches_reference(device, dtype, ordered, s_min):
    _device_ok(device)
    vectors, ptr, radius = random_environments(300, 20, dtype, device)
    pairs = torch.ops.torch_pet.ecse_pairs(vectors, ptr, radius, s_min, ordered)
    expected = ecse_pairs_reference(vectors.cpu(), ptr.cpu(), radius.cpu(), s_min, ordered)
    assert pairs.dtype == torch.long and pairs.device == device
    assert expected.shape[0] > 1000
    assert torch.equal(pairs.cpu(), expected)


@pytest.mark.parametrize("ordered", [True, False])
def test_pairs_follow_the_definition(ordered):
    """Every listed pair satisfies the conditions, every unlisted one fails them, order is canonical."""
    vectors, ptr, radius = random_environments(40, 9, torch.float64)
    pairs = ecse_pairs(vectors, ptr, radius, 0.05, ordered)
    listed = {tuple(p) for p in pairs.tolist()}
    assert len(listed) == pairs.shape[0]
    expected = []
    for c in range(ptr.numel() - 1):
        edges = range(int(ptr[c]), int(ptr[c + 1]))
        for a in edges:
            for b in edges:
                if a == b or (not ordered and b < a):
                    continue
                ra, rb = vectors[a].norm(), vectors[b].norm()
                if ra == 0 or rb == 0 or ra >= radius[c] or rb >= radius[c]:
                    continue
                s = torch.linalg.cross(vectors[a] / ra, vectors[b] / rb).pow(2).sum()
                if s > 0.05:
                    expected.append((a, b))
    assert pairs.tolist() == [list(p) for p in expected]  # same set, sorted by (centre, a, b)


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_empty_and_single_neighbour(device):
    _device_ok(device)
    for ordered in (True, False):
        # no edges, some centres
        out = ecse_pairs(torch.zeros(0, 3, device=device), torch.zeros(4, dtype=torch.long, device=device),
                         torch.ones(3, device=device), 0.05, ordered)
        assert out.shape == (0, 2) and out.dtype == torch.long
        # no centres at all
        out = ecse_pairs(torch.zeros(0, 3, device=device), torch.zeros(1, dtype=torch.long, device=device),
                         torch.ones(0, device=device), 0.05, ordered)
        assert out.shape == (0, 2)
        # one neighbour per centre: nothing to pair
        out = ecse_pairs(torch.randn(3, 3, device=device), torch.arange(4, device=device),
                         torch.full((3,), 10.0, device=device), 0.05, ordered)
        assert out.shape == (0, 2)


def test_radius_is_strict_and_collinear_pairs_are_skipped():
    vectors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0], [-3.0, 0, 0]], dtype=torch.float64)
    ptr = torch.tensor([0, 4])
    radius = torch.tensor([2.0], dtype=torch.float64)
    # |r_2| = 2 is not < 2; edges 0 and 3 are collinear and 3 is outside anyway
    assert ecse_pairs(vectors, ptr, radius, 0.05, True).tolist() == [[0, 1], [1, 0]]
    radius = torch.tensor([3.5], dtype=torch.float64)
    pairs = ecse_pairs(vectors, ptr, radius, 0.05, False).tolist()
    assert [0, 3] not in pairs and [1, 3] in pairs and [0, 2] in pairs


@needs_extension
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_opcheck(dtype):
    vectors, ptr, radius = random_environments(20, 6, dtype)
    for ordered in (True, False):
        torch.library.opcheck(torch.ops.torch_pet.ecse_pairs.default,
                              (vectors, ptr, radius, 0.05, ordered))


def test_gradients_do_not_flow_into_the_pairs():
    vectors, ptr, radius = random_environments(5, 4, torch.float64)
    pairs = ecse_pairs(vectors.requires_grad_(), ptr, radius.requires_grad_(), 0.05, True)
    assert not pairs.requires_grad


def test_bad_input_raises_clear_errors():
    vectors, ptr, radius = random_environments(5, 4, torch.float64)
    with pytest.raises(ValueError, match=r"edge_vectors must have shape \[E, 3\]"):
        ecse_pairs(vectors[:, :2], ptr, radius, 0.05, True)
    with pytest.raises(TypeError, match="float32 or float64"):
        ecse_pairs(vectors.long(), ptr, radius, 0.05, True)
    with pytest.raises(TypeError, match="radius must have the dtype"):
        ecse_pairs(vectors, ptr, radius.float(), 0.05, True)
    with pytest.raises(ValueError, match="centre_ptr must be a 1-D int64"):
        ecse_pairs(vectors, ptr.int(), radius, 0.05, True)
    with pytest.raises(ValueError, match=r"radius must have shape \[N\]"):
        ecse_pairs(vectors, ptr, radius[:-1], 0.05, True)
    bad = ptr.clone()
    bad[-1] += 1
    with pytest.raises(ValueError, match="must start at 0 and end at E"):
        ecse_pairs(vectors, bad, radius, 0.05, True)
    with pytest.raises(ValueError, match="non-decreasing"):
        ecse_pairs(torch.randn(6, 3), torch.tensor([0, 4, 2, 6]), torch.ones(3), 0.05, True)
    nan = vectors.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ecse_pairs(nan, ptr, radius, 0.05, True)
    with pytest.raises(ValueError, match="s_min must be finite"):
        ecse_pairs(vectors, ptr, radius, float("nan"), True)


@needs_extension
def test_raw_op_checks_its_arguments():
    vectors, ptr, radius = random_environments(5, 4, torch.float64)
    op = torch.ops.torch_pet.ecse_pairs
    with pytest.raises(RuntimeError, match=r"edge_vectors must have shape \[E, 3\]"):
        op(vectors[:, :2], ptr, radius, 0.05, True)
    with pytest.raises(RuntimeError, match="radius must have the dtype"):
        op(vectors, ptr, radius.float(), 0.05, True)
    bad = ptr.clone()
    bad[-1] += 1
    with pytest.raises(RuntimeError, match="must start at 0 and end at E"):
        op(vectors, bad, radius, 0.05, True)
    with pytest.raises(RuntimeError, match="non-decreasing"):
        op(torch.randn(6, 3), torch.tensor([0, 4, 2, 6]), torch.ones(3), 0.05, True)
