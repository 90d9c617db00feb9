"""The jobs behind the ``torch-pet`` command: typed job configs and the functions that run them.

* :class:`TrainJob` / :func:`train`: train PET on a registered dataset; the run directory gets
  the checkpoints, ``metrics.jsonl``, ``learning_curve.png`` and the resolved ``config.yaml``.
* :class:`EvaluateJob` / :func:`evaluate`: y0 and the ECSE-symmetrized yS of a checkpoint on a
  test split; prints the results table.
* :class:`PreprocessJob` / :func:`preprocess`: an extended-XYZ file into an on-disk dataset
  (:mod:`torch_pet.datasets.ondisk`), read lazily by ``--dataset ondisk``.
* :class:`MainJob` / :func:`main_job`: the README's main job (PET and its distance-only
  auxiliary model on the bundled methane set, y0 vs yS table and plots).

Every job is a :class:`~torch_pet.config.Config` built from sections that are the library's
own configs (:class:`~torch_pet.datasets.DataConfig`, :class:`~torch_pet.nn.pet_config.PETConfig`,
:class:`~torch_pet.training.config.TrainingConfig`); :mod:`torch_pet.cli` generates its
options from them. Errors in the inputs raise :class:`~torch_pet.config.OptionError` naming
the option.
"""
import json
import os
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch

from torch_pet.config import (DEVICE, NON_NEGATIVE_INT, POSITIVE_INT, Config, OptionError,
                              option, resolve_device, section)
from torch_pet.datasets.registry import DataConfig, Splits, load_splits
from torch_pet.nn.pet_config import PETConfig
from torch_pet.training.config import TrainingConfig
from torch_pet.training.distributed import LAUNCHERS

__all__ = ["TrainJob", "EvaluateJob", "MainJob", "PreprocessJob", "train", "evaluate",
           "main_job", "preprocess",
           "write_config", "MAIN_MODEL", "MAIN_AUX_MODEL", "MAIN_TRAINING"]

# PET size and training schedule of the main job: chosen so that the whole command
# (training + evaluation) takes about 10 minutes on 2 CPU cores.
MAIN_MODEL = PETConfig(hidden_channels=64, num_heads=4, num_layers=2, num_blocks=2,
                       ff_channels=128, head_channels=64, cutoff=5.0, cutoff_width=0.2)
MAIN_AUX_MODEL = MAIN_MODEL.replace(hidden_channels=32, num_layers=1, ff_channels=64,
                                    head_channels=32, distance_only=True)
MAIN_TRAINING = TrainingConfig(epochs=30, batch_size=32, lr=1e-3, warmup_epochs=1.0,
                               decay_every_epochs=8.0, decay_factor=0.5)
MAIN_NUM_TRAIN = 4000
MAIN_AUX_EPOCHS = 5
# yS rows of the main job: ECSE with every frame, and with the paper's 4 pruning steps.
MAIN_ECSE_PRUNE_STEPS = (0, 4)


@dataclass
class TrainJob(Config):
    """``torch-pet train``: a dataset, PET's hyperparameters and a training run."""

    out: str = option("runs/train", "run directory: checkpoints, metrics.jsonl, "
                      "learning_curve.png and the resolved config.yaml")
    resume: bool = option(False, "continue from OUT/last.pt")
    launcher: str = option("auto", "how the processes were started: auto (torchrun's variables "
                           "RANK/WORLD_SIZE if set, else SLURM's under srun with several tasks, "
                           "else one process), torchrun, slurm or none (one process)",
                           choices=LAUNCHERS)
    data: DataConfig = section(DataConfig, "the dataset and its split")
    model: PETConfig = section(PETConfig, "PET's hyperparameters (species and out_channels "
                               "come from the data unless given)")
    training: TrainingConfig = section(TrainingConfig, "the training run")


@dataclass
class EvaluateJob(Config):
    """``torch-pet evaluate``: y0 (and yS) of a checkpoint on a test split."""

    checkpoint: Optional[str] = option(None, "checkpoint written by torch-pet train, e.g. "
                                       "runs/train/best.pt (required)")
    out: Optional[str] = option(None, "write results.md and results.json to this directory")
    data: DataConfig = section(DataConfig, "the dataset (its test split is evaluated)")
    ecse: bool = option(True, "also evaluate the ECSE-symmetrized model yS")
    ecse_prune_steps: Tuple[int, ...] = option(
        (4,), "one yS row per value of ECSE's prune_steps (0: every frame kept; 4: the "
        "paper's pruning)", check=NON_NEGATIVE_INT)
    num_rotations: int = option(8, "random rotations per structure for the rotation errors",
                                check=POSITIVE_INT)
    num_rotation_structures: int = option(50, "test structures used for the rotation errors",
                                          check=POSITIVE_INT)
    batch_size: int = option(64, "structures per evaluation batch", check=POSITIVE_INT)
    seed: int = option(0, "seed of the random rotations", check=NON_NEGATIVE_INT)
    device: str = option("auto", "cpu, cuda or cuda:N (auto: cuda if available)", check=DEVICE)

    def check(self) -> None:
        if self.checkpoint is None:
            raise OptionError("checkpoint", "is required: the path of a checkpoint written by "
                              "torch-pet train (e.g. runs/train/best.pt)")
        if not self.ecse_prune_steps:
            raise OptionError("ecse_prune_steps", "must hold at least one value")


@dataclass
class PreprocessJob(Config):
    """``torch-pet preprocess data.xyz out/``: an extended-XYZ file into an on-disk dataset."""

    data: Optional[str] = option(None, "the extended-XYZ file to convert (required)")
    out: Optional[str] = option(None, "folder of the on-disk dataset (required; train on it "
                                "with --dataset ondisk --data OUT)")
    energy_key: str = option("energy", "name of the energy in the file")
    forces_key: str = option("forces", "name of the forces in the file")
    stress_key: str = option("stress", "name of the stress in the file")
    overwrite: bool = option(False, "replace a dataset already in OUT")

    def check(self) -> None:
        for name in ("data", "out"):
            if getattr(self, name) is None:
                raise OptionError(name, "is required: torch-pet preprocess DATA.xyz OUT/")


@dataclass
class MainJob(Config):
    """``torch-pet main``: the README's main job on the bundled methane set."""

    out: str = option("runs/main", "output directory: table, plots, checkpoints")
    num_train: Optional[int] = option(None, f"training structures (default {MAIN_NUM_TRAIN})",
                                      check=POSITIVE_INT)
    epochs: Optional[int] = option(None, f"training epochs (default {MAIN_TRAINING.epochs})",
                                   check=POSITIVE_INT)
    num_val: Optional[int] = option(None, "validation structures (default: the whole "
                                    "validation split, 500)", check=POSITIVE_INT)
    num_test: Optional[int] = option(None, "test structures (default: the whole test split, "
                                     "1000)", check=POSITIVE_INT)
    seed: int = option(0, "seed of initialisation, shuffling and rotations",
                       check=NON_NEGATIVE_INT)
    device: str = option("auto", "cpu, cuda or cuda:N (auto: cuda if available)", check=DEVICE)
    progress: bool = option(True, "show progress bars and one line per epoch")


# ----------------------------------------------------------------------------- helpers
def check_out_dir(path: Optional[str], name: str = "out") -> None:
    """An output directory may exist or not, but must not be a file."""
    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise OptionError(name, f"{path} is an existing file; give a directory (it is created "
                          "when missing)")


def write_config(config: Config, path: str) -> None:
    """Write ``config`` as YAML (the resolved run configuration)."""
    import yaml

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)


def _read_checkpoint(path: str) -> dict:
    from torch_pet.checkpoint import load_checkpoint

    if os.path.isdir(path):
        raise OptionError("checkpoint", f"{path} is a directory; give a checkpoint file such as "
                          f"{os.path.join(path, 'best.pt')}")
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise OptionError("checkpoint", f"{path} is not readable (permissions)")
    return load_checkpoint(path)


def ys_name(prune_steps: int) -> str:
    return ("yS (ECSE, all frames)" if prune_steps == 0
            else f"yS (ECSE, pruned x{prune_steps})")


def symmetrize(model, aux_model=None, prune_steps: int = 4):
    """The ECSE-wrapped model yS (same weights as ``model``), structure mode."""
    from torch_pet.ecse.options import FrameOptions
    from torch_pet.ecse.symmetrizer import ECSESymmetrizer

    return ECSESymmetrizer(model, output="scalar", mode="structure", aux_model=aux_model,
                           frame_options=FrameOptions(prune_steps=prune_steps))


# ----------------------------------------------------------------------------- jobs
def train(job: TrainJob, *, aux_model=None):
    """Train PET as ``job`` says; returns ``(trainer, splits)``. Started by torchrun or
    srun (``job.launcher``), every process trains its part of each global batch
    (:mod:`torch_pet.training.distributed`)."""
    from torch_pet.training.distributed import device_for, process_group, world_from_env

    check_out_dir(job.out)
    world = world_from_env(job.launcher)
    device = device_for(world, job.training.device)
    with process_group(world, device):
        return _train(job, world, device, aux_model)


def _train(job: TrainJob, world, device, aux_model):
    from torch_pet.nn.pet import PET
    from torch_pet.training.trainer import Trainer

    splits: Splits = load_splits(job.data)
    torch.manual_seed(job.training.seed)
    model_config = job.model.replace(out_channels=splits.out_channels)
    if job.model.species == PETConfig().species:  # not given: the species of the data
        model_config = model_config.replace(species=tuple(splits.species))
    model = PET(model_config).to(job.data.torch_dtype)
    training = job.training.replace(energy_key=splits.energy_key, forces_key=splits.forces_key,
                                    target_key=splits.target_key)
    resolved = job.replace(model=model_config, training=training)
    if world.is_main:
        write_config(resolved, os.path.join(job.out, "config.yaml"))
    metadata = {"dataset": job.data.dataset, "data": job.data.data, "target": job.data.target,
                "data_config": job.data.to_dict()}
    trainer = Trainer(model, splits.train, splits.val, training, job.out, resume=job.resume,
                      aux_model=aux_model, metadata=metadata, device=device, world=world)
    trainer.fit()
    return trainer, splits


def evaluate(job: EvaluateJob) -> List[dict]:
    """y0 (and one yS per ``ecse_prune_steps``) of a checkpoint on the test split; prints
    the table and, with ``out``, writes ``results.md`` and ``results.json``."""
    from torch_pet.checkpoint import build_model
    from torch_pet.evaluate import evaluate_model, results_table, summary

    check_out_dir(job.out)
    device = resolve_device(job.device)
    record = _read_checkpoint(job.checkpoint)
    source = f"checkpoint {job.checkpoint}"
    model = build_model(record["model"], device=device, source=source)
    aux = (build_model(record["aux_model"], device=device, source=source)
           if record["aux_model"] is not None else None)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    splits = load_splits(job.data.replace(dtype=dtype))
    models = [("y0 (PET)", model)]
    if job.ecse:
        models += [(ys_name(steps), symmetrize(model, aux, prune_steps=steps))
                   for steps in job.ecse_prune_steps]
    keys = dict(energy_key=splits.energy_key, forces_key=splits.forces_key,
                target_key=splits.target_key)
    results = [evaluate_model(m, splits.test, name=name, **keys, num_rotations=job.num_rotations,
                              num_rotation_structures=job.num_rotation_structures,
                              batch_size=job.batch_size, seed=job.seed, device=device)
               for name, m in models]
    table = results_table(results, reference="y0 (PET)" if job.ecse else None)
    print(table)
    if job.out is not None:
        write_config(job, os.path.join(job.out, "evaluate.yaml"))
        with open(os.path.join(job.out, "results.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(job.out, "results.json"), "w") as f:
            json.dump([summary(r) for r in results], f, indent=2)
    return results


def preprocess(job: PreprocessJob) -> dict:
    """Convert ``job.data`` (extended XYZ) into the on-disk dataset ``job.out``; prints a
    summary and returns its index."""
    from torch_pet.datasets.ondisk import OutDirError, preprocess_extxyz
    from torch_pet.datasets.registry import readable_path

    path = readable_path(job.data, "extended-XYZ file")
    check_out_dir(job.out)
    start = time.perf_counter()
    try:
        index = preprocess_extxyz(path, job.out, overwrite=job.overwrite,
                                  energy_key=job.energy_key, forces_key=job.forces_key,
                                  stress_key=job.stress_key)
    except OutDirError as err:
        raise OptionError("out", str(err)) from None
    except ValueError as err:
        raise OptionError("data", f"is not a usable extended-XYZ file: {err}") from None
    print(f"[preprocess] {index['num_structures']} structures, {index['num_atoms']} atoms, "
          f"fields {', '.join(index['fields'])} -> {job.out} "
          f"({time.perf_counter() - start:.1f} s); train with --dataset ondisk --data {job.out}")
    return index


def main_job(job: MainJob) -> List[dict]:
    """The README's main job on the bundled methane set; see the module docstring."""
    from torch_pet.evaluate import summary
    from torch_pet.plots import plot_results

    check_out_dir(job.out)
    resolve_device(job.device)
    start = time.perf_counter()
    num_train = job.num_train if job.num_train is not None else MAIN_NUM_TRAIN
    epochs = job.epochs if job.epochs is not None else MAIN_TRAINING.epochs
    aux_epochs = min(MAIN_AUX_EPOCHS, epochs)
    data = DataConfig(dataset="methane", num_train=num_train, num_val=job.num_val)
    common = dict(seed=job.seed, progress=job.progress, device=job.device)
    print(f"[main] training the distance-only auxiliary PET ({aux_epochs} epochs)")
    aux_job = TrainJob(out=os.path.join(job.out, "aux"), data=data, model=MAIN_AUX_MODEL,
                       training=MAIN_TRAINING.replace(epochs=aux_epochs,
                                                      decay_every_epochs=float(aux_epochs),
                                                      **common))
    aux_trainer, _ = train(aux_job)
    print(f"[main] training PET on {num_train} structures for {epochs} epochs")
    main = TrainJob(out=job.out, data=data, model=MAIN_MODEL,
                    training=MAIN_TRAINING.replace(epochs=epochs, **common))
    trainer, splits = train(main, aux_model=aux_trainer.model.eval())
    train_time = time.perf_counter() - start
    print(f"[main] training took {train_time / 60:.1f} min; evaluating y0 and yS")
    results = evaluate(EvaluateJob(
        checkpoint=os.path.join(job.out, "best.pt"), out=job.out, seed=job.seed,
        device=job.device, data=DataConfig(dataset="methane", num_test=job.num_test),
        ecse_prune_steps=MAIN_ECSE_PRUNE_STEPS))
    total = time.perf_counter() - start
    with open(os.path.join(job.out, "results.md"), "a") as f:
        f.write(f"\ntraining {train_time:.0f} s, total {total:.0f} s on "
                f"{torch.get_num_threads()} threads\n")
    tested = splits.test[:results[0]["num_structures"]]
    reference = torch.cat([data.forces for data in tested])
    plot_results(results, trainer.history, reference, os.path.join(job.out, "results.png"))
    print(f"[main] done in {total / 60:.1f} min; table in {job.out}/results.md, plots in "
          f"{job.out}/results.png and {job.out}/learning_curve.png")
    return [summary(r) for r in results]
