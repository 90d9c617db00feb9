"""Helpers around ``torch_geometric.datasets.QM9``: targets, units, the standard split.

PyG stores the 19 QM9 targets in ``data.y [1, 19]`` (float32) in these units (PyG's own
conversion from the raw Hartree / kcal/mol values):

====  ===========  ===========  ==============================================
 idx   name         unit         description
====  ===========  ===========  ==============================================
 0     mu           D (Debye)    dipole moment magnitude |mu| (PyG has no vector)
 1     alpha        a0^3         isotropic polarizability
 2-4   homo/lumo/gap eV          orbital energies and gap
 5     r2           a0^2         electronic spatial extent
 6     zpve         eV           zero-point vibrational energy
 7-10  U0, U, H, G  eV           total energies at 0 K / 298.15 K (extensive)
 11    cv           cal/(mol K)  heat capacity
 12-15 U0_atom ...  eV           atomization energies (extensive)
 16-18 A, B, C      GHz          rotational constants
====  ===========  ===========  ==============================================

:class:`QM9ToPET` maps one target onto the package's data convention: extensive energies
go to ``data.energy [1]`` (so the trainer fits per-species self energies and reports
errors per atom), every other target to ``data.y [1, 1]``. ``qm9_split`` gives the
standard random 110,000 / 10,000 / rest split. Nothing here downloads: building
``QM9(root)`` downloads only when ``root`` holds no raw/processed files.
"""
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch_geometric.data import Data


@dataclass(frozen=True)
class QM9Target:
    """One QM9 target: its column in PyG's ``y``, its unit, and whether it is an energy."""

    name: str
    index: int
    unit: str
    energy: bool  # extensive energy -> data.energy and per-species self energies


QM9_TARGETS: Dict[str, QM9Target] = {
    target.name: target for target in [
        QM9Target("mu", 0, "D", False),
        QM9Target("alpha", 1, "a0^3", False),
        QM9Target("homo", 2, "eV", False),
        QM9Target("lumo", 3, "eV", False),
        QM9Target("gap", 4, "eV", False),
        QM9Target("r2", 5, "a0^2", False),
        QM9Target("zpve", 6, "eV", False),
        QM9Target("U0", 7, "eV", True),
        QM9Target("U", 8, "eV", True),
        QM9Target("H", 9, "eV", True),
        QM9Target("G", 10, "eV", True),
        QM9Target("cv", 11, "cal/(mol K)", False),
        QM9Target("U0_atom", 12, "eV", True),
        QM9Target("U_atom", 13, "eV", True),
        QM9Target("H_atom", 14, "eV", True),
        QM9Target("G_atom", 15, "eV", True),
        QM9Target("A", 16, "GHz", False),
        QM9Target("B", 17, "GHz", False),
        QM9Target("C", 18, "GHz", False),
    ]
}


def qm9_target(name: str) -> QM9Target:
    """The :class:`QM9Target` called ``name`` (e.g. ``"U0"``, ``"mu"``)."""
    if name not in QM9_TARGETS:
        raise ValueError(f"unknown QM9 target {name!r}; choose one of {sorted(QM9_TARGETS)}")
    return QM9_TARGETS[name]


class QM9ToPET:
    """PyG transform: a QM9 molecule -> ``Data(z, pos, energy [1] | y [1, 1], idx)``.

    Energies (``U0``, ``U``, ``H``, ``G`` and the atomization energies) land in
    ``data.energy``, all other targets in ``data.y``; the other QM9 fields (bond graph,
    one-hot features, SMILES) are dropped.
    """

    def __init__(self, target: str = "U0", dtype: torch.dtype = torch.float32):
        self.target = qm9_target(target)
        self.dtype = dtype

    @property
    def key(self) -> str:
        return "energy" if self.target.energy else "y"

    def __call__(self, data: Data) -> Data:
        value = data.y[:, self.target.index].to(self.dtype)
        out = Data(z=data.z, pos=data.pos.to(self.dtype))
        if self.target.energy:
            out.energy = value.reshape(1)
        else:
            out.y = value.reshape(1, 1)
        if "idx" in data:
            out.idx = torch.as_tensor(data.idx).reshape(1)
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(target={self.target.name!r})"


def qm9_split(num_molecules: int, *, num_train: int = 110_000, num_val: int = 10_000,
              seed: int = 0) -> Dict[str, torch.Tensor]:
    """The standard random QM9 split: ``num_train`` / ``num_val`` / all the rest for test."""
    if num_train <= 0 or num_val <= 0 or num_train + num_val >= num_molecules:
        raise ValueError(
            f"cannot split {num_molecules} molecules into {num_train} train + {num_val} val + "
            "a non-empty test set; pass smaller num_train/num_val"
        )
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(num_molecules, generator=generator)
    return {"train": perm[:num_train], "val": perm[num_train:num_train + num_val],
            "test": perm[num_train + num_val:]}


def load_qm9(root: str, target: str = "U0", *, num_train: int = 110_000,
             num_val: int = 10_000, seed: int = 0, dtype: torch.dtype = torch.float32,
             limit: Optional[int] = None) -> Dict[str, object]:
    """PyG's QM9 under ``root`` with the target mapped by :class:`QM9ToPET`, split in three.

    Downloads (about 400 MB processed) only when ``root`` does not hold QM9 yet.
    ``limit`` keeps only the first ``limit`` molecules of each split (quick runs).
    Returns ``{"train", "val", "test"}`` subsets.
    """
    from torch_geometric.datasets import QM9

    dataset = QM9(root, transform=QM9ToPET(target, dtype))
    splits = qm9_split(len(dataset), num_train=num_train, num_val=num_val, seed=seed)
    if limit is not None:
        splits = {name: index[:limit] for name, index in splits.items()}
    return {name: dataset[index] for name, index in splits.items()}
