"""Output scaling: the Trainer fits a backbone's output_scale on the training set; PET
applies it, stores it in checkpoints, and loads older weights without it as 1."""
import math

import pytest
import torch
from torch_geometric.data import Batch

from torch_pet import PET
from torch_pet.backbone import backbone_info
from torch_pet.checkpoint import load_model, save_checkpoint
from torch_pet.checkpoint.registry import build_model
from torch_pet.config import OptionError
from torch_pet.datasets import DistortedMethane
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.training import Trainer, TrainingConfig
from torch_pet.training.self_energies import species_counts

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(species=(1, 6), hidden_channels=16, num_heads=2, num_layers=1, num_blocks=2,
             ff_channels=32, head_channels=16, cutoff=5.0)


def _trainer(tmp_path, block="paper", **config):
    config.setdefault("output_scale", "match")
    data = DistortedMethane("train", num_structures=64)
    options = dict(epochs=1, batch_size=16, checkpoints=False, progress=False, plot=False,
                   device="cpu")
    options.update(config)
    torch.manual_seed(0)
    return Trainer(PET(block=block, **SMALL), data, None, TrainingConfig(**options),
                   str(tmp_path)), data


def _rms(x):
    return float(x.double().pow(2).mean().sqrt())


@pytest.mark.parametrize("block", ["paper", "modern"])
def test_match_puts_initial_forces_at_the_targets_scale(tmp_path, block):
    trainer, data = _trainer(tmp_path, block)
    model = trainer.model.train()
    batch = Batch.from_data_list(list(data))
    forces = energy_and_forces(model, batch)["forces"]
    ratio = _rms(forces) / _rms(batch.forces)
    assert 0.5 < ratio < 2.0
    scale = float(model.output_scale[0])
    assert scale > 5.0  # without it, PET's initial forces are tens of times too small
    with torch.no_grad():
        model.output_scale.fill_(1.0)
    assert _rms(energy_and_forces(model, batch)["forces"]) / _rms(batch.forces) < 0.5 / 2


def test_match_on_energies_only(tmp_path):
    trainer, data = _trainer(tmp_path, forces_key=None)
    model = trainer.model.train()
    batch = Batch.from_data_list(list(data))
    counts = species_counts(batch.z, batch.batch, batch.num_graphs, model.species)
    selfe = (counts @ model.self_energies.double()).squeeze(-1)
    with torch.no_grad():
        residual = model(batch).squeeze(-1).double() - selfe
    ratio = _rms(residual) / _rms(batch.energy.double() - selfe)
    assert 0.5 < ratio < 2.0


def test_target_and_none(tmp_path):
    trainer, data = _trainer(tmp_path, output_scale="target")
    force_rms = math.sqrt(sum(float(d.forces.double().pow(2).sum()) for d in data)
                          / sum(d.forces.numel() for d in data))
    assert float(trainer.model.output_scale[0]) == pytest.approx(force_rms, rel=1e-5)
    assert trainer.model.output_scale[0] == pytest.approx(trainer.sigma0["forces"])
    trainer, _ = _trainer(tmp_path, output_scale="none")
    assert torch.equal(trainer.model.output_scale, torch.ones(1))
    with pytest.raises(OptionError, match="output_scale"):
        TrainingConfig(output_scale="auto")


def test_scale_is_applied_stored_and_old_weights_load_as_one(tmp_path):
    torch.manual_seed(0)
    model = PET(**SMALL).double().eval()
    data = DistortedMethane("train", num_structures=2)
    batch = Batch.from_data_list([d.clone() for d in data])
    batch.pos = batch.pos.double()
    with torch.no_grad():
        model.self_energies.fill_(0.5)
    before = model(batch)
    with torch.no_grad():
        model.output_scale.fill_(3.0)
    # self energies are not scaled: 5 atoms x 0.5 per structure
    torch.testing.assert_close(model(batch) - 2.5, 3.0 * (before - 2.5))
    path = str(tmp_path / "scaled.pt")
    save_checkpoint(path, model)
    loaded = load_model(path)
    assert float(loaded.output_scale[0]) == 3.0
    torch.testing.assert_close(loaded(batch), model(batch))
    # weights saved before output scaling existed: no output_scale entry -> 1
    state = {k: v for k, v in model.state_dict().items() if k != "output_scale"}
    record = {"class": "PET", "hyperparameters": model.hyperparameters, "state_dict": state,
              "dtype": "float64"}
    old = build_model(record)
    assert torch.equal(old.output_scale, torch.ones(1, dtype=torch.float64))
    fresh = PET(**SMALL).double()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.output_scale, torch.ones(1, dtype=torch.float64))


def test_backbone_contract_reads_and_checks_output_scale():
    model = PET(**SMALL)
    assert backbone_info(model).output_scale is model.output_scale

    class Bad(torch.nn.Module):
        output_scale = 2.0

    with pytest.raises(TypeError, match=r"Bad.output_scale must be a floating-point tensor"):
        backbone_info(Bad())
