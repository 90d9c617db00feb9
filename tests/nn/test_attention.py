"""Cutoff-weighted attention: fused == explicit, the definition, double backward, the auto rule."""
import pytest
import torch

from torch_pet.nn.attention import CutoffMultiheadAttention, attention_bias, double_backward, \
    explicit_attention, fused_attention, resolve_attention

TOLERANCE = {torch.float32: 2e-5, torch.float64: 1e-12}


def weights(batch=5, length=6, dtype=torch.float64):
    """Key multipliers as PET builds them: 1 (centre), f_c in (0, 1], 0 (padding)."""
    w = torch.rand(batch, length, dtype=dtype)
    w[:, 0] = 1.0
    w[1, 4:] = 0.0  # padding
    if batch > 2:
        w[2, 1:] = 0.0  # a centre without neighbours
    if batch > 3:
        w[3, 2] = 1e-30  # a neighbour at the very edge of the cutoff
    return w


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_definition(dtype):
    q, k, v = torch.randn(3, 5, 2, 6, 4, dtype=dtype).unbind(0)
    w = weights(dtype=dtype)
    scores = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    reweighted = scores * w[:, None, None, :]
    expected = (reweighted / reweighted.sum(-1, keepdim=True)) @ v
    for out in (explicit_attention(q, k, v, w), fused_attention(q, k, v, attention_bias(w))):
        assert torch.allclose(out, expected, atol=TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_explicit_with_gradients(dtype):
    attn = CutoffMultiheadAttention(8, 2).to(dtype)
    x = torch.randn(5, 6, 8, dtype=dtype, requires_grad=True)
    w = weights(dtype=dtype).requires_grad_(True)
    outs, grads = [], []
    for mode in ("fused", "explicit"):
        out = attn(x, w, mode=mode)
        outs.append(out)
        grads.append(torch.autograd.grad((out * out.detach().cos()).sum(), (x, w)))
    assert torch.allclose(outs[0], outs[1], atol=TOLERANCE[dtype], rtol=0)
    for a, b in zip(grads[0], grads[1]):
        assert torch.isfinite(a).all() and torch.isfinite(b).all()
        assert torch.allclose(a, b, atol=10 * TOLERANCE[dtype], rtol=0)


def test_padding_is_invisible():
    attn = CutoffMultiheadAttention(8, 2).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    w = weights(batch=2, dtype=torch.float64)
    w[1, 4:] = 0.0
    changed = x.clone()
    changed[1, 4:] = 100 * torch.randn(2, 8, dtype=torch.float64)  # garbage in padding slots
    for mode in ("fused", "explicit"):
        a, b = attn(x, w, mode=mode), attn(changed, w, mode=mode)
        assert torch.allclose(a[:, :4], b[:, :4], atol=1e-12, rtol=0)


def test_explicit_double_backward():
    attn = CutoffMultiheadAttention(4, 2).double()
    x = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    w = weights(batch=3, length=5)
    padding = w == 0  # not a variable: f_c > 0 for every real neighbour
    w = w.clamp_min(0.1).requires_grad_(True)

    def f(x, w):
        return attn(x, w.masked_fill(padding, 0.0), mode="explicit")

    assert torch.autograd.gradcheck(f, (x, w))
    assert torch.autograd.gradgradcheck(f, (x, w), fast_mode=True)


def test_auto_rule():
    assert resolve_attention("fused", True) == "fused"
    assert resolve_attention("explicit", False) == "explicit"
    assert resolve_attention("auto", True) == "explicit"
    assert resolve_attention("auto", False) == "fused"
    with double_backward():
        assert resolve_attention("auto", False) == "explicit"
        with torch.no_grad():
            assert resolve_attention("auto", True) == "fused"
    with torch.no_grad():
        assert resolve_attention("auto", True) == "fused"


def test_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        CutoffMultiheadAttention(10, 4)
    attn = CutoffMultiheadAttention(8, 2)
    with pytest.raises(ValueError, match="'fused' or 'explicit'"):
        attn(torch.randn(1, 2, 8), torch.ones(1, 2), mode="flash")
