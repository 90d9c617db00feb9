"""ECSE against rotational averaging: invariance error and cost vs the number of rotations.

Rotational averaging (what the universal PET models do at inference) evaluates the backbone
on R rotated copies and averages the outputs rotated back; ECSE averages over a few
geometry-defined frames and is exact. Compared here on

(a) PET trained on the bundled distorted CH4 (a quick model trained here with the Trainer,
    rotation augmentation on, or ``--checkpoint``): energy and force errors under rotation;
(b) the DGCNN shape classifier of ``examples/pointcloud_classification.py`` (the model trained
    with rotation augmentation, read from ``--classifier`` = that example's ``models.pt``):
    max change of the logits under rotation.

Grids: Haar-random rotations; a Fibonacci sphere grid times in-plane angles; the Gauss-
Legendre product grid (Lebedev-type: exact up to a Wigner degree L). Errors are measured in
float64 (max over test structures and 2 random rotations), so they are the methods' own
errors, not round-off; ECSE's float32 error is given too, as the level that matters in
practice. Cost: process CPU time per structure (energy + forces for CH4, logits for (b)).

    OMP_NUM_THREADS=1 python benchmarks/rotational_averaging.py --classifier runs/pointclouds/models.pt
"""
import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from torch_pet import ECSESymmetrizer  # noqa: E402
from torch_pet.ecse.rotational_average import (RotationalAverage, gauss_grid_rotations,  # noqa: E402
                                               random_rotation_grid, sphere_grid_rotations)
from torch_pet.testing import random_rotation  # noqa: E402

QUICK_MODEL = dict(hidden_channels=32, num_heads=2, num_layers=1, num_blocks=2, ff_channels=64,
                   head_channels=32, cutoff=4.0, cutoff_width=0.5)
QUICK_AUX = dict(QUICK_MODEL, hidden_channels=16, ff_channels=32, head_channels=16)


def grids(max_rotations: int):
    """(family, label, rotations [R, 3, 3], weights [R]) up to max_rotations rotations."""
    out = []
    for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        if n <= max_rotations:
            out.append(("random", f"{n}", random_rotation_grid(n, seed=n), None))
    for directions, inplane in ((2, 1), (4, 2), (8, 3), (16, 4), (32, 6), (64, 8), (128, 11), (256, 16)):
        if directions * inplane <= max_rotations:
            out.append(("fibonacci x in-plane", f"{directions}x{inplane}",
                        sphere_grid_rotations(directions, inplane), None))
    for degree in (1, 2, 3, 4, 5, 6, 8, 10, 12, 14):
        rotations, weights = gauss_grid_rotations(degree)
        if rotations.shape[0] <= max_rotations:
            out.append(("gauss (Lebedev-type)", f"L={degree}", rotations, weights))
    return out


def timed(fn, *args):
    start = time.process_time()
    out = fn(*args)
    return out, time.process_time() - start


# ---------------------------------------------------------------------------------------
# (a) PET on CH4
# ---------------------------------------------------------------------------------------


def methane_models(args):
    if args.checkpoint:
        from torch_pet.checkpoint import load_model

        model = load_model(args.checkpoint)
        try:
            aux = load_model(args.checkpoint, aux=True)
        except ValueError:
            aux = None
        return model, aux
    from torch_pet import PET
    from torch_pet.datasets import DistortedMethane
    from torch_pet.training import Trainer, TrainingConfig

    train_set = DistortedMethane("train", num_structures=args.ch4_train)
    val_set = DistortedMethane("val", num_structures=200)
    print(f"[ch4] training a distance-only auxiliary PET and PET ({args.ch4_epochs} epochs, "
          f"{args.ch4_train} structures, rotation augmentation, Trainer)", flush=True)
    models = []
    for name, options, epochs, aux in (("aux", dict(QUICK_AUX, distance_only=True), max(1, args.ch4_epochs // 3), None),
                                       ("model", QUICK_MODEL, args.ch4_epochs, "previous")):
        torch.manual_seed(0)
        config = TrainingConfig(epochs=epochs, batch_size=16, lr=2e-3, warmup_epochs=0.5,
                                decay_every_epochs=max(1, epochs // 3), decay_factor=0.5, seed=0,
                                progress=False, plot=False, device="cpu")
        trainer = Trainer(PET(species=[1, 6], **options), train_set, val_set, config,
                          os.path.join(args.out, "ch4", name),
                          aux_model=models[-1] if aux else None)
        trainer.fit()
        models.append(trainer.model.eval())
    return models[1], models[0]


def energy_forces(fn, data):
    data = data.clone()
    data.pos = data.pos.detach().requires_grad_(True)
    energy = fn(data).reshape(-1)
    forces = -torch.autograd.grad(energy.sum(), data.pos)[0]
    return energy.detach(), forces


def ch4_errors(fn, data, rotations):
    (energy, forces), cost = timed(energy_forces, fn, data)
    e_err = f_err = 0.0
    for r in rotations:
        moved = data.clone()
        moved.pos = data.pos @ r.T
        e, f = energy_forces(fn, moved)
        e_err = max(e_err, float((e - energy).abs().max()))
        f_err = max(f_err, float((f - forces @ r.T).abs().max()))
    return e_err, f_err, cost / data.num_graphs


def compare_ch4(args):
    from torch_pet.datasets import DistortedMethane

    model, aux = methane_models(args)
    model64, aux64 = copy.deepcopy(model).double().eval(), copy.deepcopy(aux).double().eval()
    data = Batch.from_data_list(list(DistortedMethane("test", num_structures=args.ch4_test,
                                                      dtype=torch.float64)))
    rotations = [random_rotation(seed) for seed in (21, 22)]
    rows = []

    def add(method, label, evaluations, fn):
        e, f, cost = ch4_errors(fn, data, rotations)
        rows.append(dict(method=method, grid=label, evaluations=evaluations, energy_error=e,
                         force_error=f, ms_per_structure=1e3 * cost))
        print(f"  {method:<22} {label:>8} ({evaluations:>7.1f} evals): |dE| {e:.1e} eV, |dF| "
              f"{f:.1e} eV/A, {1e3 * cost:.2f} ms/structure", flush=True)

    add("y0 (PET)", "-", 1, model64)
    ecse = ECSESymmetrizer(model64, aux_model=aux64)
    frames = float(ecse.frames(data).frames.shape[0]) / data.num_graphs
    add("ECSE", "pruned", frames, ecse)
    data32 = data.clone()
    data32.pos = data.pos.float()
    e32, f32, _ = ch4_errors(ECSESymmetrizer(model.float().eval(), aux_model=aux.float().eval()),
                             data32, [r.float() for r in rotations])
    print(f"  ECSE in float32: |dE| {e32:.1e} eV, |dF| {f32:.1e} eV/A", flush=True)
    for family, label, grid, weights in grids(args.ch4_max_rotations):
        add(family, label, grid.shape[0], RotationalAverage(model64, grid, weights=weights))
    return dict(rows=rows, ecse_float32=dict(energy_error=e32, force_error=f32),
                structures=data.num_graphs)


# ---------------------------------------------------------------------------------------
# (b) the DGCNN classifier
# ---------------------------------------------------------------------------------------


def compare_classifier(args):
    import importlib.util

    spec = importlib.util.spec_from_file_location("pointcloud_classification",
                                                  ROOT / "examples" / "pointcloud_classification.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    from torch_pet.datasets import SHAPE_CLASSES, ProceduralShapes
    from torch_pet.ecse.cutoff_choice import choose_ecse_cutoff

    state = torch.load(args.classifier, map_location="cpu")
    model = example.DGCNN(len(SHAPE_CLASSES))
    model.load_state_dict(state["aug"])
    model64 = model.double().eval()
    train = Batch.from_data_list(list(ProceduralShapes("train", num_per_class=args.cutoff_per_class)))
    choice = choose_ecse_cutoff(train.pos, train.batch)
    clouds = Batch.from_data_list(list(ProceduralShapes("test", num_per_class=1, dtype=torch.float64,
                                                        classes=list(range(args.clouds)))))
    rotations = [random_rotation(seed) for seed in (31, 32)]
    rows = []

    def add(method, label, evaluations, fn):
        with torch.no_grad():
            reference, cost = timed(fn, clouds)
            error = 0.0
            for r in rotations:
                moved = clouds.clone()
                moved.pos = clouds.pos @ r.T
                error = max(error, float((fn(moved) - reference).abs().max()))
        rows.append(dict(method=method, grid=label, evaluations=evaluations, logit_error=error,
                         ms_per_cloud=1e3 * cost / clouds.num_graphs))
        print(f"  {method:<22} {label:>8} ({evaluations:>7.1f} evals): max|dlogit| {error:.1e}, "
              f"{1e3 * cost / clouds.num_graphs:.0f} ms/cloud", flush=True)

    add("DGCNN (raw + aug)", "-", 1, lambda b: example.call_dgcnn(model64, b))
    ecse = example.ecse_wrap(model64, choice)
    add("ECSE", "pruned", float(ecse.frames(clouds).frames.shape[0]) / clouds.num_graphs, ecse)
    clouds32 = clouds.clone()
    clouds32.pos = clouds.pos.float()
    ecse32 = example.ecse_wrap(copy.deepcopy(model).float().eval(), choice)
    with torch.no_grad():
        reference = ecse32(clouds32)
        error32 = 0.0
        for r in rotations:
            moved = clouds32.clone()
            moved.pos = clouds32.pos @ r.T.float()
            error32 = max(error32, float((ecse32(moved) - reference).abs().max()))
    print(f"  ECSE in float32: max|dlogit| {error32:.1e}", flush=True)
    for family, label, grid, weights in grids(args.classifier_max_rotations):
        add(family, label, grid.shape[0], RotationalAverage(model64, grid, weights=weights,
                                                            chunk_size=256 * 64,
                                                            adapter=example.call_dgcnn))
    return dict(rows=rows, ecse_float32=dict(logit_error=error32), clouds=clouds.num_graphs)


# ---------------------------------------------------------------------------------------


def to_match(rows, key, target):
    """Per grid family: the fewest evaluations whose error is <= target (None if none)."""
    out = {}
    for row in rows:
        if row["method"] in ("ECSE", "y0 (PET)", "DGCNN (raw + aug)"):
            continue
        if row[key] <= target:
            best = out.get(row["method"])
            out[row["method"]] = row["evaluations"] if best is None else min(best, row["evaluations"])
        else:
            out.setdefault(row["method"], None)
    return out


def report(result, out, figures=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = []
    panels = [("ch4", "force_error", "max |F(RX) - F(X)Rᵀ| (eV/Å)", "ms_per_structure", "(a) PET on CH4"),
              ("classifier", "logit_error", "max |logits(RX) - logits(X)|", "ms_per_cloud",
               "(b) DGCNN shape classifier")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (part, key, ylabel, cost_key, title) in zip(axes, panels):
        if part not in result:
            continue
        rows = result[part]["rows"]
        extra = " | |dE| (eV)" if part == "ch4" else ""
        lines += [f"### {title}", "", f"| method | grid | evaluations | {key.replace('_', ' ')}{extra} | "
                  f"{cost_key.replace('_', ' ')} |", "|---|---|---|---|---|" + ("---|" if extra else "")]
        for r in rows:
            energy = f" | {r['energy_error']:.1e}" if part == "ch4" else ""
            lines.append(f"| {r['method']} | {r['grid']} | {r['evaluations']:.1f} | {r[key]:.1e}{energy} "
                         f"| {r[cost_key]:.2f} |")
        ecse = next(r for r in rows if r["method"] == "ECSE")
        f32 = result[part]["ecse_float32"][key]
        lines += ["", f"ECSE in float32: {key.replace('_', ' ')} {f32:.1e}. Fewest evaluations of "
                  f"averaging with an error <= ECSE's float32 error: {to_match(rows, key, f32)}", ""]
        for family, marker in (("random", "o"), ("fibonacci x in-plane", "s"), ("gauss (Lebedev-type)", "^")):
            sub = [r for r in rows if r["method"] == family]
            ax.loglog([r["evaluations"] for r in sub], [max(r[key], 1e-17) for r in sub],
                      marker=marker, label=f"average: {family}")
        ax.loglog([ecse["evaluations"]], [max(ecse[key], 1e-17)], "k*", ms=14, label="ECSE (float64)")
        ax.axhline(f32, color="k", ls=":", lw=1, label="ECSE (float32)")
        raw = rows[0]
        ax.axhline(raw[key], color="C3", ls="--", lw=1, label="no symmetrization")
        ax.set_xlabel("backbone evaluations per structure (rotations or frames)")
        ax.set_ylabel(ylabel + ", float64")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [os.path.join(out, "rotational_averaging.png")]
    if figures:
        os.makedirs(figures, exist_ok=True)
        paths.append(os.path.join(figures, "rotational_averaging.png"))
    for path in paths:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    with open(os.path.join(out, "rotational_averaging.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/rotational_averaging")
    parser.add_argument("--figures", default=None, help="also write the figure here (docs/figures)")
    parser.add_argument("--checkpoint", default=None, help="a trained PET checkpoint (else train one)")
    parser.add_argument("--ch4-train", type=int, default=1000)
    parser.add_argument("--ch4-epochs", type=int, default=6)
    parser.add_argument("--ch4-test", type=int, default=20)
    parser.add_argument("--ch4-max-rotations", type=int, default=2048)
    parser.add_argument("--classifier", default="runs/pointclouds/models.pt",
                        help="models.pt of examples/pointcloud_classification.py ('' skips part b; "
                        "its numbers from an earlier run in --out are kept)")
    parser.add_argument("--clouds", type=int, default=5, help="test clouds (one per class) for part b")
    parser.add_argument("--cutoff-per-class", type=int, default=30,
                        help="clouds per class the ECSE cutoff is chosen from (as in the example)")
    parser.add_argument("--classifier-max-rotations", type=int, default=512)
    parser.add_argument("--skip-ch4", action="store_true",
                        help="skip part (a); its numbers from an earlier run in --out are kept")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    result = dict(args=vars(args), threads=torch.get_num_threads())
    previous = os.path.join(args.out, "rotational_averaging.json")
    if os.path.exists(previous):  # a part skipped now keeps the numbers of an earlier run
        with open(previous) as f:
            earlier = json.load(f)
        for part in ("ch4", "classifier"):
            if part in earlier:
                result[part] = earlier[part]
    if not args.skip_ch4:
        print("[a] PET on CH4", flush=True)
        result["ch4"] = compare_ch4(args)
    if args.classifier:
        if not os.path.exists(args.classifier):
            raise SystemExit(f"{args.classifier} not found: run examples/pointcloud_classification.py "
                             "first, or pass --classifier ''")
        print("[b] DGCNN classifier", flush=True)
        result["classifier"] = compare_classifier(args)
    with open(os.path.join(args.out, "rotational_averaging.json"), "w") as f:
        json.dump(result, f, indent=1)
    report(result, args.out, args.figures)


if __name__ == "__main__":
    main()
