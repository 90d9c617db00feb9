"""Training loop for PET-style models on energies + forces, or on any per-structure target.

Loss (PET's recipe, arXiv:2305.19302):

.. math::
    L = w_E \\frac{\\mathrm{MSE}(E)}{\\sigma_E^2} + w_F \\frac{\\mathrm{MSE}(F)}{\\sigma_F^2},
    \\qquad w_E = 0.1,\\ w_F = 1.

The normalisers sigma are running estimates of the validation RMSE: they start at the RMS of
the training targets (the RMSE of a model predicting zero residual energy and zero forces)
and after every validation become ``m * sigma + (1 - m) * RMSE_val`` (``m =
sigma_momentum``, 0.7). The "best" checkpoint is chosen with the *initial* sigma, so the
scores of different epochs are comparable. With ``target_key`` set instead of energies, the
loss is ``MSE(y) / sigma_y^2`` on that per-structure scalar or vector target.

Per-species self energies are fitted by least squares on the training split and stored in
the model's ``self_energies`` buffer, so that ``model(data)`` is the total energy and the
network learns the remainder. Every step rotates each structure by its own random O(3)
element (``augment.py``). Adam, linear warm-up then step decay of the learning rate (per
optimizer step), gradient-norm clipping, validation every epoch, ``last.pt`` / ``best.pt``
checkpoints, ``metrics.jsonl`` (every epoch) and ``learning_curve.png`` (every 10 epochs and
at the end) in ``out_dir``.

When to stop is a pluggable rule (``stop=``, :mod:`torch_pet.training.stop`): by default
``config.epochs`` epochs and, with ``config.budget_s``, a wall-clock or CPU-time budget
(benchmarks train to equal budgets). Without a validation set (``val_set=None``) nothing is
validated, sigma stays at its initial value and only ``last.pt`` is written.

Determinism and resume: the shuffling and the rotations of epoch k come from generators
seeded with (seed, k), so a CPU run is reproduced exactly by the same seed, and a run
resumed from ``last.pt`` (written after every epoch) continues exactly as if it had not
been interrupted; only the unfinished epoch is repeated.
"""
import json
import math
import os
import time
from dataclasses import fields
from typing import List, Optional

import torch
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from torch_pet.checkpoint import load_checkpoint, save_checkpoint
from torch_pet.outputs import ENERGY, FORCES, OutputKind
from torch_pet.config import resolve_device
from torch_pet.plots import plot_learning_curve
from torch_pet.training.augment import augment_batch
from torch_pet.training.config import TrainingConfig, learning_rate_factor
from torch_pet.training.self_energies import fit_self_energies, species_counts
from torch_pet.training.stop import StopRule, stop_rule

__all__ = ["Trainer", "TrainingConfig", "plot_learning_curve"]

# TrainingConfig fields that may differ when a run is resumed.
_RESUMABLE_CHANGES = ("epochs", "progress", "plot", "device", "budget_s", "budget_clock",
                      "checkpoints")


def _trained_outputs(cfg: "TrainingConfig") -> dict:
    """``{name: (data key, OutputKind)}`` of what the loss compares: the energy (and the
    forces), or the per-structure target (a vector if ``target_is_vector``)."""
    if cfg.target_key is not None:
        kind = OutputKind.VECTOR if cfg.target_is_vector else OutputKind.SCALAR
        return {"target": (cfg.target_key, kind)}
    outputs = {"energy": (cfg.energy_key, ENERGY)}
    if cfg.forces_key is not None:
        outputs["forces"] = (cfg.forces_key, FORCES)
    return outputs


def _seeded(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 4 + stream)


class Trainer:
    """Train ``model`` on ``train_set``, validating on ``val_set`` after every epoch.

    Args:
        model: a module with ``model(data) -> [B, C]`` and, for energies, a
            ``self_energies`` buffer [num_species, C] and a ``species`` list (PET).
        train_set, val_set: PyG datasets (or lists of ``Data``); ``val_set=None``: no
            validation.
        config: :class:`~torch_pet.training.config.TrainingConfig` (checked on construction).
        out_dir: where checkpoints, ``metrics.jsonl`` and the plot go.
        resume: continue from ``out_dir/last.pt`` when it exists.
        aux_model: an already trained auxiliary model stored alongside in checkpoints.
        metadata: extra information stored in checkpoints.
        device: overrides ``config.device``.
        stop: a :class:`~torch_pet.training.stop.StopRule` (default: from the config).
    """

    def __init__(self, model, train_set, val_set=None, config: Optional[TrainingConfig] = None,
                 out_dir: str = "runs/train", *, resume: bool = False, aux_model=None,
                 metadata: Optional[dict] = None, device=None,
                 stop: Optional[StopRule] = None):
        if config is not None and not isinstance(config, TrainingConfig):
            raise TypeError(f"Trainer: config must be a TrainingConfig, got "
                            f"{type(config).__name__}")
        self.config = config or TrainingConfig()
        cfg = self.config
        if len(train_set) == 0 or (val_set is not None and len(val_set) == 0):
            raise ValueError("Trainer: the training and the validation set must both be "
                             "non-empty (val_set=None: no validation)")
        self.outputs = _trained_outputs(cfg)  # {name: (data key, OutputKind)}
        self.device = resolve_device(cfg.device if device is None else device)
        self.stop = stop_rule(cfg) if stop is None else stop
        self.model = model.to(self.device)
        self.dtype = next(model.parameters()).dtype
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = out_dir
        self.aux_model = aux_model
        self.metadata = metadata or {}
        os.makedirs(out_dir, exist_ok=True)

        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
        self.epoch = self.step = self.structures_seen = 0

        def schedule(step):
            return learning_rate_factor(cfg, step, self.steps_per_epoch, self.stop.fraction(self))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.history: List[dict] = []
        self.best_score = math.inf
        self.best_epoch = None

        last = os.path.join(out_dir, "last.pt")
        if resume and os.path.exists(last):
            self._restore(last)
        else:
            if cfg.target_key is None and cfg.fit_self_energies:
                fitted = fit_self_energies(train_set, model.species, cfg.energy_key)
                with torch.no_grad():
                    model.self_energies.copy_(fitted.to(model.self_energies))
            self.sigma0 = self._target_rms()
            self.sigma = dict(self.sigma0)

    # ----------------------------------------------------------------- data helpers
    def _to_device(self, batch):
        batch = batch.to(self.device)
        for key, value in batch.items():
            if torch.is_tensor(value) and value.is_floating_point():
                batch[key] = value.to(self.dtype)
        return batch

    def _loader(self, dataset, shuffle: bool, epoch: int = 0):
        generator = _seeded(self.config.seed, epoch, 0) if shuffle else None
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=shuffle,
                          generator=generator)

    @torch.no_grad()
    def _target_rms(self) -> dict:
        """RMS of the residual targets on the training set: the initial sigma."""
        sums, counts = {}, {}
        for batch in self._loader(self.train_set, shuffle=False):
            batch = self._to_device(batch)
            for name, residual in self._residual_targets(batch).items():
                sums[name] = sums.get(name, 0.0) + float(residual.double().pow(2).sum())
                counts[name] = counts.get(name, 0) + residual.numel()
        return {name: max(math.sqrt(sums[name] / counts[name]), 1e-12) for name in sums}

    def _self_energy_sum(self, batch) -> torch.Tensor:
        counts = species_counts(batch.z.cpu(), batch.batch.cpu(), batch.num_graphs,
                                self.model.species)
        return (counts @ self.model.self_energies.detach().double().cpu()).to(
            self.device).squeeze(-1)

    def _residual_targets(self, batch) -> dict:
        cfg = self.config
        if cfg.target_key is not None:
            return {"target": batch[cfg.target_key].reshape(batch.num_graphs, -1)}
        out = {"energy": batch[cfg.energy_key].double() - self._self_energy_sum(batch)}
        if cfg.forces_key is not None:
            out["forces"] = batch[cfg.forces_key]
        return out

    # ----------------------------------------------------------------- prediction
    def _predict(self, batch, training: bool) -> dict:
        cfg = self.config
        if cfg.target_key is not None:
            return {"target": self.model(batch).reshape(batch.num_graphs, -1)}
        if cfg.forces_key is None:
            return {"energy": self.model(batch).reshape(batch.num_graphs)}
        from torch_pet.nn.derivatives import energy_and_forces

        with torch.enable_grad():
            out = energy_and_forces(self.model, batch, create_graph=training)
        return {"energy": out["energy"].reshape(batch.num_graphs), "forces": out["forces"]}

    def _errors(self, batch, pred) -> dict:
        return {name: kind.error(pred[name], batch[key])
                for name, (key, kind) in self.outputs.items()}

    def _loss(self, errors: dict, sigma: dict) -> torch.Tensor:
        cfg = self.config
        weights = {"energy": cfg.energy_weight, "forces": cfg.forces_weight, "target": 1.0}
        return sum(weights[name] * err.pow(2).mean() / sigma[name] ** 2
                   for name, err in errors.items())

    # ----------------------------------------------------------------- loops
    def train_epoch(self) -> dict:
        cfg = self.config
        self.model.train()
        rotations = _seeded(cfg.seed, self.epoch, 1)
        total, seen, sq, n = 0.0, 0, {}, {}
        bar = tqdm(self._loader(self.train_set, shuffle=True, epoch=self.epoch),
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not cfg.progress, total=self.steps_per_epoch)
        for batch in bar:
            if self.stop.stop_step(self):
                break
            batch = self._to_device(batch)
            if cfg.augment:
                batch = augment_batch(batch, rotations, labels=dict(self.outputs.values()))
            errors = self._errors(batch, self._predict(batch, training=True))
            loss = self._loss(errors, self.sigma)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss at epoch {self.epoch + 1}; lower the learning "
                    "rate or check the data for outliers")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            self.structures_seen += batch.num_graphs
            self.scheduler.step()
            total += float(loss.detach()) * batch.num_graphs
            seen += batch.num_graphs
            for name, err in errors.items():
                sq[name] = sq.get(name, 0.0) + float(err.detach().double().pow(2).sum())
                n[name] = n.get(name, 0) + err.numel()
            bar.set_postfix({"loss": f"{float(loss.detach()):.3g}",
                             **{f"{k}_rmse": f"{math.sqrt(sq[k] / n[k]):.3g}" for k in sq}},
                            refresh=False)
        bar.close()
        if seen == 0:  # stopped before this epoch's first step
            return None
        out = {"train_loss": total / seen, "train_structures": seen}
        out.update({f"train_{k}_rmse": math.sqrt(sq[k] / n[k]) for k in sq})
        return out

    def validate(self, dataset=None) -> dict:
        """MAE/RMSE on ``dataset`` (default: the validation set); energies also per atom."""
        self.model.eval()
        sums = {}

        def add(name, value):
            sums[name] = sums.get(name, 0.0) + value

        for batch in self._loader(dataset if dataset is not None else self.val_set, False):
            batch = self._to_device(batch)
            errors = {k: v.detach().double() for k, v in
                      self._errors(batch, self._predict(batch, training=False)).items()}
            for name, err in errors.items():
                add(f"{name}_abs", float(err.abs().sum()))
                add(f"{name}_sq", float(err.pow(2).sum()))
                add(f"{name}_n", err.numel())
            if "energy" in errors:
                atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).double()
                add("energy_atom_abs", float((errors["energy"] / atoms).abs().sum()))
                add("energy_atom_sq", float((errors["energy"] / atoms).pow(2).sum()))
        out = {}
        for name in self.outputs:
            if f"{name}_n" in sums:
                count = sums[f"{name}_n"]
                out[f"{name}_mae"] = sums[f"{name}_abs"] / count
                out[f"{name}_rmse"] = math.sqrt(sums[f"{name}_sq"] / count)
        if "energy_n" in sums:
            out["energy_mae_per_atom"] = sums["energy_atom_abs"] / sums["energy_n"]
            out["energy_rmse_per_atom"] = math.sqrt(sums["energy_atom_sq"] / sums["energy_n"])
        return out

    def fit(self) -> List[dict]:
        """Train until the stop rule says so; returns the metrics history (one record per
        epoch; the last one may cover a partial epoch when a time budget ran out)."""
        cfg = self.config
        self.stop.start(self)
        while not self.stop.done(self):
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_epoch()
            if train is None:
                break
            record = {"epoch": self.epoch + 1, "lr": lr, **train}
            improved = False
            if self.val_set is not None:
                val = self.validate()
                record.update({f"val_{k}": v for k, v in val.items()})
                score = sum({"energy": cfg.energy_weight, "forces": cfg.forces_weight,
                             "target": 1.0}[name] * val[f"{name}_rmse"] ** 2
                            / self.sigma0[name] ** 2 for name in self.sigma0)
                record["val_score"] = score
                for name in self.sigma:
                    self.sigma[name] = (cfg.sigma_momentum * self.sigma[name]
                                        + (1 - cfg.sigma_momentum) * val[f"{name}_rmse"])
                    record[f"sigma_{name}"] = self.sigma[name]
                improved = score < self.best_score
            record.update(time_s=time.perf_counter() - start, steps=self.step,
                          structures_seen=self.structures_seen)
            self.epoch += 1
            self.history.append(record)
            if improved:
                self.best_score, self.best_epoch = record["val_score"], self.epoch
            if cfg.checkpoints:
                self._save(os.path.join(self.out_dir, "last.pt"))
                if improved:
                    self._save(os.path.join(self.out_dir, "best.pt"))
            final = self.stop.done(self)
            self._write_log(plot=self.epoch % 10 == 0 or final)
            if cfg.progress:
                tqdm.write(_summary(record))
        if self.history and self.history[-1]["epoch"] % 10 and not self.stop.done(self):
            self._write_log()  # a budget ended the run inside an epoch: draw the final curve
        return self.history

    # ----------------------------------------------------------------- state
    def state(self) -> dict:
        return {
            "epoch": self.epoch, "step": self.step, "structures_seen": self.structures_seen,
            "config": self.config.to_dict(), "sigma": dict(self.sigma),
            "sigma0": dict(self.sigma0), "best_score": self.best_score,
            "best_epoch": self.best_epoch, "history": list(self.history),
            "torch_rng_state": torch.get_rng_state(),
        }

    def _save(self, path: str) -> None:
        save_checkpoint(path, self.model, aux_model=self.aux_model, optimizer=self.optimizer,
                        scheduler=self.scheduler, trainer=self.state(),
                        metadata=self.metadata)

    def _restore(self, path: str) -> None:
        record = load_checkpoint(path)
        state = record["trainer"]
        if state is None:
            raise ValueError(f"{path} holds no trainer state; it cannot be resumed")
        saved = state["config"]
        changed = [f.name for f in fields(self.config) if f.name not in _RESUMABLE_CHANGES
                   and _comparable(saved.get(f.name, f.default))
                   != _comparable(getattr(self.config, f.name))]
        if changed:
            raise ValueError(f"cannot resume {path}: its training configuration differs in "
                             f"{changed}; use the same settings (only epochs may change) or "
                             "a new out_dir")
        self.model.load_state_dict(record["model"]["state_dict"])
        self.optimizer.load_state_dict(record["optimizer"])
        self.scheduler.load_state_dict(record["scheduler"])
        self.epoch = state["epoch"]
        self.step = state.get("step", self.epoch * self.steps_per_epoch)
        self.structures_seen = state.get("structures_seen", self.epoch * len(self.train_set))
        self.sigma, self.sigma0 = dict(state["sigma"]), dict(state["sigma0"])
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.history = list(state["history"])
        torch.set_rng_state(state["torch_rng_state"])
        self._write_log()

    def _write_log(self, plot: bool = True) -> None:
        """Rewrite metrics.jsonl; redraw the learning curve (every 10 epochs and at the end)."""
        with open(os.path.join(self.out_dir, "metrics.jsonl"), "w") as f:
            for record in self.history:
                f.write(json.dumps(record) + "\n")
        if plot and self.config.plot and self.history:
            plot_learning_curve(self.history, os.path.join(self.out_dir, "learning_curve.png"))


def _comparable(value):
    return list(value) if isinstance(value, tuple) else value


def _summary(record: dict) -> str:
    parts = [f"epoch {record['epoch']:4d}", f"lr {record['lr']:.2e}",
             f"loss {record['train_loss']:.4g}"]
    if "val_energy_mae_per_atom" in record:
        parts.append(f"val E MAE {1000 * record['val_energy_mae_per_atom']:.2f} meV/atom")
    if "val_forces_mae" in record:
        parts.append(f"val F MAE {1000 * record['val_forces_mae']:.1f} meV/A")
    if "val_target_mae" in record:
        parts.append(f"val MAE {record['val_target_mae']:.4g}")
    parts.append(f"{record['time_s']:.1f} s")
    return " | ".join(parts)

