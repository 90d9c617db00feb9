"""Train PET on QM9 (``torch_geometric.datasets.QM9``) for one target, then evaluate it.

The first run downloads QM9 into ``--root`` (PyG's processed release, about 400 MB when
rdkit is not installed). Targets keep PyG's units: ``U0`` in eV (an extensive energy, so
per-species self energies are fitted and errors are also reported per atom), ``mu`` in
Debye (PyG stores only the dipole magnitude, a scalar). Split: the standard random
110,000 / 10,000 / rest.

    python examples/train_qm9.py --target U0 --epochs 300 --out runs/qm9_U0
    python examples/train_qm9.py --target mu --num-train 10000 --epochs 50

The same run from the command line: ``torch-pet train --dataset qm9 --target U0 ...``.
"""
import argparse

from torch_pet.commands import TrainJob, train
from torch_pet.datasets import DataConfig
from torch_pet.training.config import TrainingConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="data/QM9", help="QM9 folder (downloaded if empty)")
    parser.add_argument("--target", default="U0", help="U0, mu, gap, ... (see torch_pet.datasets.qm9)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--num-train", type=int, default=None, help="default: all 110,000")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=48)  # about 850 atoms
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    job = TrainJob(
        out=args.out or f"runs/qm9_{args.target}", resume=args.resume,
        data=DataConfig(dataset="qm9", data=args.root, target=args.target,
                        num_train=args.num_train),
        training=TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                warmup_epochs=1.0,
                                decay_every_epochs=float(max(args.epochs // 4, 1)),
                                seed=args.seed))
    trainer, splits = train(job)
    test = trainer.validate(splits.test)
    print("test split:", {k: round(v, 6) for k, v in test.items()})


if __name__ == "__main__":
    main()
