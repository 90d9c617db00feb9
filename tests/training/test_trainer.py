import json
import os

import pytest
import torch
from toy_potential import ToyPotential
from torch_geometric.data import Data

from torch_pet.checkpoint import load_checkpoint
from torch_pet.training import Trainer, TrainingConfig


def _config(**overrides):
    base = dict(epochs=3, batch_size=8, lr=3e-3, warmup_epochs=0.5, decay_every_epochs=2,
                progress=False, plot=False)
    base.update(overrides)
    return TrainingConfig(**base)


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return ToyPotential(**kwargs)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_energy_and_force_training_learns_and_writes_outputs(tmp_path, methane_small):
    train, val = methane_small
    model = _model()
    trainer = Trainer(model, train, val, _config(epochs=4, plot=True), str(tmp_path))
    # self energies were fitted on the training split: C + 4 H = mean training energy
    mean = train._data.energy.double().mean()
    se = model.self_energies[:, 0].double()
    assert abs(float(se[1] + 4 * se[0] - mean)) < 1e-3
    before = trainer.validate()
    history = trainer.fit()
    after = trainer.validate()
    assert len(history) == 4 and after["forces_rmse"] < before["forces_rmse"]
    assert {"val_energy_mae_per_atom", "val_forces_mae", "sigma_energy", "sigma_forces",
            "lr", "train_loss"} <= history[-1].keys()
    for name in ("last.pt", "best.pt", "metrics.jsonl", "learning_curve.png"):
        assert os.path.getsize(tmp_path / name) > 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    best = load_checkpoint(str(tmp_path / "best.pt"))["trainer"]
    assert best["best_epoch"] == min(history, key=lambda r: r["val_score"])["epoch"]
    # sigma follows the validation RMSE: 0.7 * previous + 0.3 * RMSE_val
    sigma = trainer.sigma0["forces"]
    for record in history:
        sigma = 0.7 * sigma + 0.3 * record["val_forces_rmse"]
    assert trainer.sigma["forces"] == pytest.approx(sigma)


def test_learning_rate_warmup_then_step_decay(tmp_path, methane_small):
    train, val = methane_small  # 24 structures, batch 8: 3 steps per epoch
    trainer = Trainer(_model(), train, val, _config(epochs=5, warmup_epochs=1.0,
                                                    decay_every_epochs=2, decay_factor=0.1),
                      str(tmp_path))
    lrs = []
    for _ in range(15):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    expected = [1e-3, 2e-3, 3e-3] + [3e-3] * 6 + [3e-4] * 6
    assert lrs == pytest.approx(expected)


def test_fixed_seed_reproduces_a_cpu_run_exactly(tmp_path, methane_small):
    train, val = methane_small
    states = []
    for run in ("a", "b"):
        model = _model(seed=0)
        Trainer(model, train, val, _config(), str(tmp_path / run)).fit()
        states.append(_state(model))
    _assert_same_state(*states)
    model = _model(seed=0)
    Trainer(model, train, val, _config(seed=1), str(tmp_path / "c")).fit()
    assert not torch.equal(_state(model)["mlp.0.weight"], states[0]["mlp.0.weight"])


def test_interrupted_run_resumes_without_losing_progress(tmp_path, methane_small):
    train, val = methane_small
    full = _model(seed=0)
    full_history = Trainer(full, train, val, _config(epochs=4), str(tmp_path / "full")).fit()

    first = _model(seed=0)
    Trainer(first, train, val, _config(epochs=2), str(tmp_path / "cut")).fit()
    # a fresh process: new (differently initialised) model, resume from last.pt
    resumed = _model(seed=123)
    trainer = Trainer(resumed, train, val, _config(epochs=4), str(tmp_path / "cut"),
                      resume=True)
    assert trainer.epoch == 2
    history = trainer.fit()
    _assert_same_state(_state(resumed), _state(full))
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in history]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in full_history]
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 4

    with pytest.raises(ValueError, match=r"configuration differs in \['lr'\]"):
        Trainer(_model(), train, val, _config(epochs=4, lr=1.0), str(tmp_path / "cut"),
                resume=True)


def test_generic_per_structure_target(tmp_path):
    torch.manual_seed(0)
    data = []
    for _ in range(24):
        pos = torch.randn(3, 3)
        spread = (pos - pos.mean(0)).norm(dim=-1).sum().view(1, 1)
        data.append(Data(z=torch.tensor([6, 1, 1]), pos=pos, y=spread))
    model = _model()
    config = _config(epochs=4, energy_key=None, forces_key=None, target_key="y")
    trainer = Trainer(model, data[:16], data[16:], config, str(tmp_path))
    assert torch.equal(model.self_energies, torch.zeros_like(model.self_energies))
    before = trainer.validate()["target_mae"]
    trainer.fit()
    assert trainer.validate()["target_mae"] < before


def test_energy_only_training(tmp_path, methane_small):
    train, val = methane_small
    trainer = Trainer(_model(), train, val, _config(forces_key=None), str(tmp_path))
    history = trainer.fit()
    assert "val_forces_mae" not in history[-1] and "val_energy_mae_per_atom" in history[-1]


def test_bad_configurations_fail_clearly(tmp_path, methane_small):
    train, val = methane_small
    with pytest.raises(ValueError, match="must both be non-empty"):
        Trainer(_model(), train, [], _config(), str(tmp_path))
    with pytest.raises(ValueError, match="with target_key=... set forces_key=None"):
        Trainer(_model(), train, val, _config(target_key="y"), str(tmp_path))
    with pytest.raises(ValueError, match="set energy_key"):
        Trainer(_model(), train, val, _config(energy_key=None, forces_key=None), str(tmp_path))
    with pytest.raises(ValueError, match=r"atomic numbers \[6\] are not among"):
        Trainer(_model(species=(1, 8)), train, val, _config(), str(tmp_path))


def test_pet_training_is_reproducible_and_resumes_exactly(tmp_path, methane_small):
    from torch_pet import PET

    train, val = methane_small[0][:8], methane_small[1][:4]

    def pet():
        torch.manual_seed(0)
        return PET(species=[1, 6], hidden_channels=8, num_heads=2, num_layers=1, num_blocks=2,
                   ff_channels=16, head_channels=8)

    config = _config(epochs=2, batch_size=4)
    straight = pet()
    Trainer(straight, train, val, config, str(tmp_path / "a")).fit()
    again = pet()
    Trainer(again, train, val, config, str(tmp_path / "b")).fit()
    _assert_same_state(_state(straight), _state(again))

    first = pet()
    Trainer(first, train, val, _config(epochs=1, batch_size=4), str(tmp_path / "c")).fit()
    resumed = pet()
    Trainer(resumed, train, val, config, str(tmp_path / "c"), resume=True).fit()
    _assert_same_state(_state(resumed), _state(straight))
