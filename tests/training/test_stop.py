"""Stop rules of the Trainer: epochs, time budgets (wall / CPU), no validation set."""
import json
import os

import pytest
import torch
from toy_potential import ToyPotential

from torch_pet.training import Trainer, TrainingConfig
from torch_pet.training.stop import FirstOf, MaxEpochs, TimeBudget, stop_rule


class StepClock(TimeBudget):
    """A budget whose clock reads one 'second' per finished optimizer step (deterministic)."""

    def spent(self, trainer=None) -> float:
        return float(trainer.step) if trainer is not None else 0.0


def _config(**overrides):
    base = dict(epochs=100, batch_size=8, lr=3e-3, progress=False, plot=False)
    base.update(overrides)
    return TrainingConfig(**base)


def _model():
    torch.manual_seed(0)
    return ToyPotential()


def test_budget_stops_inside_an_epoch(tmp_path, methane_small):
    train, val = methane_small  # 24 structures, batch 8: 3 steps per epoch
    trainer = Trainer(_model(), train, val, _config(), str(tmp_path), stop=StepClock(5))
    history = trainer.fit()
    assert trainer.step == 5 and trainer.structures_seen == 40
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["train_structures"] == 16 and "val_forces_mae" in history[-1]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["steps"] for line in lines] == [3, 5]


def test_epochs_cap_a_budget_and_the_cosine_schedule_follows_the_run(tmp_path, methane_small):
    train, val = methane_small
    config = _config(epochs=2, schedule="cosine", warmup_fraction=0.5)
    trainer = Trainer(_model(), train, val, config, str(tmp_path),
                      stop=FirstOf([MaxEpochs(2), StepClock(1000)]))
    lrs = []
    for _ in range(6):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.step += 1
        trainer.scheduler.step()
    # fraction = step / 6 (MaxEpochs): warm-up over half the run, then cosine to 0
    expected = [3e-3 * (s / 6 + 1e-3) / 0.5 for s in range(3)] + \
        [3e-3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * (s / 6 - 0.5) / 0.5)).item())
         for s in range(3, 6)]
    assert lrs == pytest.approx(expected)
    trainer.step = 0
    trainer.fit()
    assert trainer.epoch == 2 and trainer.step == 6


def test_cpu_budget_from_the_config_ends_the_run(tmp_path, methane_small):
    train, _ = methane_small
    config = _config(budget_s=0.5, budget_clock="cpu", checkpoints=False)
    trainer = Trainer(_model(), train, None, config, str(tmp_path))
    assert repr(trainer.stop) == "FirstOf([MaxEpochs(100), TimeBudget(0.5, clock='cpu')])"
    history = trainer.fit()
    assert 1 <= trainer.step < 100 * trainer.steps_per_epoch
    assert trainer.stop.rules[1].elapsed(trainer)["cpu_s"] >= 0.5
    # no validation set: no validation metrics, no checkpoints (checkpoints=False)
    assert not any(key.startswith("val_") for key in history[-1])
    assert not os.path.exists(tmp_path / "last.pt") and not os.path.exists(tmp_path / "best.pt")
    assert trainer.sigma == trainer.sigma0


def test_stop_rules_check_their_arguments():
    assert repr(stop_rule(TrainingConfig(epochs=3))) == "MaxEpochs(3)"
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        MaxEpochs(0)
    with pytest.raises(ValueError, match="seconds must be positive and finite"):
        TimeBudget(float("inf"))
    with pytest.raises(ValueError, match="clock must be one of"):
        TimeBudget(1.0, clock="gpu")
    with pytest.raises(TypeError, match="config must be a TrainingConfig"):
        Trainer(_model(), [1], None, {"epochs": 1})
