"""Data-loader throughput (structures/s): the bundled methane training split in memory
(``DistortedMethane``) vs on disk (``OnDiskStructures``, memory-mapped, written once by
``write_structures``), shuffled batches of 32 collated by PyG, with 0 (in-process), 1 and 4
worker processes. Each figure is the best of ``--repeats`` full passes, worker start-up
included. Only loading and collating are timed (no model).

    OMP_NUM_THREADS=1 python benchmarks/loader.py [--repeats 2] [--batch-size 32]
"""
import argparse
import os
import tempfile
import time

import torch
from torch_geometric.loader import DataLoader

from torch_pet.datasets import DistortedMethane
from torch_pet.datasets.ondisk import OnDiskStructures, write_structures


def throughput(dataset, batch_size: int, workers: int, repeats: int) -> float:
    best = float("inf")
    for repeat in range(repeats):
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(repeat))
        start = time.perf_counter()
        seen = sum(batch.num_graphs for batch in loader)
        best = min(best, time.perf_counter() - start)
        assert seen == len(dataset)
    return len(dataset) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 4])
    args = parser.parse_args()
    memory = DistortedMethane("train")
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_structures(DistortedMethane("train", dtype=torch.float64), root)
        written = time.perf_counter() - start
        disk = OnDiskStructures(root)
        size = sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root))
        print(f"methane train split: {len(memory)} structures; on disk {size / 1e6:.1f} MB "
              f"(float64), written in {written:.1f} s; batch {args.batch_size}; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print("\n| dataset | workers | structures/s |\n|---|---:|---:|")
        for name, dataset in (("in memory", memory), ("on disk", disk)):
            for workers in args.workers:
                rate = throughput(dataset, args.batch_size, workers, args.repeats)
                print(f"| {name} | {workers} | {rate:,.0f} |", flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
