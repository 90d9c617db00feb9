"""Accuracy and cost of PET (y0 and ECSE-symmetrized yS) against peer models on methane.

On the bundled distorted-CH4 set (GFN2-xTB, eV and eV/Å; ``torch_pet.datasets.DistortedMethane``)
every model is trained on the SAME first ``n`` structures of the training split, for each
``n`` of ``--sizes``, with the SAME budget of ``--budget`` seconds of training per model
and size, and evaluated on the same test structures. Models:

* ``pet``: ``torch_pet.PET`` of the main job's size (``PET_CONFIG``), the paper's block;
  evaluated raw (y0) and wrapped in ``torch_pet.ECSESymmetrizer`` (yS, same weights, no
  retraining); ``pet_modern``: the same with ``block="modern"`` (pre-RMSNorm, SwiGLU);
* ``schnet``: PyG's SchNet layers on ``torch_pet.ops.radius_graph`` (``benchmarks/peers.py``);
* ``mace``: ``mace-torch``'s ScaleShiftMACE on the same graph; skipped with a message when
  ``mace-torch`` is not installed (``pip install mace-torch``).

Training (one recipe for all models): ``torch_pet.training.Trainer`` with the same
``TrainingConfig`` for every model: per-species self energies by least squares, the output
scale fitted by the same rule (``--output-scale``, :mod:`torch_pet.training.output_scale`;
SchNet and MACE carry an ``output_scale`` buffer like PET), loss
``0.1 MSE(E)/σ_E² + MSE(F)/σ_F²`` with σ starting at the RMS of the training residual
energies and forces and following the validation RMSE (the Trainer's running normalisers),
forces by autograd, a random O(3) rotation per structure per step, Adam, gradient-norm
clipping at 10, and the ``--schedule`` over the budget (cosine: linear warm-up over its first
``--warmup`` fraction, then cosine decay to 0 at its end). Every model is validated after
every epoch on the same ``--num-val`` structures of the validation split (inside the
budget) and evaluated at its best validation epoch (``best.pt``). The Trainer's time-budget
stop rule ends training at the first step that would start after the budget is spent.
Learning rate and batch size per model: ``MODELS`` below (each model's own sensible values:
the shared recipe does not fix them). ``--seeds`` repeats everything per seed.

Every (model, size) runs in a fresh process with ``--threads`` torch threads (default 1).
The sizes run one after the other; the models of one size run side by side (``--jobs``,
default all of them), so that they share the machine, and whatever else runs on it, alike.
The clock is wall time (``--clock wall``) or the process CPU time (``--clock cpu``, fairer
on a machine shared with other work, but the run then takes longer); both are recorded.

Outputs: the raw results (``--json``, default ``docs/results.json``), the figures
(``--figures``, default ``docs/figures``: learning curves, force parity at the largest size,
cost vs accuracy) and the tables, regenerated between the markers of ``--markdown``
(default ``docs/results.md``). ``--from-json`` redraws figures and tables without training.

    python benchmarks/accuracy.py                                   # default run (~15 min, 2 cores)
    python benchmarks/accuracy.py --sizes 250 1000 4000 8000 --budget 900
    python benchmarks/accuracy.py --device cuda --threads 4
    python benchmarks/accuracy.py --from-json docs/results.json     # figures and tables only
"""
import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, ROOT)

from torch_geometric.loader import DataLoader  # noqa: E402

from accuracy_report import markdown, plot_all, write_markdown  # noqa: E402
from peers import MACEEnergy, SchNetEnergy, mace_available  # noqa: E402

CUTOFF = 5.0
SPECIES = (1, 6)
STEP_DECAY_EPOCHS = 8.0  # step schedule: the main job's (torch_pet.commands.MAIN_TRAINING)
# Learning rate and batch size of each model. SchNet: 1e-3 as in schnetpack's examples;
# MACE: lr 0.01 and batch 10, mace-torch's defaults; PET: the main job's batch 32 with lr 1e-3
# (its 2e-3 often failed to take off within a few hundred steps; see docs/results.md).
MODELS = {
    "pet": dict(lr=1e-3, batch_size=32),
    "pet_modern": dict(lr=1e-3, batch_size=32),
    "schnet": dict(lr=1e-3, batch_size=32),
    "mace": dict(lr=1e-2, batch_size=10),
}
# PET: the size of the project's main job (torch_pet.commands.MAIN_MODEL when this was written),
# pinned here so that the benchmark does not change when the main job does.
PET_CONFIG = dict(hidden_channels=64, num_heads=4, num_layers=2, num_blocks=2, ff_channels=128,
                  head_channels=64, cutoff_width=0.2)
SCHNET = dict(hidden_channels=128, num_filters=128, num_interactions=3, num_gaussians=50)
MACE = dict(hidden_irreps="32x0e + 32x1o", max_ell=2, correlation=3, num_interactions=2,
            num_bessel=8, num_polynomial_cutoff=5, mlp_irreps="16x0e")


# ----------------------------------------------------------------------------- models
def training_statistics(train_set, species) -> dict:
    """Self energies, RMS of residual energies and forces, mean neighbours per atom."""
    from torch_pet.ops import radius_graph
    from torch_pet.training.self_energies import fit_self_energies, species_counts

    self_energies = fit_self_energies(train_set, species)  # [S, 1] float64
    e_sq = f_sq = 0.0
    f_n = edges = atoms = 0
    for batch in DataLoader(train_set, batch_size=1024, shuffle=False):
        counts = species_counts(batch.z, batch.batch, batch.num_graphs, species)
        residual = batch.energy.double() - (counts @ self_energies).squeeze(-1)
        e_sq += float(residual.pow(2).sum())
        f_sq += float(batch.forces.double().pow(2).sum())
        f_n += batch.forces.numel()
        edge_index, _ = radius_graph(batch.pos, CUTOFF, batch.batch)
        edges += edge_index.shape[1]
        atoms += batch.num_nodes
    return dict(self_energies=self_energies, sigma_energy=math.sqrt(e_sq / len(train_set)),
                sigma_forces=math.sqrt(f_sq / f_n), neighbours=edges / atoms)


def build_model(name: str, stats: dict):
    """The model ``name``; its self energies are fitted again by the Trainer."""
    if name in ("pet", "pet_modern"):
        from torch_pet import PET

        model = PET(species=SPECIES, cutoff=CUTOFF, block="modern" if name == "pet_modern"
                    else "paper", **PET_CONFIG)
    elif name == "schnet":  # the initial scale; the Trainer fits output_scale
        model = SchNetEnergy(SPECIES, cutoff=CUTOFF, scale=stats["sigma_forces"], **SCHNET)
    elif name == "mace":
        model = MACEEnergy(SPECIES, cutoff=CUTOFF, scale=stats["sigma_forces"],
                           avg_num_neighbors=stats["neighbours"], **MACE)
    else:
        raise ValueError(f"unknown model {name!r}; use one of {sorted(MODELS)}")
    with torch.no_grad():
        model.self_energies.copy_(stats["self_energies"].to(model.self_energies))
    return model


# ----------------------------------------------------------------------------- training
def train_for_budget(model, train_set, val_set, *, budget_s, clock_kind, lr, batch_size,
                     seed, device, schedule="cosine", warmup=0.05, output_scale="target",
                     energy_weight=0.1, forces_weight=1.0, grad_clip=10.0) -> dict:
    """Train with the package's Trainer until ``budget_s`` seconds of ``clock_kind`` are
    spent (or 10^6 epochs), validating every epoch; loads the best validation epoch's
    weights into ``model`` and returns counters."""
    from torch_pet.checkpoint import load_checkpoint
    from torch_pet.training import Trainer, TrainingConfig

    config = TrainingConfig(
        epochs=10 ** 6, batch_size=batch_size, lr=lr, schedule=schedule,
        warmup_fraction=warmup, decay_every_epochs=STEP_DECAY_EPOCHS, grad_clip=grad_clip,
        energy_weight=energy_weight, forces_weight=forces_weight, output_scale=output_scale,
        seed=seed, device=str(device), budget_s=budget_s, budget_clock=clock_kind,
        checkpoints=True, progress=False, plot=False)
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = Trainer(model, train_set, val_set, config, out_dir)
        history = trainer.fit()
        best = os.path.join(out_dir, "best.pt")
        if os.path.exists(best):
            state = load_checkpoint(best)["model"]["state_dict"]
            model.load_state_dict({k: v.to(device) for k, v in state.items()})
    elapsed = trainer.stop.rules[-1].elapsed(trainer)  # FirstOf([MaxEpochs, TimeBudget])
    return dict(steps=trainer.step, structures_seen=trainer.structures_seen,
                epochs=trainer.structures_seen / len(train_set),
                train_wall_s=elapsed["wall_s"], train_cpu_s=elapsed["cpu_s"],
                best_epoch=trainer.best_epoch, epochs_run=len(history),
                output_scale_value=model.output_scale.tolist() if hasattr(model, "output_scale")
                else None,
                curve=[{k: r.get(k) for k in ("epoch", "steps", "val_forces_mae",
                                              "val_energy_mae")} for r in history],
                final_loss=history[-1]["train_loss"] if history else None,
                first_loss=history[0]["train_loss"] if history else None)


# ----------------------------------------------------------------------------- evaluation
def evaluate(model, test_set, *, device, rotation_structures, seed) -> dict:
    from torch_pet.evaluate import error_metrics, predict, rotation_errors

    prediction = predict(model, test_set, batch_size=64, device=device)
    out = dict(error_metrics(prediction, test_set), num_test=len(test_set),
               infer_ms_per_structure=1e3 * prediction["time_per_structure_s"])
    if rotation_structures:
        out.update(rotation_errors(model, test_set, num_rotations=4, seed=seed,
                                   num_structures=rotation_structures, device=device))
    return out, prediction


def parity_sample(prediction, test_set, count: int) -> dict:
    """Predicted and reference force components of the first ``count`` test structures."""
    subset = test_set[:count]
    reference = torch.cat([b.forces for b in DataLoader(subset, batch_size=1024)]).flatten()
    predicted = prediction["forces"][:reference.numel() // 3].flatten()
    return dict(predicted=[round(float(v), 4) for v in predicted],
                reference=[round(float(v), 4) for v in reference])


def run_one(spec: dict) -> dict:
    """Train and evaluate one (model, size); runs in its own process."""
    torch.set_num_threads(spec["threads"])
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    from torch_pet.datasets import DistortedMethane

    result = {k: spec[k] for k in ("model", "num_train", "budget_s", "clock", "schedule",
                                   "warmup", "output_scale", "lr", "batch_size", "seed",
                                   "threads", "device")}
    try:
        device = torch.device(spec["device"])
        train_set = DistortedMethane("train", num_structures=spec["num_train"])
        test_set = DistortedMethane("test", num_structures=spec["num_test"])
        val_set = DistortedMethane("val", num_structures=spec["num_val"])
        stats = training_statistics(train_set, SPECIES)
        torch.manual_seed(spec["seed"])
        model = build_model(spec["model"], stats).to(device)
        result["parameters"] = sum(p.numel() for p in model.parameters())
        result["config"] = {"pet": PET_CONFIG, "pet_modern": dict(PET_CONFIG, block="modern"),
                            "schnet": SCHNET, "mace": MACE}[spec["model"]]
        result["neighbours_per_atom"] = stats["neighbours"]
        result.update(train_for_budget(model, train_set, val_set, budget_s=spec["budget_s"],
                                       clock_kind=spec["clock"], warmup=spec["warmup"],
                                       schedule=spec["schedule"],
                                       output_scale=spec["output_scale"], lr=spec["lr"],
                                       batch_size=spec["batch_size"], seed=spec["seed"],
                                       device=device))
        model.eval()
        metrics, prediction = evaluate(model, test_set, device=device, seed=spec["seed"],
                                       rotation_structures=spec["rotation_structures"])
        result["test"] = metrics
        if spec["parity"]:
            result["parity"] = parity_sample(prediction, test_set, spec["parity"])
        if spec["model"].startswith("pet") and spec["ecse_test"]:
            from torch_pet import ECSESymmetrizer

            subset = test_set[:spec["ecse_test"]]
            symmetrized = ECSESymmetrizer(model, output="scalar", mode="structure").to(device)
            metrics_s, prediction_s = evaluate(symmetrized, subset, device=device,
                                               seed=spec["seed"],
                                               rotation_structures=spec["rotation_structures"])
            result["ecse"] = metrics_s
            if len(subset) < len(test_set):  # y0 on the same structures, for comparison
                from torch_pet.evaluate import error_metrics, predict

                result["y0_on_ecse_subset"] = error_metrics(
                    predict(model, subset, device=device), subset)
            if spec["parity"]:
                result["ecse_parity"] = parity_sample(prediction_s, subset, spec["parity"])
    except Exception as err:  # keep the other runs going; the report shows the failure
        result["error"] = f"{type(err).__name__}: {err}"
        result["traceback"] = traceback.format_exc()
    return result


# ----------------------------------------------------------------------------- orchestration
def environment(args) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip()
        except OSError:
            return None

    import torch_geometric

    info = dict(torch=torch.__version__, torch_geometric=torch_geometric.__version__,
                python=platform.python_version(), machine=platform.machine(),
                processor=_cpu_model(), logical_cpus=os.cpu_count(), git_commit=(git(
                    "rev-parse", "--short", "HEAD") or "").strip(), command="python " + " ".join(sys.argv),
                modified_tracked_files=(git("status", "--short", "--untracked-files=no")
                                        or "").splitlines(),
                cuda=torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None)
    try:
        from importlib.metadata import version

        info["mace_torch"] = version("mace-torch")
        info["e3nn"] = version("e3nn")
    except Exception:
        pass
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def run_all(args) -> dict:
    models = list(args.models)
    skipped = {}
    if "mace" in models:
        reason = mace_available()
        if reason is not None:
            print(f"[accuracy] skipping MACE: mace-torch is not usable ({reason}); install it "
                  "with `pip install mace-torch` to include it", flush=True)
            skipped["mace"] = reason
            models.remove("mace")
    overrides = {"lr": parse_overrides(args.lr, float), "batch_size": parse_overrides(
        args.batch_size, int)}
    largest = max(args.sizes)
    specs = [dict(model=m, num_train=n, budget_s=args.budget, clock=args.clock,
                  schedule=args.schedule, warmup=args.warmup,
                  output_scale=args.output_scale, num_val=args.num_val,
                  lr=overrides["lr"].get(m, MODELS[m]["lr"]),
                  batch_size=overrides["batch_size"].get(m, MODELS[m]["batch_size"]),
                  seed=seed, threads=args.threads, device=args.device,
                  num_test=args.num_test, ecse_test=min(args.ecse_test, args.num_test),
                  rotation_structures=args.rotation_structures,
                  parity=args.parity_structures if n == largest and seed == args.seeds[0]
                  else 0)
             for n in args.sizes for seed in args.seeds for m in models]
    started = time.time()
    load_before = os.getloadavg()
    jobs = args.jobs or len(models)
    print(f"[accuracy] {len(specs)} runs ({', '.join(models)} x sizes {args.sizes} x seeds "
          f"{args.seeds}), budget {args.budget:g} s ({args.clock} clock) each, one round per "
          f"size and seed with "
          f"{jobs} run(s) at a time, {args.threads} thread(s) per run, device {args.device}",
          flush=True)
    results = []
    context = multiprocessing.get_context("spawn")
    rounds = [(n, seed) for n in args.sizes for seed in args.seeds]
    for size, seed in rounds:  # a round: the models of one size and seed, side by side
        round_specs = [s for s in specs if (s["num_train"], s["seed"]) == (size, seed)]
        with concurrent.futures.ProcessPoolExecutor(min(jobs, len(round_specs)),
                                                    mp_context=context,
                                                    max_tasks_per_child=1) as pool:
            futures = [pool.submit(run_one, spec) for spec in round_specs]
            for future in concurrent.futures.as_completed(futures):
                result = future.result()
                results.append(result)
                print("[accuracy] " + run_summary(result), flush=True)
    order = {(s["model"], s["num_train"], s["seed"]): i for i, s in enumerate(specs)}
    results.sort(key=lambda r: order[(r["model"], r["num_train"], r["seed"])])
    return dict(settings=dict(vars(args), models=models, jobs=jobs), skipped=skipped,
                environment=environment(args), started=time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(started)),
                total_wall_s=time.time() - started, load_average_before=load_before,
                load_average_after=os.getloadavg(), runs=results)


def parse_overrides(items, kind) -> dict:
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in MODELS or not value:
            raise SystemExit(f"expected MODEL=VALUE with MODEL in {sorted(MODELS)}, got {item!r}")
        out[name] = kind(value)
    return out


def run_summary(r: dict) -> str:
    head = f"{r['model']:>6} n={r['num_train']:<5} seed {r['seed']}"
    if "error" in r:
        return f"{head} FAILED: {r['error']}"
    t = r["test"]
    text = (f"{head} F MAE {1e3 * t['forces_mae']:7.1f} meV/A, E MAE "
            f"{1e3 * t['energy_mae_per_atom']:7.2f} meV/atom | {r['steps']} steps, "
            f"{r['epochs']:.1f} epochs in {r['train_wall_s']:.0f} s wall / "
            f"{r['train_cpu_s']:.0f} s CPU | {t['infer_ms_per_structure']:.2f} ms/structure")
    if "ecse" in r:
        text += (f" | yS F MAE {1e3 * r['ecse']['forces_mae']:.1f} meV/A "
                 f"({r['ecse']['infer_ms_per_structure']:.2f} ms/structure)")
    return text


# ----------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["pet", "pet_modern", "schnet", "mace"],
                   choices=sorted(MODELS))
    p.add_argument("--sizes", nargs="+", type=int, default=[250, 1000, 4000],
                   help="training-set sizes (first n structures of the training split)")
    p.add_argument("--budget", type=float, default=200.0,
                   help="seconds of training per model and size")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what the budget counts: wall time or the process CPU time")
    p.add_argument("--jobs", type=int, default=0,
                   help="runs at a time within a round (one process each); default: all the "
                        "models of a size at once, so they share the machine equally")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:k]")
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="one run per seed (initialisation, shuffling, rotations); the tables "
                        "give the median and the range over seeds")
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine",
                   help="learning-rate schedule (step: warm-up of 1 epoch, then halved every "
                        f"{STEP_DECAY_EPOCHS:g} epochs)")
    p.add_argument("--warmup", type=float, default=0.05,
                   help="cosine: fraction of the budget spent on the linear warm-up")
    p.add_argument("--output-scale", choices=("target", "match", "none"), default="target",
                   help="how the Trainer fits every model's output_scale")
    p.add_argument("--num-val", type=int, default=200,
                   help="validation structures (best epoch, running loss normalisers)")
    p.add_argument("--num-test", type=int, default=1000, help="test structures (max 1000)")
    p.add_argument("--ecse-test", type=int, default=1000,
                   help="test structures on which PET yS is evaluated")
    p.add_argument("--rotation-structures", type=int, default=25,
                   help="structures for the float64 rotation errors (0: skip)")
    p.add_argument("--parity-structures", type=int, default=200,
                   help="test structures stored for the parity plot (largest size)")
    p.add_argument("--lr", nargs="*", metavar="MODEL=LR", help="override, e.g. pet=1e-3")
    p.add_argument("--batch-size", nargs="*", metavar="MODEL=B", help="override, e.g. mace=16")
    p.add_argument("--json", default=os.path.join(ROOT, "docs", "results.json"))
    p.add_argument("--figures", default=os.path.join(ROOT, "docs", "figures"))
    p.add_argument("--markdown", default=os.path.join(ROOT, "docs", "results.md"))
    p.add_argument("--from-json", help="skip training: redraw figures and tables from this JSON")
    p.add_argument("--tag", default="",
                   help="name of a second result set: figures get this prefix and the tables "
                        "their own generated block in --markdown (give --json too)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False here (CPU-only torch or "
                "no GPU); install a CUDA build of torch (TORCH_SPEC=...) or use --device cpu")
    if not 1 <= args.num_test <= 1000:
        p.error("--num-test must be in [1, 1000] (the test split has 1000 structures)")
    if not 0.0 <= args.warmup < 1.0:
        p.error("--warmup is a fraction of the budget in [0, 1)")
    if args.budget <= 0 or args.jobs < 0 or args.threads < 1:
        p.error("--budget and --threads must be positive, --jobs >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f)
    else:
        report = run_all(args)
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"[accuracy] raw results in {args.json}")
    prefix = f"{args.tag}_" if args.tag else ""
    figures = plot_all(report, args.figures, prefix)
    text = markdown(report, figures, args.markdown, args.tag)
    write_markdown(text, args.markdown, args.tag)
    print(text)
    print(f"[accuracy] figures: {', '.join(figures)}; tables in {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
