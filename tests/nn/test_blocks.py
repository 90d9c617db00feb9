"""PET's transformer blocks: the paper's is unchanged (stored reference), the modern one
(pre-RMSNorm, SwiGLU) has the right shapes and trains on forces (double backward)."""
import json

import pytest
import torch

import paper_reference
from pet_helpers import batch_of, methane, periodic, small_pet
from torch_pet.nn.blocks import ModernTransformerLayer, SwiGLU, transformer_layer
from torch_pet.nn.derivatives import energy_and_forces

pytestmark = pytest.mark.usefixtures("one_thread")


def test_paper_block_matches_the_stored_reference():
    with open(paper_reference.PATH) as f:
        stored = json.load(f)
    reference, now = paper_reference.decode(stored["values"]), paper_reference.compute()
    assert set(reference) == set(now)
    same_machine = stored["machine"] == paper_reference.machine()
    for key, value in reference.items():
        if same_machine and key.startswith("eval"):  # fused attention: bit for bit
            assert torch.equal(now[key], value), key
        else:  # the explicit attention kernel was reformulated (same math): round-off
            torch.testing.assert_close(now[key], value, rtol=1e-12, atol=1e-13, msg=key)


def test_modern_layer_shapes_parameters_and_errors():
    layer = ModernTransformerLayer(16, 4, 24)
    x, weight = torch.randn(3, 5, 16), torch.rand(3, 5)
    weight[:, 0] = 1.0
    assert layer(x, weight).shape == (3, 5, 16)
    # RMSNorm x2 (16 each), attention 16*48+48 + 16*16+16, SwiGLU 16*48+48 + 24*16+16
    assert sum(p.numel() for p in layer.parameters()) == 32 + 816 + 272 + 816 + 400
    assert SwiGLU(8, 12)(torch.randn(2, 8)).shape == (2, 8)
    with pytest.raises(ValueError, match="block must be one of"):
        transformer_layer("fancy", 16, 4, 24)
    with pytest.raises(ValueError, match="block"):
        small_pet(block="fancy")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_modern_pet_shapes_and_force_training(dtype):
    model = small_pet(block="modern", num_layers=2).to(dtype).train()
    assert "block='modern'" in repr(model.blocks[0])
    assert model.hyperparameters["block"] == "modern"
    data = batch_of(methane(dtype=dtype, seed=0), periodic(6, dtype=dtype))
    out = energy_and_forces(model, data, create_graph=True)
    assert out["energy"].shape == (2,) and out["forces"].shape == (11, 3)
    grads = torch.autograd.grad(out["forces"].pow(2).sum(), list(model.parameters()),
                                allow_unused=True)
    norms = {name: g.norm() for (name, _), g in zip(model.named_parameters(), grads)
             if g is not None}
    assert all(torch.isfinite(n) for n in norms.values())
    assert any("feed_forward.gate_value" in name and n > 0 for name, n in norms.items())
    assert any("final_norm" in name for name in norms)


def test_modern_pet_double_backward_is_exact():
    torch.manual_seed(3)
    model = small_pet(block="modern", hidden_channels=8, ff_channels=8, head_channels=8,
                      num_blocks=1).double().train()
    data = methane(seed=4)

    def forces(pos):
        moved = data.clone()
        moved.pos = pos
        return energy_and_forces(model, moved, create_graph=True)["forces"]

    pos = data.pos.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(forces, (pos,), eps=1e-6, atol=1e-6)


def test_paper_default_unchanged_and_modern_differs():
    torch.manual_seed(0)
    paper = small_pet()
    torch.manual_seed(0)
    modern = small_pet(block="modern")
    assert paper.config.block == "paper" and not hasattr(paper.blocks[0].final_norm, "weight")
    data = methane(dtype=torch.float32, seed=1)
    assert not torch.allclose(paper(data), modern(data))
