"""TrainingConfig: the hyperparameters of a training run, defined once (stored in every
checkpoint; the ``torch-pet train`` options and the ``training:`` section of a run file are
generated from it)."""
import math
from dataclasses import dataclass
from typing import Optional

from torch_pet.config import (DEVICE, FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT,
                              UNIT_INTERVAL_OPEN, Config, OptionError, option)

from torch_pet.training.output_scale import OUTPUT_SCALES

__all__ = ["TrainingConfig", "SCHEDULES", "CLOCKS", "learning_rate_factor"]

SCHEDULES = ("step", "cosine")
CLOCKS = ("wall", "cpu")


@dataclass
class TrainingConfig(Config):
    """Hyperparameters of a training run (:class:`~torch_pet.training.Trainer`).

    Learning rate: ``schedule="step"``: linear warm-up over ``warmup_epochs``, then
    multiplied by ``decay_factor`` every ``decay_every_epochs`` (per optimizer step);
    ``"cosine"``: linear warm-up over the first ``warmup_fraction`` of the run, then cosine
    decay to 0 at its end, where "the run" is what the stop rule allows (``epochs``, or the
    ``budget_s`` seconds). Training stops after ``epochs`` epochs or, with ``budget_s``, at
    the first step that would start after ``budget_s`` seconds of ``budget_clock``,
    whichever comes first.
    """

    epochs: int = option(100, "maximum number of epochs", check=POSITIVE_INT)
    batch_size: int = option(32, "structures per batch and process (the global batch of N "
                             "processes is N x batch_size); with max_atoms_per_batch, at most",
                             check=POSITIVE_INT)
    max_atoms_per_batch: Optional[int] = option(
        None, "pack batches (per process) up to this many atoms instead of by structure "
        "count (null: batches of batch_size structures)", check=POSITIVE_INT, metavar="N")
    num_workers: int = option(0, "data-loader worker processes per training process (0: load "
                              "in the training process)", check=NON_NEGATIVE_INT)
    lr: float = option(1e-4, "peak learning rate (Adam)", check=POSITIVE)
    schedule: str = option("step", "learning-rate schedule after the warm-up: step (decay by "
                           "decay_factor every decay_every_epochs) or cosine (to 0 at the end of "
                           "the run)", choices=SCHEDULES)
    warmup_epochs: float = option(1.0, "step schedule: epochs of linear warm-up from 0 to lr",
                                  check=NON_NEGATIVE)
    warmup_fraction: float = option(0.2, "cosine schedule: fraction of the run spent on the "
                                    "linear warm-up", check=UNIT_INTERVAL_OPEN)
    decay_every_epochs: float = option(50.0, "step schedule: epochs between two learning-rate "
                                       "decays", check=POSITIVE)
    decay_factor: float = option(0.5, "step schedule: factor applied at each decay",
                                 check=FRACTION)
    grad_clip: Optional[float] = option(10.0, "maximum gradient norm (null: no clipping)",
                                        check=POSITIVE)
    energy_key: Optional[str] = option("energy", "data key of the energies (set by the dataset)",
                                       cli=False)
    forces_key: Optional[str] = option("forces", "data key of the forces; null: energies only "
                                       "(set by the dataset)", cli=False)
    target_key: Optional[str] = option(None, "train on this per-structure target instead of "
                                       "energies (set by the dataset)", cli=False)
    target_is_vector: bool = option(False, "rotate the target with the structure", cli=False)
    energy_weight: float = option(0.1, "weight w_E of the energy loss", check=NON_NEGATIVE)
    forces_weight: float = option(1.0, "weight w_F of the force loss", check=NON_NEGATIVE)
    sigma_momentum: float = option(0.7, "momentum of the running loss normalisers sigma",
                                   check=UNIT_INTERVAL_OPEN)
    output_scale: str = option("target", "fit the model's output_scale before training: "
                               "target (the force RMS, else the target RMS), match (initial "
                               "outputs at the targets' RMS) or none (docs/training.md)",
                               choices=OUTPUT_SCALES)
    fit_self_energies: bool = option(True, "fit per-species self energies by least squares "
                                     "on the training set first")
    augment: bool = option(True, "rotate every structure by a random O(3) element per step")
    seed: int = option(0, "seed of the initialisation, shuffling and rotations",
                       check=NON_NEGATIVE_INT)
    device: str = option("auto", "cpu, cuda or cuda:N (auto: cuda if available)",
                         check=DEVICE)
    budget_s: Optional[float] = option(None, "stop at the first step after this many seconds "
                                       "of budget_clock (null: no time limit)", check=POSITIVE)
    budget_clock: str = option("wall", "what budget_s counts: wall time or the process CPU "
                               "time", choices=CLOCKS)
    checkpoints: bool = option(True, "write last.pt (every epoch) and best.pt")
    progress: bool = option(True, "show progress bars and one line per epoch")
    plot: bool = option(True, "draw learning_curve.png (every 10 epochs and at the end)")

    def check(self) -> None:
        if self.target_key is None and self.energy_key is None and self.forces_key is not None:
            raise OptionError("energy_key", "is null but forces_key is set: the data carries "
                              "forces but no energies, and PET trains on energies (forces are "
                              "their derivatives); add the energies to the data (extended XYZ: "
                              "an energy=... key on each comment line)", type(self).__name__)
        if self.target_key is None and self.energy_key is None:
            raise OptionError("energy_key", "and target_key are both null: set energy_key "
                              "(energies/forces) or target_key (other targets)",
                              type(self).__name__)
        if self.target_key is not None and self.forces_key is not None:
            raise OptionError("forces_key", "must be null: forces are derivatives of an "
                              "energy: with target_key=... set forces_key=None",
                              type(self).__name__)


def learning_rate_factor(config: TrainingConfig, step: int, steps_per_epoch: int,
                         fraction: float) -> float:
    """The factor on ``config.lr`` for optimizer step ``step`` (0-based); ``fraction`` is
    the part of the run already done (the stop rule's), used by the cosine schedule."""
    if config.schedule == "cosine":
        warmup = config.warmup_fraction
        if fraction < warmup:
            return (fraction + 1e-3) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (fraction - warmup) / (1.0 - warmup))))
    warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
    decay = max(1, round(config.decay_every_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    return config.decay_factor ** ((step - warmup) // decay)
