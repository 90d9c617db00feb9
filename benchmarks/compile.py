"""Eager vs compiled vs exported PET (and ECSE-PET): time per energy+forces evaluation.

Rows (each: median wall time over ``--repeats`` calls after warm-up, the first-call time
that includes compilation, and the speed-up over eager):

* ``eager``: ``energy_and_forces(PET, data)``.
* ``compile(PET)``: ``torch.compile(PET, dynamic=True)`` of the whole model (graph breaks at
  the host-side checks and the neighbour list; see ``tests/test_export.py``).
* ``compile(graph part)``: the graph built eagerly, ``torch.compile(PETGraphModel,
  fullgraph=True, dynamic=True)`` for the rest (``torch_pet.export.ExportedPET``).
* ``export(graph part)``: ``torch.export`` of ``PETGraphModel`` run through
  ``ExportedProgram.module()`` (an un-optimised aten graph: measures the overhead, not a
  speed-up).
* ECSE rows (speed-up relative to ``ECSE eager``): ``compile(ECSE wrapper)`` (the whole
  wrapper, with graph breaks), ``ECSE + compile(PET graph part)`` (eager frames around a
  compiled backbone), ``compile(ECSE graph part)`` / ``export(ECSE graph part)``: the
  integer structure built eagerly, frames + copies + PET + average as one graph
  (``torch_pet.export.ECSEGraphModel``), compiled or exported.

Systems: a batch of ``--molecules`` distorted CH4, a periodic water box (64 H2O, 192
atoms); for ECSE a batch of ``--ecse-molecules`` CH4 and one CH4 (the MD case). Model: d = ``--hidden`` (default 64), 4 heads, 2 layers, 2 blocks, R_c = 5 Å.

    python benchmarks/compile.py [--backend inductor|aot_eager] [--threads 2] [--repeats 5]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from torch_pet import PET, ECSESymmetrizer  # noqa: E402
from torch_pet.export import (ECSEGraphModel, ExportedECSE, ExportedPET,  # noqa: E402
                              PETGraphModel, export_ecse, export_pet)
from torch_pet.nn.derivatives import energy_and_forces  # noqa: E402
from torch_pet.testing import random_methane, water_box  # noqa: E402


def timed(model, data, repeats: int):
    """First-call wall time, median wall time and median process CPU time per call (the
    CPU time is robust to other processes sharing the cores; with one thread it is the
    better measure of the work)."""
    start = time.perf_counter()
    energy_and_forces(model, data)
    first = time.perf_counter() - start
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        energy_and_forces(model, data)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return first, statistics.median(wall), statistics.median(cpu)


def check(model, reference, data):
    a, b = energy_and_forces(model, data), energy_and_forces(reference, data)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--molecules", type=int, default=32)
    parser.add_argument("--ecse-molecules", type=int, default=4)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--no-ecse", dest="ecse", action="store_false")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    options = dict(species=[1, 6, 8], hidden_channels=args.hidden, num_heads=4, num_layers=2,
                   num_blocks=2, ff_channels=2 * args.hidden, head_channels=args.hidden,
                   cutoff=5.0, cutoff_width=0.5)
    pet = PET(**options).to(dtype).eval()
    aux = PET(**options, distance_only=True).to(dtype).eval()
    systems = {
        f"{args.molecules} x CH4": Batch.from_data_list(
            [random_methane(i, dtype=dtype) for i in range(args.molecules)]),
        "water box, 192 atoms": water_box(64, generator=0, dtype=dtype),
    }
    ecse_data = Batch.from_data_list([random_methane(i, dtype=dtype)
                                      for i in range(args.ecse_molecules)])
    example = Batch.from_data_list([random_methane(100 + i, dtype=dtype) for i in range(2)])
    start = time.perf_counter()
    program = export_pet(pet, example)
    export_s = time.perf_counter() - start
    graph_compiled = torch.compile(PETGraphModel(pet), fullgraph=True, dynamic=True,
                                   backend=args.backend)
    variants = {
        "eager": pet,
        "compile(PET)": torch.compile(pet, dynamic=True, backend=args.backend),
        "compile(graph part)": ExportedPET(pet, graph_compiled),
        "export(graph part)": ExportedPET(pet, program.module()),
    }
    rows, failures = [], []

    def add_rows(system, data, models, reference):
        base = None
        for name, model in models.items():
            try:
                first, wall, cpu = timed(model, data, args.repeats)
            except Exception as err:  # a compiler failure is a result too: report it, go on
                reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:80] if str(err).strip() else ''}"
                failures.append((system, name, reason))
                print(f"  {system}: {name} FAILED ({reason})", file=sys.stderr, flush=True)
                continue
            base = base or cpu
            rows.append((system, data.pos.shape[0], name, first, wall, cpu, base / cpu,
                         check(model, reference, data)))
            print(f"  {system}: {name} done", file=sys.stderr, flush=True)

    for system, data in systems.items():
        add_rows(system, data, variants, pet)
    if args.ecse:
        eager = ECSESymmetrizer(pet, aux_model=aux)
        start = time.perf_counter()
        ecse_program = export_ecse(eager, example)
        ecse_export_s = time.perf_counter() - start
        ecse_compiled = torch.compile(ECSEGraphModel(eager), fullgraph=True, dynamic=True,
                                      backend=args.backend)
        for system, data in ((f"{args.ecse_molecules} x CH4, ECSE", ecse_data),
                             ("1 x CH4, ECSE", random_methane(7, dtype=dtype))):
            add_rows(system, data, {
                "ECSE eager": eager,
                "compile(ECSE wrapper)": torch.compile(eager, dynamic=True, backend=args.backend),
                "ECSE + compile(PET graph part)": ECSESymmetrizer(
                    ExportedPET(pet, graph_compiled), aux_model=aux),
                "compile(ECSE graph part)": ExportedECSE(eager, ecse_compiled),
                "export(ECSE graph part)": ExportedECSE(eager, ecse_program.module())}, eager)
        export_s = f"{export_s:.1f} s (PET), {ecse_export_s:.1f} s (ECSE-PET)"
    else:
        export_s = f"{export_s:.1f} s"

    print(f"\nPET d={args.hidden}, 2 blocks x 2 layers, R_c 5 Å, {args.dtype}, "
          f"{args.threads} threads, backend {args.backend}, torch {torch.__version__}; "
          f"energy + forces per call (median of {args.repeats}); torch.export took "
          f"{export_s}\n")
    print("| system | atoms | variant | first call (s) | wall per call (ms) | CPU per call (ms) "
          "| speed-up (CPU) vs first row | max abs diff vs eager |")
    print("|---|---|---|---|---|---|---|---|")
    for system, atoms, name, first, wall, cpu, ratio, diff in rows:
        print(f"| {system} | {atoms} | {name} | {first:.1f} | {1000 * wall:.1f} | "
              f"{1000 * cpu:.1f} | {ratio:.2f}x | {diff:.1e} |")
    for system, name, reason in failures:
        print(f"| {system} | | {name} | failed: {reason} | | | | |")


if __name__ == "__main__":
    main()
