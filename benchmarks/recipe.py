"""Equal-budget comparison of PET training recipes on methane (how the defaults were chosen).

Each variant (block, schedule, warm-up, output scale) trains PET of the accuracy
benchmark's size (d = 64, 2 blocks x 2 layers) on the first ``--num-train`` structures of
the bundled methane set for ``--budget`` CPU seconds through ``benchmarks/accuracy.py``'s
``run_one`` (the Trainer, validation every epoch, best epoch on validation), one torch thread
per run, ``--jobs`` runs at a time, and is scored on the test split. Prints one line per
variant and writes the raw results (``--json``).

    OMP_NUM_THREADS=1 nice -n 0 python benchmarks/recipe.py --budget 120 --jobs 2
"""
import argparse
import concurrent.futures
import json
import multiprocessing
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from accuracy import MODELS, run_one  # noqa: E402

# (model, schedule, warm-up fraction, output scale)
VARIANTS = [
    ("pet", "step", 0.05, "none"),
    ("pet", "cosine", 0.05, "none"),
    ("pet", "cosine", 0.05, "target"),
    ("pet", "cosine", 0.05, "match"),
    ("pet", "step", 0.05, "match"),
    ("pet", "cosine", 0.2, "match"),
    ("pet_modern", "cosine", 0.05, "match"),
    ("pet_modern", "cosine", 0.05, "target"),
    ("pet", "step", 0.05, "target"),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=120.0, help="CPU seconds per variant")
    p.add_argument("--num-train", type=int, default=1000)
    p.add_argument("--num-val", type=int, default=200)
    p.add_argument("--num-test", type=int, default=500)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", type=int, nargs="*", help="indices of VARIANTS to run")
    p.add_argument("--json", default="recipe.json")
    args = p.parse_args(argv)
    chosen = [VARIANTS[i] for i in args.only] if args.only else VARIANTS
    specs = [dict(model=m, num_train=args.num_train, budget_s=args.budget, clock="cpu",
                  schedule=sched, warmup=warm, output_scale=scale, num_val=args.num_val,
                  lr=MODELS[m]["lr"], batch_size=MODELS[m]["batch_size"], seed=args.seed,
                  threads=1, device="cpu", num_test=args.num_test, ecse_test=0,
                  rotation_structures=0, parity=0)
             for m, sched, warm, scale in chosen]
    load = os.getloadavg()
    print(f"[recipe] {len(specs)} variants, {args.budget:g} CPU-s each, n = {args.num_train}, "
          f"{args.jobs} at a time, load average {load[0]:.2f}", flush=True)
    results = []
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context,
                                                max_tasks_per_child=1) as pool:
        for result in pool.map(run_one, specs):
            results.append(result)
            if "error" in result:
                print(f"[recipe] {result['model']} FAILED: {result['error']}", flush=True)
                continue
            t = result["test"]
            print(f"[recipe] {result['model']:<10} {result['schedule']:<6} warm-up "
                  f"{result['warmup']:<4g} scale {result['output_scale']:<6} | test F MAE "
                  f"{1e3 * t['forces_mae']:6.1f} meV/A, E MAE "
                  f"{1e3 * t['energy_mae_per_atom']:6.2f} meV/atom | {result['steps']} steps, "
                  f"best epoch {result['best_epoch']}/{result['epochs_run']}, s = "
                  f"{result.get('output_scale_value')}", flush=True)
    with open(args.json, "w") as f:
        json.dump(dict(settings=vars(args), load_average_before=load,
                       load_average_after=os.getloadavg(), runs=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
