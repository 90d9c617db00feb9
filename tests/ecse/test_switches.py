"""The C-infinity switching functions of ECSE: values, window ends, safe derivatives."""
import pytest
import torch

from torch_pet.ecse.switches import collinearity_switch, radial_switch, stitching_function

DTYPES = [torch.float32, torch.float64]


def _derivatives(fn, x, order):
    """[fn(x), fn'(x), ..., fn^(order)(x)] elementwise, by repeated autograd."""
    x = x.detach().requires_grad_()
    out = [fn(x)]
    for _ in range(order):
        (grad,) = torch.autograd.grad(out[-1].sum(), x, create_graph=True)
        out.append(grad)
    return [o.detach() for o in out]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_stitching_function_values(dtype):
    g = torch.linspace(-3, 3, 6001, dtype=dtype)
    y = stitching_function(g)
    assert torch.all(y[g <= -1] == 0) and torch.all(y[g >= 1] == 1)
    assert torch.all(y.diff() >= 0)  # monotone
    assert stitching_function(torch.zeros((), dtype=dtype)) == 0.5
    inside = g.abs() < 0.99
    expected = 0.5 * (1 + torch.tanh(2 * g.double() / (1 - g.double() ** 2)))
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(y[inside].double(), expected[inside], atol=tol, rtol=0)
    # sigma(g) + sigma(-g) = 1 (the radial switch relies on it)
    torch.testing.assert_close(y + y.flip(0), torch.ones_like(y), atol=2 * torch.finfo(dtype).eps, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_all_derivatives_vanish_at_the_window_ends(dtype):
    ends = torch.tensor([-5.0, -1.0, 1.0, 5.0], dtype=dtype)
    for k, d in enumerate(_derivatives(stitching_function, ends, order=4)):
        assert torch.isfinite(d).all(), f"derivative {k} is not finite"
        if k > 0:
            assert torch.all(d == 0), f"derivative {k} is not 0 at the ends: {d}"
    # ... and tend to 0 continuously from inside (C-infinity stitching, not a kink)
    h = torch.tensor([3e-2, 1e-2, 3e-3], dtype=torch.float64)
    near = torch.cat([-1 + h, 1 - h])
    for k, d in enumerate(_derivatives(stitching_function, near, order=3)[1:], start=1):
        assert torch.isfinite(d).all()
        assert d.abs().max() < 1e-18, f"derivative {k} near the ends: {d}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_no_nan_gradients_anywhere(dtype):
    g = torch.cat([torch.linspace(-2, 2, 4001, dtype=dtype),
                   torch.tensor([-1.0, 1.0], dtype=dtype).nextafter(torch.zeros(2, dtype=dtype)),
                   torch.tensor([-1.0, 1.0], dtype=dtype)])
    for d in _derivatives(stitching_function, g, order=3):
        assert torch.isfinite(d).all()


def test_radial_switch_window():
    r = torch.tensor([0.0, 4.85, 4.925, 5.0, 7.0], dtype=torch.float64)
    f = radial_switch(r, 5.0, 0.15)
    torch.testing.assert_close(f, torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0], dtype=torch.float64))
    r = torch.linspace(4.8, 5.1, 301, dtype=torch.float64)
    assert torch.all(radial_switch(r, 5.0, 0.15).diff() <= 0)
    # per-element cutoffs broadcast
    cutoff = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(radial_switch(torch.full((3,), 2.0, dtype=torch.float64), cutoff, 0.5),
                               torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_collinearity_switch_window():
    x = torch.tensor([0.0, 0.05, 0.125, 0.2, 1.0], dtype=torch.float64)
    q = collinearity_switch(x, 0.05, 0.15)
    torch.testing.assert_close(q, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0], dtype=torch.float64))
    onset = torch.tensor([0.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(collinearity_switch(torch.full((2,), 0.3, dtype=torch.float64), onset, 0.1),
                               torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_gradcheck_and_gradgradcheck():
    x = torch.tensor([-0.95, -0.5, -0.1, 0.2, 0.7, 0.97], dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(stitching_function, (x,))
    torch.autograd.gradgradcheck(stitching_function, (x,))
    r = torch.tensor([4.86, 4.9, 4.95, 4.99], dtype=torch.float64, requires_grad=True)
    cutoff = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda r, c: radial_switch(r, c, 0.15), (r, cutoff))
    s = torch.tensor([0.06, 0.1, 0.15, 0.19], dtype=torch.float64, requires_grad=True)
    onset = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda s, w: collinearity_switch(s, w, 0.15), (s, onset))
