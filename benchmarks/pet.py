"""Benchmark of the PET backbone (torch_pet.PET) and a smoke training on forces.

Throughput table (default): for CH4 batches and periodic water-like boxes (~192 and ~1,536
atoms, 0.1 atoms/Å^3), R_c = 5 Å, the default model size (d = 128, 4 heads, 3 layers,
3 blocks), fused vs explicit attention, it prints atoms/s of

* ``forward``: ``model(data)`` without gradients (neighbour list included);
* ``energy+forces``: ``energy_and_forces(model, data)`` (one backward, eval mode);
* ``train step``: ``energy_and_forces(..., create_graph=True)`` plus the backward of a
  force loss (the double backward of force training; explicit attention only),

the median over repeats, the ratio fused/explicit, and the peak memory: each row runs in a
fresh subprocess and reports its peak resident set size (``resource.getrusage``) and its
growth over the resident size before the first call (CPU), or
``torch.cuda.max_memory_allocated`` (GPU).
The same rows run on CUDA when it is available.

Smoke training (``--smoke-train``): a few hundred random distorted CH4 (H uniform in a 3 Å
ball, all distances >= 0.7 Å) labelled by a pairwise Morse potential; PET is trained on
energies + forces with Adam for a fixed time and the validation force RMSE is printed
along the way.

    python benchmarks/pet.py [--device cpu|cuda] [--threads 2] [--repeats 3] [--quick]
    python benchmarks/pet.py --smoke-train [--seconds 120]
    python benchmarks/pet.py --train-step [--block paper modern] [--size d64|paper]

``--train-step`` prints the cost of a force-training step through the Trainer (CPU ms per
optimizer step at batch 32 CH4, one thread) and the energy / energy+forces throughput on the
same batch (``benchmarks/train_step.py``).
"""
import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch, Data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

CUTOFF = 5.0


# ----------------------------------------------------------------------------- structures
def random_methanes(num, generator, min_distance=0.5, dtype=torch.float64):
    """CH4 with C at the origin and 4 H uniform in a 3 Å ball (distances >= min_distance)."""
    structures = []
    while len(structures) < num:
        direction = torch.randn(4, 3, generator=generator, dtype=torch.float64)
        radius = 3.0 * torch.rand(4, 1, generator=generator, dtype=torch.float64) ** (1 / 3)
        pos = torch.cat([torch.zeros(1, 3, dtype=torch.float64),
                         direction / direction.norm(dim=1, keepdim=True) * radius])
        distance = torch.cdist(pos, pos) + 10 * torch.eye(5, dtype=torch.float64)
        if distance.min() >= min_distance:
            structures.append(Data(z=torch.tensor([6, 1, 1, 1, 1]), pos=pos.to(dtype)))
    return structures


def water_box(per_side, generator, dtype=torch.float64):
    """per_side^3 water-like molecules (O-H 0.96 Å, 104.5°) in a periodic cubic box at
    ~0.1 atoms/Å^3, O on a jittered grid, random orientations."""
    n = per_side ** 3
    length = (3 * n / 0.1) ** (1 / 3)
    grid = torch.stack(torch.meshgrid(*[torch.arange(per_side)] * 3, indexing="ij"), -1)
    oxygen = (grid.reshape(-1, 3).double() + 0.5) * (length / per_side)
    oxygen = oxygen + 0.3 * (torch.rand(n, 3, generator=generator, dtype=torch.float64) - 0.5)
    angle = math.radians(104.5)
    arms = torch.tensor([[0.96, 0.0, 0.0], [0.96 * math.cos(angle), 0.96 * math.sin(angle), 0.0]],
                        dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    hydrogen = oxygen[:, None, :] + arms @ q.transpose(1, 2)  # [n, 2, 3]
    pos = torch.cat([oxygen[:, None], hydrogen], dim=1).reshape(-1, 3)
    return Data(z=torch.tensor([8, 1, 1]).repeat(n), pos=pos.to(dtype),
                cell=(length * torch.eye(3, dtype=torch.float64))[None].to(dtype),
                pbc=torch.ones(1, 3, dtype=torch.bool))


SYSTEMS = {
    "CH4 x 64": lambda g: Batch.from_data_list(random_methanes(64, g)),
    "CH4 x 512": lambda g: Batch.from_data_list(random_methanes(512, g)),
    "water 192": lambda g: Batch.from_data_list([water_box(4, g)]),
    "water 1536": lambda g: Batch.from_data_list([water_box(8, g)]),
}
# The double backward of a force-training step keeps ~27 MB per water atom (float32).
NO_TRAIN_STEP = {"water 1536": "needs ~40 GB of RAM (OOM-killed on a 23 GB machine)"}
MODES = [("forward", "fused"), ("forward", "explicit"), ("energy+forces", "fused"),
         ("energy+forces", "explicit"), ("train step", "explicit")]


# ----------------------------------------------------------------------------- one row
def run_row(system, task, attention, device, repeats, threads):
    """Times one (system, task, attention) row; returns a dict (runs in a subprocess)."""
    from torch_pet import PET
    from torch_pet.nn.derivatives import energy_and_forces

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = SYSTEMS[system](torch.Generator().manual_seed(0)).to(device)
    data.pos = data.pos.float()
    if "cell" in data:
        data.cell = data.cell.float()
    model = PET(species=(1, 6, 8), attention=attention).to(device)
    model.train(task == "train step")

    def call():
        if task == "forward":
            with torch.no_grad():
                model(data)
        elif task == "energy+forces":
            energy_and_forces(model, data)
        else:
            result = energy_and_forces(model, data, create_graph=True)
            result["forces"].square().mean().backward()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    call()  # warm-up; when it is slow (> 5 s) it is the single measurement
    sync()
    times = [time.perf_counter() - start]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if times[0] < 5.0:
        times = []
    for _ in range(repeats if not times else 0):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        memory = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.no_grad():
        from torch_pet import ops
        edge_index, _ = ops.radius_graph(data.pos, CUTOFF, data.batch,
                                         cell=data.get("cell"), pbc=data.get("pbc"))
    return dict(atoms=data.num_nodes, edges=edge_index.shape[1], seconds=statistics.median(times),
                memory_mib=memory, rss_before_mib=rss_before)


def throughput_table(args):
    from torch_pet import PET
    size = sum(p.numel() for p in PET(species=(1, 6, 8)).parameters()) / 1e6
    print(f"PET throughput, default model size ({size:.2f} M parameters, 3 species), "
          f"R_c = {CUTOFF} Å, float32, device {args.device}, "
          f"{args.threads} threads, median of {args.repeats}")
    memory_label = "peak MiB (CUDA alloc)" if args.device == "cuda" else "peak RSS MiB (+ over base)"
    header = f"{'system':<11} {'atoms':>6} {'edges/atom':>10} {'task':<14} {'attention':<9} " \
             f"{'time s':>8} {'atoms/s':>9} {'fused/expl':>10}  {memory_label}"
    print(header)
    print("-" * len(header))
    systems = ["CH4 x 64", "water 192"] if args.quick else list(SYSTEMS)
    for system in systems:
        rows = {}
        for task, attention in MODES:
            if task == "train step" and system in NO_TRAIN_STEP and args.device == "cpu":
                print(f"{system:<11} {'':>6} {'':>10} {task:<14} {attention:<9} skipped: "
                      f"{NO_TRAIN_STEP[system]}")
                continue
            command = [sys.executable, __file__, "--row", json.dumps([system, task, attention]),
                       "--device", args.device, "--repeats", str(args.repeats),
                       "--threads", str(args.threads)]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{system:<11} {task:<14} {attention:<9} FAILED: {out.stderr.strip()[-300:]}")
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows[(task, attention)] = row
            ratio = ""
            if attention == "explicit" and (task, "fused") in rows:
                ratio = f"{row['seconds'] / rows[(task, 'fused')]['seconds']:.2f}"
            memory = f"{row['memory_mib']:.0f}" if args.device == "cuda" else \
                f"{row['memory_mib']:.0f} (+{row['memory_mib'] - row['rss_before_mib']:.0f})"
            print(f"{system:<11} {row['atoms']:>6} {row['edges'] / row['atoms']:>10.1f} "
                  f"{task:<14} {attention:<9} {row['seconds']:>8.3f} "
                  f"{row['atoms'] / row['seconds']:>9.0f} {ratio:>10}  {memory}", flush=True)
    print("fused/expl = explicit time / fused time (>1: fused faster). Calls slower than 5 s are "
          "timed once (the warm-up). Peak RSS of the row's process; in parentheses its growth "
          "over the RSS before the first call (model, data and interpreter).")


# ----------------------------------------------------------------------------- smoke training
def morse_energy(data):
    """Pairwise Morse energy (eV) of CH4 structures: C-H D=4.5, a=1.8, r0=1.09; H-H D=0.2,
    a=1.2, r0=1.8. Differentiable in data.pos.

    Shapes: returns [B]
    """
    pos = data.pos.reshape(-1, 5, 3)
    distance = (pos[:, :, None] - pos[:, None, :]).norm(dim=-1)  # [B, 5, 5]
    ch = distance[:, 0, 1:]
    hh = distance[:, 1:, 1:][:, torch.triu_indices(4, 4, 1)[0], torch.triu_indices(4, 4, 1)[1]]
    morse = lambda r, d, a, r0: d * ((1 - torch.exp(-a * (r - r0))) ** 2 - 1)  # noqa: E731
    return morse(ch, 4.5, 1.8, 1.09).sum(1) + morse(hh, 0.2, 1.2, 1.8).sum(1)


def label(structures):
    batch = Batch.from_data_list(structures)
    pos = batch.pos.clone().requires_grad_(True)
    batch.pos = pos
    energy = morse_energy(batch)
    forces = -torch.autograd.grad(energy.sum(), pos)[0]
    for s, data in enumerate(structures):
        data.energy = energy[s:s + 1].detach()
        data.forces = forces[5 * s:5 * s + 5]
    return structures


def smoke_train(args):
    from torch_geometric.loader import DataLoader

    from torch_pet import PET
    from torch_pet.nn.derivatives import energy_and_forces

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    structures = label(random_methanes(args.num_train + 100, generator, min_distance=0.7,
                                       dtype=torch.float32))
    train, val = structures[:args.num_train], structures[args.num_train:]
    energies = torch.cat([d.energy for d in train])
    model = PET(species=(1, 6), hidden_channels=args.channels, ff_channels=4 * args.channels,
                head_channels=args.channels)
    with torch.no_grad():  # one self energy per CH4 (all compositions equal): put it on C
        model.self_energies[1, 0] = energies.mean()
    sigma_e = energies.std().item()
    sigma_f = torch.cat([d.forces for d in train]).std().item()
    val_batch = Batch.from_data_list(val)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"smoke training: {len(train)} train / {len(val)} val CH4 with a Morse potential, "
          f"PET d={args.channels} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
          f"parameters), Adam lr {args.lr}, batch {args.batch_size}, {args.seconds:.0f} s budget, "
          f"{args.threads} threads; force std {sigma_f:.3f} eV/Å, energy std {sigma_e:.3f} eV")

    def validate():
        model.eval()
        result = energy_and_forces(model, val_batch)
        model.train()
        rmse_f = (result["forces"] - val_batch.forces).square().mean().sqrt().item()
        rmse_e = (result["energy"] - val_batch.energy).square().mean().sqrt().item()
        return rmse_e, rmse_f

    rmse_e, rmse_f = validate()
    print(f"{'epoch':>5} {'time s':>7} {'val E RMSE eV':>14} {'val F RMSE eV/Å':>16}")
    print(f"{0:>5} {0.0:>7.1f} {rmse_e:>14.4f} {rmse_f:>16.4f}")
    first = rmse_f
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True)
    start, epoch, elapsed = time.perf_counter(), 0, 0.0
    model.train()
    while elapsed < args.seconds:
        epoch += 1
        for group in optimizer.param_groups:  # linear decay to 10% over the time budget
            group["lr"] = args.lr * max(0.1, 1.0 - elapsed / args.seconds)
        for batch in loader:
            result = energy_and_forces(model, batch, create_graph=True)
            loss = 0.1 * (result["energy"] - batch.energy).square().mean() / sigma_e ** 2 + \
                (result["forces"] - batch.forces).square().mean() / sigma_f ** 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        elapsed = time.perf_counter() - start
        if epoch % args.report_every == 0:
            rmse_e, rmse_f = validate()
            print(f"{epoch:>5} {elapsed:>7.1f} {rmse_e:>14.4f} {rmse_f:>16.4f}", flush=True)
    rmse_e, rmse_f = validate()
    print(f"final after {epoch} epochs, {elapsed:.0f} s of training: val force RMSE "
          f"{first:.4f} -> {rmse_f:.4f} eV/Å ({first / rmse_f:.1f}x lower), energy RMSE "
          f"{rmse_e:.4f} eV")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="only the small systems")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--smoke-train", action="store_true")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--num-train", type=int, default=300)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--report-every", type=int, default=5)
    parser.add_argument("--train-step", nargs=argparse.REMAINDER,
                        help="the rest goes to benchmarks/train_step.py")
    args = parser.parse_args()
    if args.train_step is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from train_step import main as train_step_main

        sys.exit(train_step_main(args.train_step))
    if args.row:
        system, task, attention = json.loads(args.row)
        print(json.dumps(run_row(system, task, attention, args.device, args.repeats, args.threads)))
    elif args.smoke_train:
        smoke_train(args)
    else:
        throughput_table(args)


if __name__ == "__main__":
    main()
