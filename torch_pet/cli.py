"""The ``torch-pet`` command: ``train``, ``evaluate`` and ``main`` (the README's main job).

* ``torch-pet train --dataset methane|qm9|extxyz ...`` trains PET (energies + forces, or a
  QM9 target) and writes checkpoints, ``metrics.jsonl`` and ``learning_curve.png``.
* ``torch-pet evaluate --checkpoint run/best.pt --dataset methane`` evaluates y0 and the
  ECSE-symmetrized yS on a test split and prints the results table.
* ``torch-pet main`` trains PET and its distance-only auxiliary model on the bundled
  distorted-methane set, evaluates y0 and yS and writes the table and plots to ``--out``.

argparse lives here only; everything else is plain functions with keyword arguments.
"""
import argparse
import json
import os
import sys
import time
from typing import List, Optional, Sequence

import torch

# PET size and training schedule of the main job: chosen so that the whole command
# (training + evaluation) takes about 10 minutes on 2 CPU cores.
MAIN_MODEL = dict(hidden_channels=64, num_heads=4, num_layers=2, num_blocks=2,
                  ff_channels=128, head_channels=64, cutoff=5.0, cutoff_width=0.2)
MAIN_AUX_MODEL = dict(MAIN_MODEL, hidden_channels=32, num_layers=1, ff_channels=64,
                      head_channels=32, distance_only=True)
MAIN_TRAINING = dict(num_train=4000, epochs=30, aux_epochs=5, batch_size=32, lr=1e-3,
                     warmup_epochs=1.0, decay_every_epochs=8.0, decay_factor=0.5)

# yS rows of the main job: ECSE with every frame, and with the paper's 4 pruning steps.
MAIN_ECSE_PRUNE_STEPS = (0, 4)

PET_ARGS = ("hidden_channels", "num_heads", "num_layers", "num_blocks", "ff_channels",
            "head_channels", "cutoff", "cutoff_width")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------------------- datasets
def load_splits(dataset: str, *, data: Optional[str] = None, target: str = "U0",
                num_train: Optional[int] = None, num_val: Optional[int] = None,
                num_test: Optional[int] = None, seed: int = 0,
                dtype: torch.dtype = torch.float32, qm9_split=(110_000, 10_000)) -> dict:
    """``{"train", "val", "test", "energy_key", "forces_key", "target_key"}`` of a dataset.

    ``num_train``/``num_val``/``num_test`` keep the first structures of each split (quick
    runs); ``qm9_split`` is the (train, val) size of the random QM9 split (rest: test).
    """
    if dataset == "methane":
        from torch_pet.datasets import DistortedMethane

        out = {name: DistortedMethane(name, num_structures=count, dtype=dtype) for name, count
               in (("train", num_train), ("val", num_val), ("test", num_test))}
        return dict(out, energy_key="energy", forces_key="forces", target_key=None)
    if dataset == "qm9":
        from torch_pet.datasets.qm9 import QM9ToPET, load_qm9

        root = data or os.path.join("data", "QM9")
        splits = load_qm9(root, target, num_train=qm9_split[0], num_val=qm9_split[1],
                          seed=seed, dtype=dtype)
        splits = {k: v[:n] if n is not None else v for (k, v), n in
                  zip(splits.items(), (num_train, num_val, num_test))}
        key = QM9ToPET(target).key
        return dict(splits, energy_key="energy" if key == "energy" else None,
                    forces_key=None, target_key=None if key == "energy" else key)
    if dataset == "extxyz":
        from torch_pet.datasets.extxyz import ExtXYZDataset

        if data is None:
            raise ValueError("--dataset extxyz needs --data path/to/file.xyz")
        full = ExtXYZDataset(data, dtype=dtype)
        perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
        n_val = num_val or max(1, len(full) // 10)
        n_test = num_test or max(1, len(full) // 10)
        if n_val + n_test >= len(full):
            raise ValueError(f"{data} has {len(full)} structures: too few for a "
                             f"{n_val}-structure validation and a {n_test}-structure test set")
        train = perm[n_val + n_test:]
        train = train[:num_train] if num_train else train
        first = full[0]
        return {"train": full[train], "val": full[perm[:n_val]],
                "test": full[perm[n_val:n_val + n_test]],
                "energy_key": "energy" if "energy" in first else None,
                "forces_key": "forces" if "forces" in first else None, "target_key": None}
    raise ValueError(f"unknown dataset {dataset!r}; use methane, qm9 or extxyz")


def dataset_species(*datasets) -> List[int]:
    zs = torch.cat([ds._data.z if hasattr(ds, "_data") else torch.cat([d.z for d in ds])
                    for ds in datasets])
    return sorted(set(zs.tolist()))


# ----------------------------------------------------------------------------- commands
def train(*, dataset: str = "methane", data: Optional[str] = None, target: str = "U0",
          out: str = "runs/train", num_train=None, num_val=None, epochs: int = 100,
          batch_size: int = 32, lr: float = 1e-4, warmup_epochs: float = 1.0,
          decay_every_epochs: float = 50.0, decay_factor: float = 0.5, seed: int = 0,
          dtype: str = "float32", resume: bool = False, distance_only: bool = False,
          progress: bool = True, model_options: Optional[dict] = None, aux_model=None,
          qm9_split=(110_000, 10_000), device: str = "auto", **_unused):
    """Train PET on a dataset; returns ``(trainer, splits)``."""
    from torch_pet import PET
    from torch_pet.training import Trainer, TrainingConfig

    torch.manual_seed(seed)
    splits = load_splits(dataset, data=data, target=target, num_train=num_train,
                         num_val=num_val, seed=seed, dtype=DTYPES[dtype], qm9_split=qm9_split)
    species = dataset_species(splits["train"], splits["val"], splits["test"])
    out_channels = 1
    if splits["target_key"] is not None:
        out_channels = splits["train"][0][splits["target_key"]].numel()
    model = PET(species=species, out_channels=out_channels, distance_only=distance_only,
                **(model_options or {})).to(DTYPES[dtype])
    config = TrainingConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup_epochs,
        decay_every_epochs=decay_every_epochs, decay_factor=decay_factor, seed=seed,
        energy_key=splits["energy_key"], forces_key=splits["forces_key"],
        target_key=splits["target_key"], progress=progress)
    metadata = {"dataset": dataset, "data": data, "target": target}
    trainer = Trainer(model, splits["train"], splits["val"], config, out, resume=resume,
                      aux_model=aux_model, metadata=metadata, device=resolve_device(device))
    trainer.fit()
    return trainer, splits


def evaluate(*, checkpoint: str, dataset: str = "methane", data: Optional[str] = None,
             target: str = "U0", num_test=None, ecse: bool = True,
             ecse_prune_steps: Sequence[int] = (4,), out: Optional[str] = None,
             num_rotations: int = 8, num_rotation_structures: int = 50, batch_size: int = 64,
             seed: int = 0, qm9_split=(110_000, 10_000), device: str = "auto",
             **_unused) -> List[dict]:
    """Evaluate y0 (and yS with ``ecse``) of a checkpoint on a test split; prints the table.

    ``ecse_prune_steps``: one yS row per value of ECSE's ``prune_steps`` (4: the paper's
    pruning to the frames within ~10% of the largest weight; 0: every frame kept).
    """
    from torch_pet.checkpoint import build_model, load_checkpoint
    from torch_pet.evaluate import evaluate_model, results_table, summary

    device = resolve_device(device)
    record = load_checkpoint(checkpoint)
    model = build_model(record["model"], device=device, source=f"checkpoint {checkpoint}")
    aux = (build_model(record["aux_model"], device=device, source=f"checkpoint {checkpoint}")
           if record["aux_model"] is not None else None)
    dtype = next(model.parameters()).dtype
    splits = load_splits(dataset, data=data, target=target, num_train=None, num_test=num_test,
                         seed=seed, dtype=dtype, qm9_split=qm9_split)
    test = splits["test"]
    models = [("y0 (PET)", model)]
    if ecse:
        models += [(ys_name(steps), symmetrize(model, aux, prune_steps=steps))
                   for steps in ecse_prune_steps]
    keys = {k: splits[k] for k in ("energy_key", "forces_key", "target_key")}
    results = [evaluate_model(m, test, name=name, **keys, num_rotations=num_rotations,
                              num_rotation_structures=num_rotation_structures,
                              batch_size=batch_size, seed=seed, device=device)
               for name, m in models]
    table = results_table(results, reference="y0 (PET)" if ecse else None)
    print(table)
    if out is not None:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "results.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump([summary(r) for r in results], f, indent=2)
    return results


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def ys_name(prune_steps: int) -> str:
    return ("yS (ECSE, all frames)" if prune_steps == 0
            else f"yS (ECSE, pruned x{prune_steps})")


def symmetrize(model, aux_model=None, prune_steps: int = 4):
    """The ECSE-wrapped model yS (same weights as ``model``), structure mode."""
    from torch_pet import ECSESymmetrizer

    return ECSESymmetrizer(model, output="scalar", mode="structure", aux_model=aux_model,
                           frame_options={"prune_steps": prune_steps})


def main_job(*, out: str = "runs/main", num_train: Optional[int] = None,
             epochs: Optional[int] = None, num_val: Optional[int] = None,
             num_test: Optional[int] = None,
             progress: bool = True, seed: int = 0, device: str = "auto",
             **_unused) -> List[dict]:
    """The README's main job on the bundled methane set; see the module docstring."""
    from torch_pet.evaluate import results_table, summary

    start = time.perf_counter()
    settings = dict(MAIN_TRAINING)
    settings.update({k: v for k, v in (("num_train", num_train), ("epochs", epochs))
                     if v is not None})
    settings["aux_epochs"] = min(settings["aux_epochs"], settings["epochs"])
    common = dict(dataset="methane", num_train=settings["num_train"], num_val=num_val, seed=seed,
                  batch_size=settings["batch_size"], lr=settings["lr"],
                  warmup_epochs=settings["warmup_epochs"], decay_factor=settings["decay_factor"],
                  progress=progress, device=device)
    print(f"[main] training the distance-only auxiliary PET ({settings['aux_epochs']} epochs)")
    aux_trainer, _ = train(out=os.path.join(out, "aux"), epochs=settings["aux_epochs"],
                           decay_every_epochs=settings["aux_epochs"],
                           model_options={k: v for k, v in MAIN_AUX_MODEL.items()
                                          if k != "distance_only"},
                           distance_only=True, **common)
    print(f"[main] training PET on {settings['num_train']} structures for "
          f"{settings['epochs']} epochs")
    trainer, splits = train(out=out, epochs=settings["epochs"],
                            decay_every_epochs=settings["decay_every_epochs"],
                            model_options=MAIN_MODEL, aux_model=aux_trainer.model.eval(),
                            **common)
    train_time = time.perf_counter() - start
    print(f"[main] training took {train_time / 60:.1f} min; evaluating y0 and yS")
    results = evaluate(checkpoint=os.path.join(out, "best.pt"), dataset="methane",
                       num_test=num_test, out=out, seed=seed, device=device,
                       ecse_prune_steps=MAIN_ECSE_PRUNE_STEPS)
    total = time.perf_counter() - start
    with open(os.path.join(out, "results.md"), "a") as f:
        f.write(f"\ntraining {train_time:.0f} s, total {total:.0f} s on "
                f"{torch.get_num_threads()} threads\n")
    tested = splits["test"][:results[0]["num_structures"]]
    reference = torch.cat([data.forces for data in tested])
    plot_results(results, trainer.history, reference, os.path.join(out, "results.png"))
    print(f"[main] done in {total / 60:.1f} min; table in {out}/results.md, plots in "
          f"{out}/results.png and {out}/learning_curve.png")
    return [summary(r) for r in results]


def plot_results(results: List[dict], history: List[dict], reference_forces: torch.Tensor,
                 path: str) -> None:
    """Learning curve, force parity of y0 and yS against the reference, rotation errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    epochs = [r["epoch"] for r in history]
    axes[0].plot(epochs, [1e3 * r["val_forces_mae"] for r in history], marker="o", ms=3,
                 label="force MAE (meV/A)")
    axes[0].plot(epochs, [1e3 * r["val_energy_mae_per_atom"] for r in history], marker="s",
                 ms=3, label="energy MAE (meV/atom)")
    axes[0].set(yscale="log", xlabel="epoch", title="validation learning curve")
    reference = reference_forces.flatten()
    for r, marker in zip(results, "o^sv"):
        axes[1].scatter(reference, r["prediction"]["forces"].flatten(), s=3, alpha=0.4,
                        marker=marker, label=r["name"])
    low, high = float(reference.min()), float(reference.max())
    axes[1].plot([low, high], [low, high], color="black", lw=0.8)
    axes[1].set(xlabel="GFN2-xTB force component (eV/A)", ylabel="predicted (eV/A)",
                title="test-set force parity")
    names = [r["name"].replace(" (", "\n(") for r in results]
    for offset, key in ((-0.2, "rotation_energy_max"), (0.2, "rotation_forces_max")):
        axes[2].bar([i + offset for i in range(len(results))],
                    [max(r[key], 1e-17) for r in results], width=0.4,
                    label="energy (eV)" if "energy" in key else "forces (eV/A)")
    axes[2].set(yscale="log", xticks=range(len(results)), title="max rotation error (float64)")
    axes[2].set_xticklabels(names, fontsize=8)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- argparse
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torch-pet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p):
        p.add_argument("--dataset", choices=("methane", "qm9", "extxyz"), default="methane")
        p.add_argument("--data", help="QM9 root folder, or the extended-XYZ file")
        p.add_argument("--target", default="U0", help="QM9 target (U0, mu, gap, ...)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto", help="cpu, cuda, ... (auto: cuda if any)")
        p.add_argument("--qm9-split", type=int, nargs=2, default=(110_000, 10_000),
                       metavar=("TRAIN", "VAL"), help="sizes of the random QM9 split")

    p = sub.add_parser("train", help="train PET on a dataset")
    data_args(p)
    p.add_argument("--out", default="runs/train")
    p.add_argument("--num-train", type=int)
    p.add_argument("--num-val", type=int)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--decay-every-epochs", type=float, default=50.0)
    p.add_argument("--decay-factor", type=float, default=0.5)
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--distance-only", action="store_true",
                   help="train a distance-only (invariant) PET, e.g. as auxiliary model")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    for name in PET_ARGS:
        kind = float if name.startswith("cutoff") else int
        p.add_argument("--" + name.replace("_", "-"), type=kind)

    p = sub.add_parser("evaluate", help="evaluate y0 and the ECSE-symmetrized yS")
    data_args(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", help="write results.md / results.json here")
    p.add_argument("--num-test", type=int)
    p.add_argument("--no-ecse", dest="ecse", action="store_false")
    p.add_argument("--ecse-prune-steps", type=int, nargs="+", default=[4],
                   help="one yS row per value (0: keep every frame; 4: the paper's pruning)")
    p.add_argument("--num-rotations", type=int, default=8)
    p.add_argument("--num-rotation-structures", type=int, default=50)

    p = sub.add_parser("main", help="the main job: methane, y0 vs yS table and plots")
    p.add_argument("--out", default="runs/main")
    p.add_argument("--num-train", type=int, help=f"default {MAIN_TRAINING['num_train']}")
    p.add_argument("--epochs", type=int, help=f"default {MAIN_TRAINING['epochs']}")
    p.add_argument("--num-val", type=int, help="default: the whole validation split (500)")
    p.add_argument("--num-test", type=int, help="default: the whole test split (1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (auto: cuda if any)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    try:
        if command == "train":
            options = {name: args.pop(name) for name in PET_ARGS}
            train(model_options={k: v for k, v in options.items() if v is not None}, **args)
        elif command == "evaluate":
            evaluate(**args)
        else:
            main_job(**args)
    except (ValueError, FileNotFoundError) as err:
        print(f"torch-pet {command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
