"""Any PyG model that meets the backbone contract: PyG's SchNet through torch_pet.

:class:`torch_pet.nn.adapters.SchNetBackbone` runs the layers of
``torch_geometric.nn.models.SchNet`` on torch_pet's neighbour list and provides what
:mod:`torch_pet.backbone` asks for (species, self energies, cutoff, per_atom, ...). This
script then uses it everywhere PET goes:

1. trains it with the :class:`~torch_pet.training.Trainer` (energies and forces, self
   energies by least squares, random rotations) on the bundled distorted-methane set;
2. wraps it in :class:`~torch_pet.ECSESymmetrizer` (with itself as the auxiliary model:
   SchNet is invariant, so ECSE must reproduce it to round-off, a check of the pipeline);
3. saves a checkpoint and loads it back (a class of the user's: passed explicitly,
   ``load_model(path, extra_classes=...)``);
4. computes energy, forces and per-atom energies of a test structure with the ASE
   calculator, raw and symmetrized.

    python examples/train_schnet.py                # ~40 s on one CPU core
    python examples/train_schnet.py --epochs 40    # ~70 s: test energy MAE 46 meV/atom
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from torch_pet import ECSESymmetrizer  # noqa: E402
from torch_pet.calculator import PETCalculator  # noqa: E402
from torch_pet.checkpoint import load_model, save_checkpoint  # noqa: E402
from torch_pet.datasets import DataConfig, load_splits  # noqa: E402
from torch_pet.evaluate import error_metrics, predict  # noqa: E402
from torch_pet.nn.adapters import SchNetBackbone  # noqa: E402
from torch_pet.nn.derivatives import energy_and_forces  # noqa: E402
from torch_pet.training import Trainer, TrainingConfig  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-train", type=int, default=1000, help="training structures")
    parser.add_argument("--num-val", type=int, default=100, help="validation structures")
    parser.add_argument("--num-test", type=int, default=100, help="test structures")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs")
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    return parser.parse_args(argv)


def run(num_train: int, num_val: int, num_test: int, epochs: int, out: str,
        progress: bool = True, hidden: int = 32) -> dict:
    """Train, symmetrize, save, reload and run SchNet in ASE; returns what it measured."""
    torch.manual_seed(0)
    splits = load_splits(DataConfig(dataset="methane", num_train=num_train, num_val=num_val,
                                    num_test=num_test, dtype="float64"))
    model = SchNetBackbone(splits.species, cutoff=4.0, hidden_channels=hidden,
                           num_filters=hidden, num_interactions=2).double()
    config = TrainingConfig(epochs=epochs, batch_size=16, lr=1e-3, warmup_epochs=0.5,
                            device="cpu", progress=progress, plot=False)
    start = time.perf_counter()
    Trainer(model, splits.train, splits.val, config, out_dir=out).fit()
    result = {"train_s": time.perf_counter() - start}
    model.eval()

    # ECSE around the trained model; an invariant model is its own auxiliary model.
    symmetrized = ECSESymmetrizer(model, aux_model=model)
    test = [splits.test[i] for i in range(min(len(splits.test), 20))]
    for name, net in (("raw", model), ("ecse", symmetrized)):
        metrics = error_metrics(predict(net, test, batch_size=len(test)), test)
        result[f"test_energy_mae_{name}"] = metrics["energy_mae_per_atom"]  # eV/atom
        result[f"test_forces_mae_{name}"] = metrics["forces_mae"]  # eV/Å
    result["ecse_vs_raw_energy"] = max(
        float((symmetrized(data) - model(data)).detach().abs().max()) for data in test[:5])

    # Save, reload (the class is passed explicitly), compare.
    path = str(Path(out) / "schnet.pt")
    save_checkpoint(path, model, aux_model=model)
    loaded = load_model(path, extra_classes={"SchNetBackbone": SchNetBackbone})
    data = test[0]
    before, after = energy_and_forces(model, data), energy_and_forces(loaded, data)
    result["reload_max_difference"] = max(float((before[k] - after[k]).abs().max())
                                          for k in ("energy", "forces"))

    # The ASE calculator: raw and ECSE-symmetrized, with per-atom energies.
    from ase import Atoms

    atoms = Atoms(numbers=data.z.numpy(), positions=data.pos.numpy())
    for name, symmetrize in (("raw", False), ("ecse", True)):
        atoms.calc = PETCalculator(loaded, aux_model=loaded, symmetrize=symmetrize,
                                   dtype=torch.float64)
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        result[f"ase_{name}_energy"] = energy
        result[f"ase_{name}_energy_error"] = abs(energy - float(before["energy"]))
        result[f"ase_{name}_forces_error"] = float(np.abs(
            forces - before["forces"].detach().numpy()).max())
        result[f"ase_{name}_atomic_sum_error"] = abs(
            float(atoms.get_potential_energies().sum()) - energy)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        result = run(args.num_train, args.num_val, args.num_test, args.epochs, out)
    print(f"trained SchNet for {args.epochs} epochs in {result['train_s']:.1f} s")
    for name in ("raw", "ecse"):
        print(f"test ({name}): energy MAE {1000 * result[f'test_energy_mae_{name}']:.2f} "
              f"meV/atom, forces MAE {result[f'test_forces_mae_{name}']:.3f} eV/Å")
    print(f"max |ECSE - raw| energy {result['ecse_vs_raw_energy']:.2e} eV (SchNet is invariant)")
    print(f"checkpoint reloaded: max difference {result['reload_max_difference']:.1e}")
    for name in ("raw", "ecse"):
        print(f"ASE ({name}): E = {result[f'ase_{name}_energy']:.6f} eV, |dE| "
              f"{result[f'ase_{name}_energy_error']:.1e}, |dF| "
              f"{result[f'ase_{name}_forces_error']:.1e}, sum of per-atom energies off by "
              f"{result[f'ase_{name}_atomic_sum_error']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
