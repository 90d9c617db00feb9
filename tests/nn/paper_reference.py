"""A fixed-seed reference of PET with the paper's block, stored before the modern block,
output scaling and the cheaper attention path were added (issue 15), so that a test can
check that ``block="paper"`` still computes exactly what it did.

``compute()`` builds the model and inputs and returns the outputs; ``python
tests/nn/paper_reference.py`` rewrites ``paper_reference.json`` (only ever from code known
to be the paper's block). Values are stored as float64 hex strings (exact).
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "data", "paper_reference.json")


def compute() -> dict:
    """Energies and forces (float64), eval (fused attention) and train (explicit attention,
    forces with create_graph), plus the gradient of a force loss w.r.t. the first block's
    first attention weight: every path of the paper's block, its double backward included.
    """
    sys.path.insert(0, HERE)
    from pet_helpers import batch_of, methane, periodic, small_pet

    from torch_pet.nn.derivatives import energy_and_forces

    torch.manual_seed(1234)
    model = small_pet(num_layers=2).double()
    data = batch_of(methane(seed=1), methane(seed=2), periodic(7))
    out = {}
    model.eval()
    for mode in ("eval", "train"):
        model.train(mode == "train")
        result = energy_and_forces(model, data, create_graph=mode == "train")
        out[f"{mode}_energy"] = result["energy"].detach()
        out[f"{mode}_forces"] = result["forces"].detach()
        if mode == "train":
            weight = model.blocks[0].layers[0].attention.qkv.weight
            (grad,) = torch.autograd.grad(result["forces"].pow(2).sum(), weight)
            out["train_grad_qkv"] = grad
    return out


def encode(values: dict) -> dict:
    return {k: {"shape": list(v.shape), "hex": [float(x).hex() for x in v.flatten().tolist()]}
            for k, v in values.items()}


def decode(stored: dict) -> dict:
    return {k: torch.tensor([float.fromhex(x) for x in v["hex"]],
                            dtype=torch.float64).reshape(v["shape"])
            for k, v in stored.items() if isinstance(v, dict)}


def machine() -> dict:
    """What the bits may depend on (summation order of vectorised kernels)."""
    return {"torch": torch.__version__.split("+")[0],
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    os.makedirs(os.path.dirname(PATH), exist_ok=True)
    with open(PATH, "w") as f:
        json.dump({"machine": machine(), "values": encode(compute())}, f, indent=0)
    print(f"wrote {PATH}")
