"""Cost of one force-training step of PET: ms per optimizer step, through the Trainer.

Two numbers per model (CPU time of this process, so other work on the machine counts
less than in wall time):

* ``trainer``: ``Trainer.fit`` on the bundled methane set (batch ``--batch-size``, energies
  + forces, augmentation, clipping, Adam, the schedule), CPU seconds of ``fit`` over the
  optimizer steps it took: everything a real run pays per step;
* ``model``: one fixed batch, ``energy_and_forces(create_graph=True)`` + backward of the
  loss + ``optimizer.step()``: the model's share.

It also prints the throughput of inference on the same batch (``energy``: forward without
gradients; ``energy+forces``: one backward, eval mode) in structures per CPU second.
``--block`` compares PET's blocks (paper, modern); ``--size paper`` times the paper's size
(d = 128, 3 blocks x 3 layers) instead of d = 64 (2 x 2, the main job's).

    OMP_NUM_THREADS=1 nice -n 0 python benchmarks/train_step.py [--steps 60] [--block paper modern]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SIZES = {
    "d64": dict(hidden_channels=64, num_heads=4, num_layers=2, num_blocks=2, ff_channels=128,
                head_channels=64, cutoff=5.0, cutoff_width=0.2),
    "paper": dict(hidden_channels=128, num_heads=4, num_layers=3, num_blocks=3, ff_channels=512,
                  head_channels=128, cutoff=5.0, cutoff_width=0.2),
}


def _model(size: str, block: str):
    from torch_pet import PET

    options = dict(SIZES[size], species=(1, 6))
    if block != "paper":  # the option does not exist before issue 15
        options["block"] = block
    torch.manual_seed(0)
    return PET(**options)


def trainer_ms(size: str, block: str, batch_size: int, steps: int) -> dict:
    """CPU ms per optimizer step of ``Trainer.fit`` (one epoch of ``steps`` steps)."""
    from torch_pet.datasets import DistortedMethane
    from torch_pet.training import Trainer, TrainingConfig

    data = DistortedMethane("train", num_structures=batch_size * steps)
    config = TrainingConfig(epochs=1, batch_size=batch_size, lr=1e-3, checkpoints=False,
                            progress=False, plot=False, device="cpu")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(_model(size, block), data, None, config, out)
        start = time.process_time()
        trainer.fit()
        cpu = time.process_time() - start
    return dict(ms=1e3 * cpu / trainer.step, steps=trainer.step)


def model_ms(size: str, block: str, batch_size: int, repeats: int) -> dict:
    """CPU ms of the model's part of a step on one fixed batch, and inference throughput."""
    from torch_geometric.data import Batch

    from torch_pet.datasets import DistortedMethane
    from torch_pet.nn.derivatives import energy_and_forces

    batch = Batch.from_data_list(list(DistortedMethane("train", num_structures=batch_size)))
    model = _model(size, block)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step():
        model.train()
        out = energy_and_forces(model, batch, create_graph=True)
        loss = (out["energy"] - batch.energy).pow(2).mean() + \
            (out["forces"] - batch.forces).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def energy():
        model.eval()
        with torch.no_grad():
            model(batch)

    def forces():
        model.eval()
        energy_and_forces(model, batch)

    out = {}
    for name, call in (("train_step", step), ("energy", energy), ("energy+forces", forces)):
        call()
        times = []
        for _ in range(repeats):
            start = time.process_time()
            call()
            times.append(time.process_time() - start)
        out[name] = 1e3 * statistics.median(times)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="d64")
    p.add_argument("--block", nargs="+", default=["paper"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=60, help="Trainer steps timed")
    p.add_argument("--repeats", type=int, default=20, help="fixed-batch repeats (median)")
    p.add_argument("--json", action="store_true", help="one JSON line per block")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for block in args.block:
        row = dict(block=block, size=args.size, batch_size=args.batch_size,
                   load_average=os.getloadavg()[0],
                   trainer=trainer_ms(args.size, block, args.batch_size, args.steps),
                   model=model_ms(args.size, block, args.batch_size, args.repeats))
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        b = args.batch_size
        m = row["model"]
        print(f"PET {args.size} block={block} batch {b} CH4, 1 thread, CPU time, load "
              f"{row['load_average']:.2f}: Trainer step {row['trainer']['ms']:.1f} ms "
              f"({1e3 / row['trainer']['ms']:.1f} steps/CPU-s) | model step "
              f"{m['train_step']:.1f} ms | energy {1e3 * b / m['energy']:.0f} structures/s, "
              f"energy+forces {1e3 * b / m['energy+forces']:.0f} structures/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
