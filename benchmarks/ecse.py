"""ECSE cost: ECSE-wrapped vs plain PET, energies + forces, structure and atom mode.

For each system the table gives the frames the wrapper averages over (per pool after
pruning, and the candidates before pruning), the atoms the backbone evaluates relative to
the plain model ("evaluated"), the time of the plain and of the wrapped model, their ratio,
and the ratio divided by "evaluated" (1.0 = no overhead beyond the backbone calls; target
<= 1.5), plus the time per atom. Structure mode evaluates one copy of the structure per
frame, so "evaluated" = frames per structure. Atom mode evaluates, per frame of every atom,
that atom's receptive-field subgraph; its time per atom should stay flat with the size.

Models (float32): structure mode PET(d=64, 4 heads, 2 layers, 2 blocks, cutoff 5 Å);
atom mode a smaller PET(d=64, 4 heads, 2 layers, 1 block, cutoff 3.5 Å, per atom), so that
the receptive-field subgraphs hold ~20 atoms (with 2 blocks x 5 Å a subgraph of water would
hold ~400 atoms). Both modes use R_out = the model cutoff for the frames.

    python benchmarks/ecse.py                 # a few minutes on 2 CPU cores
    python benchmarks/ecse.py --large         # + structure mode on 1,536-atom water (long)
    python benchmarks/ecse.py --device cuda --repeats 5
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from torch_pet import PET, ECSESymmetrizer  # noqa: E402
from torch_pet.nn.derivatives import energy_and_forces  # noqa: E402
from torch_pet.testing import random_methane, random_molecule, water_box  # noqa: E402

SPECIES = (1, 6, 7, 8)


def _systems(large: bool, ch4_batch: int, qm9_batch: int):
    """(name, data, modes) of the benchmark, float32."""
    f32 = torch.float32
    return [
        (f"CH4 x{ch4_batch}", Batch.from_data_list([random_methane(i, f32) for i in range(ch4_batch)]),
         ("structure", "atom")),
        (f"18-atom molecules x{qm9_batch}",
         Batch.from_data_list([random_molecule(18, generator=i, dtype=f32) for i in range(qm9_batch)]),
         ("structure", "atom")),
        ("water 192", Batch.from_data_list([water_box(64, generator=0, dtype=f32)]), ("structure", "atom")),
        ("water 1536", Batch.from_data_list([water_box(512, generator=0, dtype=f32)]),
         ("structure", "atom") if large else ("atom",)),
    ]


def _models(mode: str):
    common = dict(species=SPECIES, hidden_channels=64, num_heads=4, num_layers=2, ff_channels=128,
                  head_channels=64)
    if mode == "structure":
        return PET(**common, num_blocks=2, cutoff=5.0)
    return PET(**common, num_blocks=1, cutoff=3.5, per_atom=True)


class _Sum(torch.nn.Module):
    """Energies [B] of a per-atom model."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, data):
        atomic = self.model(data)
        return atomic.new_zeros(data.num_graphs, atomic.shape[1]).index_add(0, data.batch, atomic)


def _time(fn, repeats: int, device) -> float:
    """Best time of ``repeats`` calls after one warm-up (seconds): CPU time of this process
    on the CPU (robust to other processes on a shared machine), wall time on CUDA. A call
    slower than 5 s is measured once (its warm-up is the measurement)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    first = once()
    return first if first > 5.0 else min(once() for _ in range(repeats))


def _row(name, data, mode, repeats, device, chunk_size, no_checkpoint_atoms):
    model = _models(mode).to(device)
    model.eval()
    plain = model if mode == "structure" else _Sum(model)
    sym = ECSESymmetrizer(model, mode=mode, chunk_size=chunk_size).to(device)
    data = data.to(device)
    frames = sym.frames(data)
    num_atoms, num_pools = data.num_nodes, (data.num_graphs if mode == "structure" else data.num_nodes)
    counts = torch.bincount(data.batch, minlength=data.num_graphs)
    if mode == "structure":
        evaluated = float(counts[frames.pool].sum()) / num_atoms
    else:
        # atoms of every (atom, frame) subgraph: the atom itself and its receptive-field neighbours
        from torch_pet.ops.radius_graph import radius_graph

        edge_index, _ = radius_graph(data.pos, sym.receptive_field, data.batch,
                                     cell=getattr(data, "cell", None), pbc=getattr(data, "pbc", None))
        sizes = 1 + torch.bincount(edge_index[1], minlength=num_atoms)
        evaluated = float(sizes[frames.centre].sum()) / num_atoms
    t_plain = _time(lambda: energy_and_forces(plain, data), repeats, device)
    t_frames = _time(lambda: sym.frames(data), repeats, device)
    t_sym = _time(lambda: energy_and_forces(sym, data), repeats, device)
    # The same without activation checkpointing, where all copies fit in memory: the
    # difference is the cost of recomputing chunks in the backward pass.
    t_unchecked = None
    if evaluated * num_atoms <= no_checkpoint_atoms:
        unchecked = ECSESymmetrizer(model, mode=mode, chunk_size=chunk_size, checkpoint=False).to(device)
        t_unchecked = _time(lambda: energy_and_forces(unchecked, data), repeats, device)
    return dict(system=name, mode=mode, atoms=num_atoms,
                frames=frames.frames.shape[0] / num_pools,
                candidates=float(frames.num_candidates.float().mean()),
                evaluated=evaluated, plain=t_plain, frames_time=t_frames, sym=t_sym,
                ratio=t_sym / t_plain, overhead=t_sym / t_plain / evaluated,
                per_atom=t_sym / num_atoms,
                no_checkpoint=None if t_unchecked is None else t_unchecked / t_plain / evaluated)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--large", action="store_true", help="also structure mode on 1,536 atoms")
    parser.add_argument("--ch4-batch", type=int, default=100)
    parser.add_argument("--qm9-batch", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--no-checkpoint-atoms", type=int, default=12000,
                        help="also time checkpoint=False when the copies hold at most this many atoms")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--only", default=None, help="run only systems whose name contains this")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    clock = "wall time" if device.type == "cuda" else "CPU time of the process"
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"chunk_size {args.chunk_size}, {clock}, best of {args.repeats}, energies + forces, "
          "float32", flush=True)
    header = (f"{'system':<26} {'mode':<9} {'atoms':>6} {'frames':>7} {'cands':>7} {'evaluated':>9} "
              f"{'plain ms':>9} {'frames ms':>9} {'ECSE ms':>10} {'ratio':>7} {'ratio/eval':>10} {'no-ckpt':>8} "
              f"{'us/atom':>8}")
    print(header)
    print("-" * len(header), flush=True)
    rows = []
    for name, data, modes in _systems(args.large, args.ch4_batch, args.qm9_batch):
        if args.only and args.only not in name:
            continue
        for mode in modes:
            row = _row(name, data, mode, args.repeats, device, args.chunk_size, args.no_checkpoint_atoms)
            rows.append(row)
            print(f"{row['system']:<26} {row['mode']:<9} {row['atoms']:>6} {row['frames']:>7.2f} "
                  f"{row['candidates']:>7.1f} {row['evaluated']:>9.2f} {1e3 * row['plain']:>9.1f} "
                  f"{1e3 * row['frames_time']:>9.1f} {1e3 * row['sym']:>10.1f} {row['ratio']:>7.2f} "
                  f"{row['overhead']:>10.2f} "
                  f"{'-' if row['no_checkpoint'] is None else format(row['no_checkpoint'], '.2f'):>8} "
                  f"{1e6 * row['per_atom']:>8.0f}", flush=True)
    print("\nframes: per structure (structure mode) or per atom (atom mode), after pruning; cands: "
          "frames with nonzero weight before pruning;\nevaluated: atoms the backbone sees / atoms; "
          "ratio/eval: (ECSE time / plain time) / evaluated, target <= 1.5.")
    atom_rows = {row["system"]: row for row in rows if row["mode"] == "atom" and "water" in row["system"]}
    if len(atom_rows) == 2:
        small, big = atom_rows["water 192"], atom_rows["water 1536"]
        # The default checkpoint="auto" keeps all activations where they fit the budget (192
        # atoms) and recomputes chunks where not (1536): compare like with like as well.
        waters = {name: data for name, data, _ in _systems(False, 1, 1) if name in atom_rows}
        checked = {}
        for name, data in waters.items():
            model = _models("atom").to(device).eval()
            sym = ECSESymmetrizer(model, mode="atom", chunk_size=args.chunk_size,
                                  checkpoint=True).to(device)
            data = data.to(device)
            checked[name] = _time(lambda: energy_and_forces(sym, data), args.repeats, device) / data.num_nodes
        print(f"atom mode time per atom, water 1536 / water 192: {big['per_atom'] / small['per_atom']:.2f} "
              f"with the default checkpoint='auto', "
              f"{checked['water 1536'] / checked['water 192']:.2f} with checkpoint=True at both sizes "
              "(target 0.75 - 1.25)")


if __name__ == "__main__":
    main()
