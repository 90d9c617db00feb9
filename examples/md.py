"""NVE molecular dynamics with PET (y0) and ECSE-symmetrized PET (yS): energy conservation
and rotational error along the trajectory.

For each system (an isolated CH4, and a small periodic box of CH4 molecules) and each model
(y0: the raw PET backbone, yS: the same weights wrapped in ECSE), the script runs ASE's
velocity-Verlet NVE dynamics from the same initial velocities and reports

* the total-energy drift per atom per picosecond (slope of a linear fit of E_total(t)/N)
  and the RMS fluctuation of E_total,
* the rotational error along the trajectory: every ``--probe-every`` steps the current
  structure is rotated by ``--rotations`` random rotations and the energy and forces are
  recomputed; the error is max_R |E(RX) - E(X)| (per atom) and max_R RMS|F(RX) - F(X)·Rᵀ|,
  summarised by its mean, spread (std) and maximum over the trajectory.

It writes ``md.png`` (energy deviation and rotational error vs time), ``md.json`` and
``md.md`` (the table) to ``--out``. Without ``--checkpoint`` it first trains a small PET
and its distance-only auxiliary model on the bundled distorted-methane set with the
Trainer (about a minute on 2 cores):

    python examples/md.py                               # quick model, ~3-4 min on 2 cores
    python examples/md.py --checkpoint runs/main/best.pt --time-ps 2
    python examples/md.py --also-pruned                 # adds yS with the paper's frame pruning
    python examples/md.py --also-exported               # adds yS run by an exported program

What to expect: y0 conserves energy (its forces are the exact gradient of a smooth
energy) but its energy changes by meV/atom under rotations. yS is invariant to round-off
and conserves energy as well as y0 with the calculator's default of keeping every frame
(``prune_steps=0``). The paper's frame pruning (``--prune-steps 4``, 4 rounds of the steep
stitching switch q(w; 0.9 M, 0.1 M); about 5x fewer frames on CH4) makes the energy vary on
a ~1e-2 Å scale where two frames' weights are within ~10% of each other, which velocity
Verlet at 0.5 fs cannot follow: the energy jumps by the difference of the backbone's
outputs in the two frames. Measured with the main job's model (CH4, 0.5 ps): drift
+0.004 (y0), +0.003 (yS, all frames), +6.9 meV/atom/ps (yS, pruned). The jumps scale with
the rotational spread of y0, so they shrink as the backbone learns to be nearly invariant.

``--also-exported`` deploys yS the way a production MD code would: the ECSE-wrapped model
is exported with ``torch_pet.export.export_ecse`` (one graph, every size dynamic), saved
with ``torch.export.save``, loaded back and run through the same ASE calculator; its
trajectory should match eager yS.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.md.verlet import VelocityVerlet

from torch_pet.calculator import PETCalculator

QUICK_MODEL = dict(hidden_channels=32, num_heads=2, num_layers=1, num_blocks=2, ff_channels=64,
                   head_channels=32, cutoff=4.0, cutoff_width=0.5)
QUICK_AUX = dict(QUICK_MODEL, hidden_channels=16, ff_channels=32, head_channels=16)


def train_quick_model(out: str, num_train: int, epochs: int, seed: int) -> str:
    """Train y0 and its auxiliary model on distorted CH4; returns the best checkpoint."""
    from torch_pet.commands import TrainJob, train
    from torch_pet.datasets import DataConfig
    from torch_pet.nn.pet_config import PETConfig
    from torch_pet.training.config import TrainingConfig

    data = DataConfig(dataset="methane", num_train=num_train, num_val=200)
    common = dict(batch_size=16, lr=2e-3, warmup_epochs=0.5, decay_factor=0.5, seed=seed,
                  progress=False)
    print(f"[md] training the distance-only auxiliary PET ({max(1, epochs // 3)} epochs)")
    aux, _ = train(TrainJob(
        out=os.path.join(out, "aux"), data=data, model=PETConfig(**QUICK_AUX, distance_only=True),
        training=TrainingConfig(epochs=max(1, epochs // 3), decay_every_epochs=float(epochs),
                                **common)))
    print(f"[md] training PET on {num_train} structures for {epochs} epochs")
    start = time.perf_counter()
    trainer, _ = train(TrainJob(
        out=os.path.join(out, "model"), data=data, model=PETConfig(**QUICK_MODEL),
        training=TrainingConfig(epochs=epochs, decay_every_epochs=float(max(1, epochs // 3)),
                                **common)), aux_model=aux.model.eval())
    best = trainer.history[trainer.best_epoch - 1]
    print(f"[md] trained in {time.perf_counter() - start:.0f} s: val force MAE "
          f"{1000 * best['val_forces_mae']:.0f} meV/A, energy MAE "
          f"{1000 * best['val_energy_mae_per_atom']:.1f} meV/atom")
    return os.path.join(out, "model", "best.pt")


def methane_box() -> Atoms:
    """Two CH4 in a periodic 6 Å cube (about the density of liquid methane / 2)."""
    first = molecule("CH4")
    second = molecule("CH4")
    second.rotate(60, (1, 1, 0))
    second.translate((3.0, 3.0, 3.0))
    box = first + second
    box.set_cell(np.eye(3) * 6.0)
    box.translate((0.5, 0.5, 0.5))
    box.pbc = True
    return box


def exported_symmetrized(checkpoint: str, atoms: Atoms, dtype, device, path: str):
    """ECSE-PET of ``checkpoint`` (all frames kept) as a saved and reloaded torch.export
    program, wrapped for :class:`PETCalculator`. Exported on two perturbed copies of
    ``atoms`` so that no size is specialised to one structure."""
    from torch_geometric.data import Batch

    from torch_pet import ECSESymmetrizer
    from torch_pet.calculator import atoms_to_data
    from torch_pet.checkpoint import load_model
    from torch_pet.export import ExportedECSE, export_ecse

    model = load_model(checkpoint, device=device, dtype=dtype).eval()
    try:
        aux = load_model(checkpoint, aux=True, device=device, dtype=dtype).eval()
    except ValueError:  # a checkpoint without an auxiliary model
        aux = None
    wrapper = ECSESymmetrizer(model, aux_model=aux, frame_options={"prune_steps": 0})
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(2):
        copy = atoms.copy()
        copy.positions += rng.normal(scale=0.05, size=copy.positions.shape)
        examples.append(atoms_to_data(copy, dtype, device))
    start = time.perf_counter()
    torch.export.save(export_ecse(wrapper, Batch.from_data_list(examples)), path)
    print(f"[md] exported ECSE-PET to {path} in {time.perf_counter() - start:.1f} s")
    return ExportedECSE(wrapper, torch.export.load(path).module())


def initial_momenta(atoms: Atoms, temperature: float, seed: int) -> np.ndarray:
    """Maxwell-Boltzmann momenta without centre-of-mass motion (the same for y0 and yS)."""
    rng = np.random.default_rng(seed)
    masses = atoms.get_masses()[:, None]
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * temperature)
    return momenta - masses * momenta.sum(0) / masses.sum()


def rotation_error(calc: PETCalculator, atoms: Atoms, rotations) -> tuple:
    """max over rotations of |E(RX) - E(X)| per atom and of the force RMS error."""
    probe = atoms.copy()
    probe.calc = calc
    energy, forces = probe.get_potential_energy(), probe.get_forces()
    energy_error, force_error = 0.0, 0.0
    for rotation in rotations:
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ rotation.T
        if atoms.pbc.any():
            rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
        rotated.calc = calc
        energy_error = max(energy_error, abs(rotated.get_potential_energy() - energy) / len(atoms))
        difference = rotated.get_forces() - forces @ rotation.T
        force_error = max(force_error, float(np.sqrt((difference ** 2).mean())))
    return energy_error, force_error


def ecse_frame_options(prune_steps):
    return None if prune_steps is None else {"frame_options": {"prune_steps": prune_steps}}


def run_nve(calc, probe_calc, atoms: Atoms, *, timestep_fs: float, steps: int,
            temperature: float, probe_every: int, rotations, seed: int) -> dict:
    atoms = atoms.copy()
    atoms.set_momenta(initial_momenta(atoms, temperature, seed))
    atoms.calc = calc
    record = {"time_ps": [], "total": [], "kinetic": [], "probe_time_ps": [],
              "rotation_energy": [], "rotation_forces": []}

    def observe():
        t = dynamics.get_time() / (1000 * units.fs)
        record["time_ps"].append(t)
        record["total"].append(atoms.get_total_energy())
        record["kinetic"].append(atoms.get_kinetic_energy())
        if dynamics.nsteps % probe_every == 0:
            e_err, f_err = rotation_error(probe_calc, atoms, rotations)
            record["probe_time_ps"].append(t)
            record["rotation_energy"].append(e_err)
            record["rotation_forces"].append(f_err)

    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dynamics.attach(observe, interval=1)
    start = time.perf_counter()
    dynamics.run(steps)
    record["wall_s"] = time.perf_counter() - start
    n = len(atoms)
    t, total = np.array(record["time_ps"]), np.array(record["total"])
    record["drift_eV_per_atom_ps"] = float(np.polyfit(t, total / n, 1)[0])
    record["fluctuation_eV_per_atom"] = float(np.std(total) / n)
    record["max_deviation_eV_per_atom"] = float(np.abs(total - total[0]).max() / n)
    record["max_step_jump_eV"] = float(np.abs(np.diff(total)).max())
    record["kinetic_swing_eV_per_atom"] = float(np.ptp(record["kinetic"]) / n)
    record["max_distance_A"] = float(atoms.get_all_distances(mic=bool(atoms.pbc.any())).max())
    for key in ("rotation_energy", "rotation_forces"):
        values = np.array(record[key])
        record[f"{key}_mean"] = float(values.mean())
        record[f"{key}_std"] = float(values.std())
        record[f"{key}_max"] = float(values.max())
    record["num_atoms"] = n
    return record


def results_table(results: dict) -> str:
    lines = ["| system | model | drift (meV/atom/ps) | RMS fluct. (meV/atom) | largest "
             "one-step change of E_tot (meV) | rot. error E (meV/atom): mean ± std [max] | "
             "rot. error F (meV/Å): mean ± std [max] | wall (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for (system, name), r in results.items():
        lines.append(
            f"| {system} | {name} | {1000 * r['drift_eV_per_atom_ps']:+.3f} | "
            f"{1000 * r['fluctuation_eV_per_atom']:.3f} | {1000 * r['max_step_jump_eV']:.3g} | "
            f"{1000 * r['rotation_energy_mean']:.2e} ± {1000 * r['rotation_energy_std']:.1e} "
            f"[{1000 * r['rotation_energy_max']:.1e}] | "
            f"{1000 * r['rotation_forces_mean']:.2e} ± {1000 * r['rotation_forces_std']:.1e} "
            f"[{1000 * r['rotation_forces_max']:.1e}] | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted({system for system, _ in results}, key=list(s for s, _ in results).index)
    fig, axes = plt.subplots(2, len(systems), figsize=(5.5 * len(systems), 6.5), squeeze=False)
    for column, system in enumerate(systems):
        for (s, name), r in results.items():
            if s != system:
                continue
            total = np.array(r["total"])
            axes[0, column].plot(r["time_ps"], 1000 * (total - total[0]) / r["num_atoms"],
                                 label=f"{name}: drift {1000 * r['drift_eV_per_atom_ps']:+.2f} "
                                 "meV/atom/ps", lw=1)
            axes[1, column].semilogy(r["probe_time_ps"],
                                     1000 * np.maximum(r["rotation_energy"], 1e-16),
                                     marker=".", lw=0.8, label=name)
        axes[0, column].set_title(f"{system}: NVE total energy")
        axes[0, column].set_ylabel("E_tot(t) - E_tot(0) (meV/atom)")
        axes[1, column].set_title(f"{system}: rotational error of the energy")
        axes[1, column].set_ylabel("max_R |E(RX) - E(X)| (meV/atom)")
        for ax in axes[:, column]:
            ax.set_xlabel("time (ps)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a torch_pet checkpoint (default: train a quick model)")
    parser.add_argument("--out", default="runs/md")
    parser.add_argument("--time-ps", type=float, default=0.5, help="length of each run")
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=300.0, help="initial, K")
    parser.add_argument("--probe-every", type=int, default=25, help="steps between rotation probes")
    parser.add_argument("--rotations", type=int, default=4, help="random rotations per probe")
    parser.add_argument("--systems", nargs="+", default=["CH4", "CH4-box"],
                        choices=["CH4", "CH4-box"])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (tiny models run fastest on one)")
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--prune-steps", type=int, default=None,
                        help="ECSE pruning rounds of yS (default: the calculator's, 0)")
    parser.add_argument("--also-pruned", action="store_true",
                        help="also run yS with the paper's pruning (prune_steps=4)")
    parser.add_argument("--also-exported", action="store_true",
                        help="also run yS through a saved and reloaded torch.export program")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    checkpoint = args.checkpoint or train_quick_model(os.path.join(args.out, "train"),
                                                      args.num_train, args.epochs, args.seed)
    dtype = getattr(torch, args.dtype)
    models = {"y0 (PET)": dict(symmetrize=False),
              "yS (ECSE-PET)": dict(symmetrize=True,
                                    ecse_options=ecse_frame_options(args.prune_steps))}
    if args.also_pruned:
        models["yS, pruned x4"] = dict(symmetrize=True, ecse_options=ecse_frame_options(4))
    systems = {"CH4": molecule("CH4"), "CH4-box": methane_box()}
    generator = np.random.default_rng(args.seed + 1)
    rotations = []
    for _ in range(args.rotations):
        q = generator.normal(size=(3, 3))
        rotation = np.linalg.qr(q)[0]
        rotations.append(rotation * np.sign(np.linalg.det(rotation)))  # proper rotations
    steps = int(round(1000 * args.time_ps / args.timestep_fs))
    results = {}
    for system in args.systems:
        system_models = dict(models)
        if args.also_exported:
            path = os.path.join(args.out, f"ecse_pet_{system}.pt2")
            exported = exported_symmetrized(checkpoint, systems[system], dtype, args.device, path)
            system_models["yS (exported)"] = dict(model=exported)
        for name, options in system_models.items():
            options = dict(options)
            model = options.pop("model", checkpoint)
            calc = PETCalculator(model, dtype=dtype, device=args.device, **options)
            probe = PETCalculator(model, dtype=dtype, device=args.device, **options)
            print(f"[md] {system}, {name}: {steps} steps of {args.timestep_fs} fs ...", flush=True)
            results[(system, name)] = r = run_nve(
                calc, probe, systems[system], timestep_fs=args.timestep_fs, steps=steps,
                temperature=args.temperature, probe_every=args.probe_every,
                rotations=rotations, seed=args.seed)
            print(f"[md]   drift {1000 * r['drift_eV_per_atom_ps']:+.3f} meV/atom/ps, "
                  f"rotational energy error {1000 * r['rotation_energy_mean']:.2e} meV/atom "
                  f"(max {1000 * r['rotation_energy_max']:.2e}), {r['wall_s']:.0f} s", flush=True)
    table = results_table(results)
    header = (f"NVE velocity Verlet, {args.time_ps} ps at {args.timestep_fs} fs, initial "
              f"{args.temperature:.0f} K, {args.dtype}, checkpoint {checkpoint}\n\n")
    print("\n" + header + table)
    with open(os.path.join(args.out, "md.md"), "w") as f:
        f.write(header + table + "\n")
    with open(os.path.join(args.out, "md.json"), "w") as f:
        json.dump({f"{s} | {m}": r for (s, m), r in results.items()}, f)
    plot(results, os.path.join(args.out, "md.png"))
    print(f"[md] wrote {args.out}/md.png, md.md, md.json")


if __name__ == "__main__":
    main()
