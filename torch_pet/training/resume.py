"""Resuming a Trainer from a checkpoint it wrote (``last.pt``): which settings may change,
and restoring model, optimizer, scheduler and the trainer's own state."""
from dataclasses import fields

import torch

__all__ = ["RESUMABLE_CHANGES", "restore_trainer"]

# TrainingConfig fields that may differ when a run is resumed (they do not change results,
# or only where the run ends).
RESUMABLE_CHANGES = ("epochs", "progress", "plot", "device", "budget_s", "budget_clock",
                     "checkpoints", "num_workers")


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value


def restore_trainer(trainer, record: dict, path: str) -> None:
    """Put ``trainer`` where the checkpoint ``record`` (read from ``path``) left it; a
    training configuration that differs in more than :data:`RESUMABLE_CHANGES` raises."""
    state = record["trainer"]
    if state is None:
        raise ValueError(f"{path} holds no trainer state; it cannot be resumed")
    saved = state["config"]
    changed = [f.name for f in fields(trainer.config) if f.name not in RESUMABLE_CHANGES
               and _comparable(saved.get(f.name, f.default))
               != _comparable(getattr(trainer.config, f.name))]
    if changed:
        raise ValueError(f"cannot resume {path}: its training configuration differs in "
                         f"{changed}; use the same settings (only epochs may change) or "
                         "a new out_dir")
    trainer.model.load_state_dict(record["model"]["state_dict"])
    trainer.optimizer.load_state_dict(record["optimizer"])
    trainer.scheduler.load_state_dict(record["scheduler"])
    trainer.epoch = state["epoch"]
    trainer.step = state.get("step", trainer.epoch * trainer.steps_per_epoch)
    trainer.structures_seen = state.get("structures_seen",
                                        trainer.epoch * len(trainer.train_set))
    trainer.sigma, trainer.sigma0 = dict(state["sigma"]), dict(state["sigma0"])
    trainer.best_score, trainer.best_epoch = state["best_score"], state["best_epoch"]
    trainer.history = list(state["history"])
    torch.set_rng_state(state["torch_rng_state"])
