import math

import pytest
import torch

from torch_pet.nn.cutoff import Cutoff


@pytest.mark.parametrize("function", ["cosine", "bump"])
def test_values_and_limits(function):
    fc = Cutoff(5.0, 0.2, function)
    r = torch.tensor([0.0, 1.0, 4.8, 4.9, 5.0, 5.1, 7.0], dtype=torch.float64)
    value = fc(r)
    assert torch.equal(value[[0, 1, 2]], torch.ones(3, dtype=torch.float64))
    assert torch.equal(value[[4, 5, 6]], torch.zeros(3, dtype=torch.float64))
    assert value[3].item() == pytest.approx(0.5, abs=1e-12)
    if function == "cosine":
        x = torch.tensor(4.85, dtype=torch.float64)
        assert fc(x).item() == pytest.approx(0.5 + 0.5 * math.cos(math.pi * 0.25), abs=1e-14)


@pytest.mark.parametrize("function", ["cosine", "bump"])
def test_smooth_and_finite_derivatives(function):
    fc = Cutoff(5.0, 0.2, function)
    r = torch.linspace(4.5, 5.5, 2001, dtype=torch.float64, requires_grad=True)
    value = fc(r)
    grad, = torch.autograd.grad(value.sum(), r, create_graph=True)
    second, = torch.autograd.grad(grad.sum(), r)
    assert torch.isfinite(grad).all() and torch.isfinite(second).all()
    assert (value[1:] <= value[:-1]).all()  # monotone
    # continuity: no jump larger than the slope allows between neighbouring samples
    step = 1.0 / 2000
    assert (value.diff().abs() <= grad.abs().max() * step * 1.01).all()
    assert (grad.diff().abs() <= second.abs().max() * step * 1.01).all()
    # first derivative vanishes at both ends of the shell
    ends = torch.tensor([4.8, 5.0], dtype=torch.float64, requires_grad=True)
    d, = torch.autograd.grad(fc(ends).sum(), ends)
    assert d.abs().max() < 1e-12
    assert torch.autograd.gradcheck(fc, (torch.tensor([4.85, 4.95, 4.0, 6.0], dtype=torch.float64,
                                                      requires_grad=True),))


def test_errors():
    with pytest.raises(ValueError, match="positive finite"):
        Cutoff(0.0, 0.2)
    with pytest.raises(ValueError, match="cutoff_width"):
        Cutoff(5.0, 6.0)
    with pytest.raises(ValueError, match="one of"):
        Cutoff(5.0, 0.2, "gaussian")
