"""One rank of the DDP double-backward check (run by test_distributed.py with torchrun-like
environment variables): force-training gradients of a tiny float64 PET under DDP vs one
process on the whole batch.

Usage: python ddp_grad_worker.py OUT_FILE find_unused(0|1)
"""
import sys

import torch
from torch_geometric.data import Batch

from torch_pet.datasets import DistortedMethane
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.nn.pet import PET
from torch_pet.training import distributed as ddp


def loss_of(model, batch, counts):
    """The Trainer's loss: sums of squared energy and force errors over global counts."""
    out = energy_and_forces(model, batch, create_graph=True)
    e = (out["energy"].reshape(-1) - batch.energy).pow(2).sum() / counts[0]
    f = (out["forces"] - batch.forces).pow(2).sum() / counts[1]
    return 0.1 * e + f


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def main(out: str, find_unused: bool) -> None:
    torch.set_num_threads(1)
    world = ddp.world_from_env("torchrun")
    data = list(DistortedMethane("train", num_structures=4, dtype=torch.float64))
    full = Batch.from_data_list(data)
    counts = (full.num_graphs, full.forces.numel())
    torch.manual_seed(0)
    model = PET(species=[1, 6], hidden_channels=8, num_heads=2, num_layers=1, num_blocks=2,
                ff_channels=16, head_channels=8, cutoff=3.0).double()
    with ddp.process_group(world, torch.device("cpu")):
        # reference: one process, the whole batch
        loss_of(model, full, counts).backward()
        reference = grads(model)
        model.zero_grad(set_to_none=True)
        mine = Batch.from_data_list(data[2 * world.rank:2 * world.rank + 2])
        # this rank alone (what an unsynchronised rank would step with)
        (world.world_size * loss_of(model, mine, counts)).backward()
        local = grads(model)
        model.zero_grad(set_to_none=True)
        net = ddp.wrap_model(model, torch.device("cpu"), find_unused)
        for _ in range(2):  # two steps: DDP checks the previous reduction finished
            model.zero_grad(set_to_none=True)
            (world.world_size * loss_of(net, mine, counts)).backward()
        synced = grads(model)
        if world.is_main:
            torch.save({"reference": reference, "local": local, "synced": synced}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] == "1")
