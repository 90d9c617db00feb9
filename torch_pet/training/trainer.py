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
network learns the remainder; a model's ``output_scale`` is then fitted so that its
outputs start at the targets' scale (``output_scale.py``). Every step rotates each
structure by its own random O(3) element (``augment.py``). Adam (fused), linear warm-up
then step decay or cosine decay of the learning rate (per optimizer step), gradient-norm
clipping, validation every epoch, ``last.pt`` / ``best.pt``
checkpoints, ``metrics.jsonl`` (every epoch) and ``learning_curve.png`` (every 10 epochs and
at the end) in ``out_dir``.

When to stop is a pluggable rule (``stop=``, :mod:`torch_pet.training.stop`): by default
``config.epochs`` epochs and, with ``config.budget_s``, a wall-clock or CPU-time budget
(benchmarks train to equal budgets). Without a validation set (``val_set=None``) nothing is
validated, sigma stays at its initial value and only ``last.pt`` is written.

Determinism and resume: the shuffling of epoch k comes from a generator seeded with (seed,
k) and the rotations of its step j from one seeded with (seed, k, j), so a CPU run is
reproduced exactly by the same seed, and a run resumed from ``last.pt`` (written after every
epoch) continues exactly as if it had not been interrupted; only the unfinished epoch is
repeated.

Several processes (``torchrun``/``srun``; docs/distributed.md): each trains on its part of
every global batch (:mod:`~torch_pet.training.sampling`) through DistributedDataParallel,
its loss being its share of the global batch's (squared errors summed over the global
counts) and its rotations its rows of the global batch's, so N processes with
``batch_size`` b follow one with N*b to round-off. Self energies are fitted on rank 0 and
broadcast; sigma and all metrics are all-reduced sums over shards; stop decisions are
taken together; checkpoints, logs, plots and progress bars come from rank 0.
"""
import json
import math
import os
import time
from typing import List, Optional

import torch
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from torch_pet.backbone import backbone_info
from torch_pet.checkpoint import load_checkpoint, save_checkpoint
from torch_pet.config import resolve_device
from torch_pet.plots import plot_learning_curve
from torch_pet.training import distributed as ddp
from torch_pet.training.augment import augment_batch
from torch_pet.training.output_scale import fit_output_scale
from torch_pet.training.resume import restore_trainer
from torch_pet.training.config import TrainingConfig, learning_rate_factor
from torch_pet.training.sampling import Batching, seeded_generator
from torch_pet.training.self_energies import fit_self_energies, species_counts
from torch_pet.training.stop import StopRule, stop_rule
from torch_pet.training.targets import loss_weight, summary_line, trained_outputs

__all__ = ["Trainer", "TrainingConfig", "plot_learning_curve"]



class Trainer:
    """Train ``model`` on ``train_set``, validating on ``val_set`` after every epoch.

    Args:
        model: a backbone (:mod:`torch_pet.backbone`): ``model(data) -> [B, C]`` and, for
            energies, a ``self_energies`` buffer [num_species, C] and a ``species`` list.
        train_set, val_set: PyG datasets (or lists of ``Data``); ``val_set=None``: no
            validation.
        config: :class:`~torch_pet.training.config.TrainingConfig` (checked on construction).
        out_dir: where checkpoints, ``metrics.jsonl`` and the plot go.
        resume: continue from ``out_dir/last.pt`` when it exists.
        aux_model: an already trained auxiliary model stored alongside in checkpoints.
        metadata: extra information stored in checkpoints.
        device: overrides ``config.device``.
        stop: a :class:`~torch_pet.training.stop.StopRule` (default: from the config).
        world: the :class:`~torch_pet.training.distributed.World` of this process (default:
            that of the initialised process group, or one process).
    """

    def __init__(self, model, train_set, val_set=None, config: Optional[TrainingConfig] = None,
                 out_dir: str = "runs/train", *, resume: bool = False, aux_model=None,
                 metadata: Optional[dict] = None, device=None,
                 stop: Optional[StopRule] = None, world: Optional[ddp.World] = None):
        if config is not None and not isinstance(config, TrainingConfig):
            raise TypeError(f"Trainer: config must be a TrainingConfig, got "
                            f"{type(config).__name__}")
        self.config = config or TrainingConfig()
        cfg = self.config
        if len(train_set) == 0 or (val_set is not None and len(val_set) == 0):
            raise ValueError("Trainer: the training and the validation set must both be "
                             "non-empty (val_set=None: no validation)")
        self.world = ddp.current_world() if world is None else world
        if self.world.distributed and ddp.current_world().world_size != self.world.world_size:
            raise ValueError(f"Trainer: world has {self.world.world_size} processes but no "
                             "matching process group is initialised; train inside "
                             "torch_pet.training.distributed.process_group(world, device)")
        self.outputs = trained_outputs(cfg)  # {name: (data key, OutputKind)}
        self.device = resolve_device(cfg.device if device is None else device)
        self.stop = stop_rule(cfg) if stop is None else stop
        self.model = self.net = model.to(self.device)  # net: DDP-wrapped under several ranks
        self.dtype = next(model.parameters()).dtype
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = out_dir
        self.aux_model = aux_model
        self.metadata = metadata or {}
        os.makedirs(out_dir, exist_ok=True)

        self.batching = Batching(cfg.batch_size, cfg.max_atoms_per_batch, rank=self.world.rank,
                                 world_size=self.world.world_size, seed=cfg.seed,
                                 num_workers=cfg.num_workers)
        self.optimizer = torch.optim.Adam(  # fused: one kernel for all parameters (~7x)
            self.model.parameters(), lr=cfg.lr, fused=self.device.type in ("cpu", "cuda"))
        self.steps_per_epoch = len(self.batching.epoch(train_set, 0))
        self.epoch = self.step = self.structures_seen = 0

        def schedule(step):
            fraction = self._fraction() if cfg.schedule == "cosine" else 0.0
            return learning_rate_factor(cfg, step, self.steps_per_epoch, fraction)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.history: List[dict] = []
        self.best_score = math.inf
        self.best_epoch = None

        if cfg.target_key is None:  # energies are trained as residuals of self energies
            backbone_info(model).require("species", "self_energies",
                                         by="Trainer (energy targets)")
        last = os.path.join(out_dir, "last.pt")
        if resume and os.path.exists(last):
            self._restore(last)
        else:
            if cfg.target_key is None and cfg.fit_self_energies:
                if self.world.is_main:
                    fitted = fit_self_energies(train_set, backbone_info(model).species,
                                               cfg.energy_key)
                    with torch.no_grad():
                        model.self_energies.copy_(fitted.to(model.self_energies))
                if self.world.distributed:
                    ddp.broadcast_(model.self_energies, self.device)
            self.sigma0 = self._target_rms()
            self.sigma = dict(self.sigma0)
            fit_output_scale(self)  # the model's output_scale, if it has one
        if self.world.distributed:
            self.net = ddp.wrap_model(self.model, self.device, bool(self._unused_parameters()))

    # ----------------------------------------------------------------- data helpers
    def _to_device(self, batch):
        batch = batch.to(self.device)
        for key, value in batch.items():
            if torch.is_tensor(value) and value.is_floating_point():
                batch[key] = value.to(self.dtype)
        return batch

    def _sum(self, values: List[float]) -> List[float]:
        return ddp.all_reduce_sum(values, self.device) if self.world.distributed else values

    def _agreed(self, flag: bool) -> bool:
        return ddp.agree(flag, self.device) if self.world.distributed else flag

    def _fraction(self) -> float:
        """The stop rule's fraction of the run done, rank 0's on every rank."""
        fraction = self.stop.fraction(self)
        if self.world.distributed:
            fraction = self._sum([fraction if self.world.is_main else 0.0])[0]
        return fraction

    def _done(self) -> bool:
        return self._agreed(self.stop.done(self))

    @torch.no_grad()
    def _target_rms(self) -> dict:
        """RMS of the residual targets on the training set: the initial sigma."""
        names = list(self.outputs)
        sums = [0.0] * (2 * len(names))
        for batch in self.batching.shard_loader(self.train_set):
            batch = self._to_device(batch)
            residuals = self._residual_targets(batch)
            for i, name in enumerate(names):
                sums[2 * i] += float(residuals[name].double().pow(2).sum())
                sums[2 * i + 1] += residuals[name].numel()
        sums = self._sum(sums)
        return {name: max(math.sqrt(sums[2 * i] / sums[2 * i + 1]), 1e-12)
                for i, name in enumerate(names)}

    def _self_energy_sum(self, batch) -> torch.Tensor:
        info = backbone_info(self.model)
        counts = species_counts(batch.z, batch.batch, batch.num_graphs, info.species)
        energies = info.self_energies.detach().double().to(counts.device)
        return (counts @ energies).to(self.device).squeeze(-1)

    def _residual_targets(self, batch) -> dict:
        cfg = self.config
        if cfg.target_key is not None:
            return {"target": batch[cfg.target_key].reshape(batch.num_graphs, -1)}
        out = {"energy": batch[cfg.energy_key].double() - self._self_energy_sum(batch)}
        if cfg.forces_key is not None:
            out["forces"] = batch[cfg.forces_key]
        return out

    # ----------------------------------------------------------------- prediction
    def _predict(self, model, batch, training: bool) -> dict:
        cfg = self.config
        if cfg.target_key is not None:
            return {"target": model(batch).reshape(batch.num_graphs, -1)}
        if cfg.forces_key is None:
            return {"energy": model(batch).reshape(batch.num_graphs)}
        from torch_pet.nn.derivatives import energy_and_forces

        with torch.enable_grad():
            out = energy_and_forces(model, batch, create_graph=training)
        return {"energy": out["energy"].reshape(batch.num_graphs), "forces": out["forces"]}

    def _errors(self, batch, pred) -> dict:
        return {name: kind.error(pred[name], batch[key])
                for name, (key, kind) in self.outputs.items()}

    def _loss(self, errors: dict, sigma: dict, counts: dict) -> torch.Tensor:
        """Sum over outputs of w * (sum of squared errors) / count / sigma^2: with the
        global ``counts`` of a step, this rank's share of the global batch's loss."""
        return sum(loss_weight(self.config, name) * err.pow(2).sum() / counts[name]
                   / sigma[name] ** 2 for name, err in errors.items())

    def _unused_parameters(self) -> List[str]:
        """Parameters that take no part in the loss of one training structure (DDP needs
        ``find_unused_parameters`` for them)."""
        batch = self._to_device(Batch.from_data_list([self.train_set[0]]))
        errors = self._errors(batch, self._predict(self.model, batch, training=True))
        loss = self._loss(errors, self.sigma, {k: e.numel() for k, e in errors.items()})
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        return [n for (n, _), g in zip(named, grads) if g is None]

    # ----------------------------------------------------------------- loops
    def train_epoch(self) -> dict:
        cfg, world = self.config, self.world
        self.model.train()
        steps = self.batching.epoch(self.train_set, self.epoch)
        names = list(self.outputs)
        total, seen, sq = 0.0, 0, [0.0] * (2 * len(names))  # sq: sum of squares, count
        bar = tqdm(self.batching.loader(self.train_set, steps),
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and world.is_main), total=len(steps))
        for k, batch in enumerate(bar):
            real = bool(steps[k][world.rank])  # False: a weight-0 stand-in
            batch = self._to_device(batch)
            local = [float(real) * batch[key].numel() for key, _ in self.outputs.values()]
            stop, *counts = self._sum([float(self.stop.stop_step(self))] + local)
            if stop:
                break
            global_structures = sum(len(b) for b in steps[k])
            if cfg.augment and real:
                offset = sum(len(b) for b in steps[k][:world.rank])
                batch = augment_batch(batch, seeded_generator(cfg.seed, self.epoch, k, 1),
                                      labels=dict(self.outputs.values()),
                                      draws=global_structures, offset=offset)
            errors = self._errors(batch, self._predict(self.net, batch, training=True))
            loss = self._loss(errors, self.sigma, dict(zip(names, counts)))
            if not real:
                loss = loss * 0.0
            global_loss = self._sum([float(loss.detach())])[0]
            if not math.isfinite(global_loss):
                raise FloatingPointError(
                    f"non-finite training loss at epoch {self.epoch + 1}; lower the learning "
                    "rate or check the data for outliers")
            self.optimizer.zero_grad(set_to_none=True)
            (loss * world.world_size).backward()  # DDP averages the gradients over ranks
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            self.structures_seen += global_structures
            self.scheduler.step()
            total += global_loss * global_structures
            seen += global_structures
            for i, err in enumerate(errors.values()):
                if real:
                    sq[2 * i] += float(err.detach().double().pow(2).sum())
                    sq[2 * i + 1] += err.numel()
            bar.set_postfix({"loss": f"{global_loss:.3g}", **{
                f"{name}_rmse": f"{math.sqrt(sq[2 * i] / max(sq[2 * i + 1], 1)):.3g}"
                for i, name in enumerate(names)}}, refresh=False)
        bar.close()
        if seen == 0:  # stopped before this epoch's first step
            return None
        sq = self._sum(sq)
        out = {"train_loss": total / seen, "train_structures": seen}
        out.update({f"train_{name}_rmse": math.sqrt(sq[2 * i] / sq[2 * i + 1])
                    for i, name in enumerate(names)})
        return out

    def validate(self, dataset=None) -> dict:
        """MAE/RMSE on ``dataset`` (default: the validation set); energies also per atom.
        Under several processes each evaluates its shard; the sums are all-reduced."""
        self.model.eval()
        keys = [f"{name}_{s}" for name in self.outputs for s in ("abs", "sq", "n")]
        if "energy" in self.outputs:
            keys += ["energy_atom_abs", "energy_atom_sq"]
        sums = dict.fromkeys(keys, 0.0)
        for batch in self.batching.shard_loader(dataset if dataset is not None else self.val_set):
            batch = self._to_device(batch)
            errors = {k: v.detach().double() for k, v in
                      self._errors(batch, self._predict(self.model, batch, False)).items()}
            for name, err in errors.items():
                sums[f"{name}_abs"] += float(err.abs().sum())
                sums[f"{name}_sq"] += float(err.pow(2).sum())
                sums[f"{name}_n"] += err.numel()
            if "energy" in errors:
                atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).double()
                sums["energy_atom_abs"] += float((errors["energy"] / atoms).abs().sum())
                sums["energy_atom_sq"] += float((errors["energy"] / atoms).pow(2).sum())
        sums = dict(zip(keys, self._sum([sums[k] for k in keys])))
        out = {}
        for name in self.outputs:
            count = sums[f"{name}_n"]
            out[f"{name}_mae"] = sums[f"{name}_abs"] / count
            out[f"{name}_rmse"] = math.sqrt(sums[f"{name}_sq"] / count)
        if "energy" in self.outputs:
            out["energy_mae_per_atom"] = sums["energy_atom_abs"] / sums["energy_n"]
            out["energy_rmse_per_atom"] = math.sqrt(sums["energy_atom_sq"] / sums["energy_n"])
        return out

    def fit(self) -> List[dict]:
        """Train until the stop rule says so; returns the metrics history (one record per
        epoch; the last one may cover a partial epoch when a time budget ran out)."""
        cfg, main = self.config, self.world.is_main
        self.stop.start(self)
        while not self._done():
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
                score = sum(loss_weight(cfg, name) * val[f"{name}_rmse"] ** 2
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
            if cfg.checkpoints and main:
                self._save(os.path.join(self.out_dir, "last.pt"))
                if improved:
                    self._save(os.path.join(self.out_dir, "best.pt"))
            final = self._done()
            self._write_log(plot=self.epoch % 10 == 0 or final)
            if cfg.progress and main:
                tqdm.write(summary_line(record))
        if self.history and self.history[-1]["epoch"] % 10 and not self._done():
            self._write_log()  # a budget ended the run inside an epoch: draw the final curve
        if self.world.distributed:
            torch.distributed.barrier()  # rank 0's files are written when fit returns
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
        restore_trainer(self, load_checkpoint(path), path)
        self._write_log()

    def _write_log(self, plot: bool = True) -> None:
        """Rewrite metrics.jsonl; redraw the learning curve (every 10 epochs and at the end);
        rank 0 only."""
        if not self.world.is_main:
            return
        with open(os.path.join(self.out_dir, "metrics.jsonl"), "w") as f:
            for record in self.history:
                f.write(json.dumps(record) + "\n")
        if plot and self.config.plot and self.history:
            plot_learning_curve(self.history, os.path.join(self.out_dir, "learning_curve.png"))
