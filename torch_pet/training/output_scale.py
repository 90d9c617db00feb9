"""Output scaling: fit a backbone's ``output_scale`` on the training set before training.

A backbone that has an ``output_scale`` buffer [C] (:mod:`torch_pet.backbone`; PET does)
multiplies its network's output by it (PET: every head term, self energies excluded), so
that the network itself can work at O(1) while the targets are, e.g., forces of ~8 eV/Å.
Without it PET's energies and forces start 25–80x smaller than the CH4 targets and have to
grow through normalised heads. The Trainer fits it once, before the first step (not when
resuming: the checkpoint holds it), by ``TrainingConfig.output_scale``:

* ``"target"``: s = RMS of the trained target: the force RMS for energy/force models
  (metatrain's and MACE's choice), else the RMS of the residual energies (after the self
  energies) or of the target (its standard deviation about 0);
* ``"match"``: s = RMS(target) / RMS(prediction at s = 1) on up to ``MATCH_STRUCTURES``
  training structures: the initial outputs have the targets' RMS (a data-dependent
  initialisation, like LSUV);
* ``"none"``: s is left as it is.

``"target"`` is the default: on methane at d = 64 it trained to lower errors than
``"match"`` at equal CPU budget (docs/training.md), though it leaves PET's initial forces
3–10x below the targets (``"match"`` starts them within 2x).

The same value goes to every output channel (a vector target keeps its equivariance). Under
several processes rank 0's value is broadcast. Models without ``output_scale`` are trained
unchanged (a model may carry its own fixed scale, e.g. SchNet's ``scale``).
"""
import math

import torch
from torch_geometric.data import Batch

from torch_pet.backbone import backbone_info

__all__ = ["OUTPUT_SCALES", "MATCH_STRUCTURES", "scaled_output", "fit_output_scale"]

OUTPUT_SCALES = ("none", "target", "match")
MATCH_STRUCTURES = 256


def scaled_output(outputs) -> str:
    """The trained output that sets the scale: forces if trained, else the first one."""
    names = list(outputs)
    return "forces" if "forces" in names else names[0]


@torch.no_grad()
def _set(model, value: float) -> None:
    model.output_scale.fill_(value)


def fit_output_scale(trainer) -> float:
    """Fit ``trainer.model.output_scale`` by ``trainer.config.output_scale`` (see the module
    docstring) from the initial sigma (``trainer.sigma0``: the RMS of the training targets)
    and, for ``"match"``, the model's initial predictions; returns s (NaN when the model
    has no ``output_scale`` or the method is ``"none"``)."""
    method, model = trainer.config.output_scale, trainer.model
    scale = backbone_info(model).output_scale
    if method == "none" or scale is None:
        return math.nan
    name = scaled_output(trainer.outputs)
    value = trainer.sigma0[name]
    if method == "match":
        if trainer.world.is_main:
            _set(model, 1.0)
            value = value / _prediction_rms(trainer, name)
        else:
            value = 0.0
        value = trainer._sum([value])[0] if trainer.world.distributed else value
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"Trainer: the fitted output scale is {value} (targets or initial "
                         "predictions of zero RMS); set TrainingConfig.output_scale='none'")
    _set(model, value)
    return value


def _prediction_rms(trainer, name: str) -> float:
    """RMS of the model's residual prediction of ``name`` on the first training structures
    (train mode; rank 0 only)."""
    count = min(len(trainer.train_set), MATCH_STRUCTURES)
    was_training = trainer.model.training
    trainer.model.train()
    total, n = 0.0, 0
    try:
        for start in range(0, count, trainer.config.batch_size):
            stop = min(count, start + trainer.config.batch_size)
            batch = trainer._to_device(Batch.from_data_list(
                [trainer.train_set[i] for i in range(start, stop)]))
            pred = trainer._predict(trainer.model, batch, training=False)[name].detach()
            if name == "energy":
                pred = pred.double() - trainer._self_energy_sum(batch)
            total += float(pred.double().pow(2).sum())
            n += pred.numel()
    finally:
        trainer.model.train(was_training)
    rms = math.sqrt(total / max(n, 1))
    if not rms > 0:
        raise ValueError(f"Trainer: the model's initial {name} predictions are all zero; "
                         "output_scale='match' cannot fit a scale (use 'target' or 'none')")
    return rms
