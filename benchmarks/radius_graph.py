"""Radius-graph benchmark: torch_pet vs vesin vs torch-cluster vs the pure-PyTorch reference.

Systems (r = 5 A): (a) a batch of 1,000 non-periodic molecules of ~20 atoms; (b) periodic
cubic boxes of 1k, 10k and 100k atoms at liquid-like density (0.1 atoms / A^3, jittered
lattice). Every method runs with the same number of threads (``--threads``, default: all
cores) and returns the full list (both directions) with integer shifts; torch_pet's output
is also sorted by (centre, neighbour, shift), vesin runs unsorted (its fastest mode).
Timings are the median of ``--repeats`` runs after one warm-up, wall clock and process CPU
time, taken back to back in one process. With ``--device cuda`` torch_pet, torch-cluster
and the reference run on the GPU (timed with torch.cuda.synchronize), vesin stays on the
CPU. Usage:

    python benchmarks/radius_graph.py [--device cpu|cuda] [--threads 2] [--repeats 5] [--sizes 1000 10000 100000]
"""
import argparse
import math
import os
import statistics
import time

import numpy as np
import torch

from torch_pet import _extension
from torch_pet.ops import radius_graph
from torch_pet.ops.reference import radius_graph_reference

CUTOFF = 5.0
DENSITY = 0.1  # atoms / A^3


def molecule_batch(num_molecules=1000, seed=0):
    """~20 atoms per molecule (16-24), placed with a minimum distance of 1 A in a ball."""
    g = np.random.default_rng(seed)
    molecules = []
    for _ in range(num_molecules):
        n = int(g.integers(16, 25))
        radius = (3 * n / (4 * math.pi * DENSITY)) ** (1 / 3)
        atoms = []
        while len(atoms) < n:
            x = g.uniform(-radius, radius, 3)
            if np.linalg.norm(x) <= radius and all(np.linalg.norm(x - a) > 1.0 for a in atoms):
                atoms.append(x)
        molecules.append(np.array(atoms))
    pos = torch.tensor(np.concatenate(molecules))
    batch = torch.repeat_interleave(torch.arange(num_molecules), torch.tensor([len(m) for m in molecules]))
    return pos, batch, molecules


def periodic_box(num_atoms, seed=0):
    """Jittered simple-cubic lattice in a cubic box at DENSITY (no overlapping atoms)."""
    side_atoms = round(num_atoms ** (1 / 3))
    spacing = DENSITY ** (-1 / 3)
    grid = torch.stack(torch.meshgrid(*[torch.arange(side_atoms)] * 3, indexing="ij"), -1).reshape(-1, 3)
    g = torch.Generator().manual_seed(seed)
    pos = (grid.double() + 0.3 * (torch.rand(grid.shape, generator=g, dtype=torch.float64) - 0.5)) * spacing
    cell = torch.eye(3, dtype=torch.float64) * side_atoms * spacing
    return pos, cell


def timed(fn, repeats, device=torch.device("cpu")):
    """Median wall and CPU seconds of fn() over `repeats` runs after one warm-up; its result."""
    def run():
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    result = run()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), result


def methods_for_molecules(pos, batch, molecules, threads, with_reference, device=torch.device("cpu")):
    pos, batch = pos.to(device), batch.to(device)
    out = {"torch_pet": lambda: radius_graph(pos, CUTOFF, batch)[0].shape[1]}
    try:
        import vesin

        nl = vesin.NeighborList(cutoff=CUTOFF, full_list=True, n_threads=threads)
        box = np.zeros((3, 3))

        def run_vesin():  # no batch API: one call per molecule
            return sum(len(nl.compute(m, box, False, "ij")[0]) for m in molecules)

        out["vesin (loop)"] = run_vesin
    except ImportError:
        pass
    cluster = _torch_cluster()
    if cluster is not None:
        out["torch-cluster"] = lambda: cluster.radius_graph(pos, CUTOFF, batch, max_num_neighbors=1024).shape[1]
    if with_reference:
        ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=device), torch.bincount(batch).cumsum(0)])
        cells = torch.zeros(len(molecules), 3, 3, dtype=pos.dtype, device=device)
        pbc = torch.zeros(len(molecules), 3, dtype=torch.bool, device=device)
        out["reference"] = lambda: radius_graph_reference(pos, ptr, cells, pbc, CUTOFF)[0].shape[1]
    return out


def methods_for_box(pos, cell, threads, with_reference, device=torch.device("cpu")):
    points, box = pos.numpy(), cell.numpy()  # vesin: CPU
    pos, cell = pos.to(device), cell.to(device)
    out = {"torch_pet": lambda: radius_graph(pos, CUTOFF, cell=cell)[0].shape[1]}
    try:
        import vesin

        nl = vesin.NeighborList(cutoff=CUTOFF, full_list=True, n_threads=threads)
        out["vesin"] = lambda: len(nl.compute(points, box, True, "ijS")[0])
    except ImportError:
        pass
    if with_reference:
        ptr = torch.tensor([0, pos.shape[0]], device=device)
        pbc = torch.ones(1, 3, dtype=torch.bool, device=device)
        out["reference"] = lambda: radius_graph_reference(pos, ptr, cell[None], pbc, CUTOFF)[0].shape[1]
    return out


def _torch_cluster():
    try:
        import torch_cluster

        return torch_cluster
    except ImportError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (torch_pet, torch-cluster, reference)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--molecules", type=int, default=1000)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False on this machine")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"torch_pet extension: {_extension.WITH_EXTENSION}, "
          f"threads: {args.threads} (torch.set_num_threads and vesin n_threads), r = {CUTOFF} A, "
          f"median of {args.repeats}")
    if _torch_cluster() is None:
        print("torch-cluster: not installed (not built here), column omitted")
    rows = []
    pos, batch, molecules = molecule_batch(args.molecules)
    cases = [(f"{args.molecules} molecules, {pos.shape[0]} atoms", pos.shape[0],
              methods_for_molecules(pos, batch, molecules, args.threads, with_reference=True,
                                    device=device))]
    for n in args.sizes:
        box_pos, cell = periodic_box(n)
        cases.append((f"periodic box, {box_pos.shape[0]} atoms", box_pos.shape[0],
                      methods_for_box(box_pos, cell, args.threads, with_reference=box_pos.shape[0] <= 1000,
                                      device=device)))
    for name, num_atoms, methods in cases:
        ours = None
        for method, fn in methods.items():
            wall, cpu, num_edges = timed(fn, args.repeats if method != "reference" else 1,
                                         device if "vesin" not in method else torch.device("cpu"))
            if method == "torch_pet":
                ours = (wall, num_edges)
            elif num_edges != ours[1]:
                raise RuntimeError(f"{method} found {num_edges} edges, torch_pet {ours[1]} ({name})")
            rows.append((name, method, num_atoms, num_edges, wall, cpu, wall / ours[0]))
    header = ("system", "method", "atoms", "edges", "wall ms", "cpu ms", "us/atom", "Mpairs/s", "time / torch_pet")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, method, num_atoms, num_edges, wall, cpu, ratio in rows:
        print(f"| {name} | {method} | {num_atoms} | {num_edges} | {wall * 1e3:.1f} | {cpu * 1e3:.1f} | "
              f"{wall / num_atoms * 1e6:.2f} | {num_edges / wall / 1e6:.1f} | {ratio:.2f} |")
    boxes = [(n, wall) for name, method, n, _, wall, _, _ in rows if method == "torch_pet" and "box" in name]
    if len(boxes) > 1:
        (n0, t0), (n1, t1) = boxes[0], boxes[-1]
        print(f"torch_pet scaling {n0} -> {n1} atoms: time x{t1 / t0:.1f} for atoms x{n1 / n0:.0f} "
              f"(exponent {math.log(t1 / t0) / math.log(n1 / n0):.2f}; 1 = linear)")


if __name__ == "__main__":
    main()
