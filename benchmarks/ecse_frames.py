"""Benchmark of ECSE frame generation (torch_pet.ecse.ecse_frames).

Systems: batches of random CH4 (H uniform in a 3 Å ball, all distances >= 0.5 Å) and
periodic water-like boxes (O on a jittered grid at 0.0334 molecules/Å^3, H at 0.96 Å,
HOH 104.5°, random orientations) of 192, 1,536 and 12,288 atoms; R_out = 5 Å. For each
system, pool mode ("structure", "atom") and pair path (compiled kernel, pure-PyTorch
reference), it prints frames per atom before/after pruning, the forward wall and CPU time
(frames/s and µs per atom from the wall time) and forward+backward wall time (gradients
w.r.t. the edge vectors), medians of repeats, with ratios: reference/kernel and µs per atom
relative to the smallest system of the same kind (linear scaling = 1).

    python benchmarks/ecse_frames.py [--dtype float64] [--device cpu] [--repeats 5] [--systems ...]
"""
import argparse
import contextlib
import math
import statistics
import time

import torch

import torch_pet.ecse.frames as frames_module
from torch_pet import _extension
from torch_pet.ecse import ecse_frames
from torch_pet.ops import radius_graph
from torch_pet.ops.reference import ecse_pairs_reference

R_OUT = 5.0


def random_methane(num, generator):
    """C at the origin, 4 H uniform in a 3 Å ball; whole structures redrawn if any distance < 0.5 Å."""
    accepted = []
    while len(accepted) < num:
        direction = torch.randn(2 * num, 4, 3, dtype=torch.float64, generator=generator)
        radius = 3.0 * torch.rand(2 * num, 4, 1, dtype=torch.float64, generator=generator) ** (1 / 3)
        h = direction / direction.norm(dim=-1, keepdim=True) * radius
        pos = torch.cat([torch.zeros(2 * num, 1, 3, dtype=torch.float64), h], dim=1)
        distance = torch.cdist(pos, pos) + 1e3 * torch.eye(5, dtype=torch.float64)
        accepted.extend(pos[distance.flatten(1).min(1).values >= 0.5])
    pos = torch.stack(accepted[:num]).reshape(-1, 3)
    return dict(pos=pos, batch=torch.arange(num).repeat_interleave(5), num_structures=num)


def water_box(molecules_per_side, generator, density=0.0334):
    """Periodic cubic box of molecules_per_side^3 water-like molecules."""
    n = molecules_per_side ** 3
    length = (n / density) ** (1 / 3)
    spacing = length / molecules_per_side
    grid = torch.stack(torch.meshgrid(*[torch.arange(molecules_per_side)] * 3, indexing="ij"), -1)
    oxygen = (grid.reshape(-1, 3).double() + 0.5) * spacing
    oxygen = oxygen + 0.4 * (torch.rand(n, 3, dtype=torch.float64, generator=generator) - 0.5)
    angle = math.radians(104.5)
    local = torch.tensor([[0.96, 0, 0], [0.96 * math.cos(angle), 0.96 * math.sin(angle), 0]], dtype=torch.float64)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, dtype=torch.float64, generator=generator))
    rotation = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # random O(3)
    hydrogen = oxygen[:, None, :] + local @ rotation.transpose(1, 2)  # [n, 2, 3]
    pos = torch.cat([oxygen[:, None, :], hydrogen], dim=1).reshape(-1, 3)
    return dict(pos=pos, batch=torch.zeros(3 * n, dtype=torch.long), num_structures=1,
                cell=torch.eye(3, dtype=torch.float64)[None] * length,
                pbc=torch.ones(1, 3, dtype=torch.bool))


@contextlib.contextmanager
def pair_path(path):
    """Route ecse_frames' pair enumeration through the kernel or the dense reference."""
    original = frames_module.ecse_pairs
    if path == "reference":
        frames_module.ecse_pairs = lambda v, ptr, radius, s_min, ordered: ecse_pairs_reference(
            v.detach(), ptr, radius.detach(), s_min, ordered)
    try:
        yield
    finally:
        frames_module.ecse_pairs = original


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats, device):
    """Median wall time and median CPU time (all threads) of fn; CPU time is the steadier
    of the two on a shared machine."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def run_case(system, mode, path, dtype, device, repeats):
    pos = system["pos"].to(dtype=dtype, device=device)
    batch = system["batch"].to(device)
    cell, pbc = system.get("cell"), system.get("pbc")
    if cell is not None:
        cell, pbc = cell.to(dtype=dtype, device=device), pbc.to(device)
    edge_index, _, vectors = radius_graph(pos, R_OUT, batch, cell=cell, pbc=pbc, return_vectors=True)
    centre = edge_index[1]
    num_atoms = pos.shape[0]
    if mode == "structure":
        pool, num_pools = batch, system["num_structures"]
    else:
        pool, num_pools = torch.arange(num_atoms, device=device), num_atoms

    def forward(v=vectors):
        return ecse_frames(v, centre, num_atoms, pool, num_pools, outer_cutoff=R_OUT)

    def forward_backward():
        v = vectors.detach().requires_grad_()
        out = forward(v)
        (out.weights.sum() + out.frames.sum() + out.aux_weight.sum() + out.inner_cutoff.sum()).backward()

    with pair_path(path):
        out = forward()
        t_forward, cpu_forward = median_time(forward, repeats, device)
        t_backward, _ = median_time(forward_backward, max(1, repeats // 2), device)
    return dict(before=float(out.num_candidates.sum()) / num_atoms, after=out.frames.shape[0] / num_atoms,
                frames=out.frames.shape[0], edges=centre.numel(), r_in=float(out.inner_cutoff.mean()),
                forward=t_forward, cpu_forward=cpu_forward, forward_backward=t_backward, atoms=num_atoms)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-max-atoms", type=int, default=12288,
                        help="skip the reference path above this many atoms")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--systems", nargs="+", default=None,
                        help="subset of: ch4-100 ch4-1000 water-192 water-1536 water-12288")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    builders = {"ch4-100": ("CH4 x 100", lambda: random_methane(100, generator)),
                "ch4-1000": ("CH4 x 1000", lambda: random_methane(1000, generator)),
                "water-192": ("water 192", lambda: water_box(4, generator)),
                "water-1536": ("water 1536", lambda: water_box(8, generator)),
                "water-12288": ("water 12288", lambda: water_box(16, generator))}
    chosen = args.systems or list(builders)
    unknown = sorted(set(chosen) - set(builders))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {list(builders)}")
    systems = [(builders[key][0], builders[key][1]()) for key in chosen]
    paths = ["kernel", "reference"] if _extension.use_extension(device) else ["reference"]
    print(f"torch {torch.__version__}, {device}, {args.dtype}, {torch.get_num_threads()} threads, "
          f"R_out {R_OUT} Å, median of {args.repeats}; extension: {_extension.WITH_EXTENSION}")
    header = (f"{'system':<12} {'N':>6} {'mode':<9} {'path':<9} {'E/N':>5} {'before/N':>8} {'after/N':>7} "
              f"{'R_in':>5} {'fwd ms':>9} {'cpu ms':>8} {'µs/atom':>8} {'kframes/s':>9} {'fwd+bwd ms':>10} "
              f"{'ref/kern':>8} {'µs/atom rel':>11}")
    print(header)
    print("-" * len(header))
    smallest_per_atom = {}
    for name, system in systems:
        for mode in ("structure", "atom"):
            kernel_time = None
            for path in paths:
                if path == "reference" and system["pos"].shape[0] > args.reference_max_atoms:
                    continue
                r = run_case(system, mode, path, dtype, device, args.repeats)
                per_atom = 1e6 * r["forward"] / r["atoms"]
                if path == "kernel":
                    kernel_time = r["forward"]
                ratio = f"{r['forward'] / kernel_time:8.2f}" if path == "reference" and kernel_time else f"{'':>8}"
                key = (name.split()[0], mode, path)
                smallest_per_atom.setdefault(key, per_atom)
                print(f"{name:<12} {r['atoms']:>6} {mode:<9} {path:<9} {r['edges'] / r['atoms']:5.1f} "
                      f"{r['before']:8.2f} {r['after']:7.2f} {r['r_in']:5.2f} {1e3 * r['forward']:9.1f} "
                      f"{1e3 * r['cpu_forward']:8.1f} "
                      f"{per_atom:8.1f} {r['frames'] / r['forward'] / 1e3:9.1f} "
                      f"{1e3 * r['forward_backward']:10.1f} {ratio} {per_atom / smallest_per_atom[key]:11.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
