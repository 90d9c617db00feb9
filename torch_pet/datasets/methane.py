"""The bundled randomly-distorted methane dataset (GFN2-xTB energies and forces).

Pozdnyakov & Ceriotti (arXiv:2305.19302) train PET on CH4 whose four hydrogens are drawn
uniformly in a 3 A ball around the carbon, with every interatomic distance >= 0.5 A. The
file shipped here follows that recipe with GFN2-xTB (``tblite``) instead of DFT; it was
written by ``scripts/generate_methane.py --num 10000 --seed 0`` (46 of the 10,000
calculations did not converge and were dropped, 9,954 remain).
"""
import os
from typing import Callable, Dict, Optional

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "methane_gfn2.npz")

NUM_TEST = 1000
NUM_VAL = 500


class DistortedMethane(InMemoryDataset):
    r"""Randomly distorted CH4 with GFN2-xTB energies (eV) and forces (eV/A); no download.

    Each structure is ``Data(z [5], pos [5, 3], energy [1], forces [5, 3], idx [1])`` (atom 0
    is the carbon; no cell, non-periodic). The split is fixed: the structures were sampled
    i.i.d., so the last 1,000 form the test set, the 500 before them the validation set and
    all earlier ones the training set (8,454).

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (all structures).
        num_structures: keep only the first this many structures of the split (for quick
            runs and learning curves); ``None`` keeps all.
        dtype: floating dtype of ``pos``, ``energy`` and ``forces``.
        transform: PyG transform applied on access.
        path: another ``.npz`` file in the same format (default: the bundled file).

    Shapes:
        per structure: z [N], pos [N, 3], energy [1], forces [N, 3] with N = 5.
    """

    def __init__(self, split: Optional[str] = None, *, num_structures: Optional[int] = None,
                 dtype: torch.dtype = torch.float32, transform: Optional[Callable] = None,
                 path: str = DATA_FILE):
        super().__init__(None, transform)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"methane dataset file {path} is missing; reinstall torch_pet or regenerate it "
                "with `python scripts/generate_methane.py`"
            )
        with np.load(path) as raw:
            positions, numbers = raw["positions"], raw["numbers"]
            energy, forces = raw["energy"], raw["forces"]
            self.info = {key: raw[key].item() for key in
                         ("seed", "num_requested", "num_failed", "method")}
        indices = self.split_indices(len(energy)).get(split) if split is not None \
            else np.arange(len(energy))
        if indices is None:
            raise ValueError(f"unknown split {split!r}; use 'train', 'val', 'test' or None")
        if num_structures is not None:
            if not 0 < num_structures <= len(indices):
                raise ValueError(f"num_structures={num_structures} must be in [1, "
                                 f"{len(indices)}] for split {split!r}")
            indices = indices[:num_structures]
        self.split = split
        self.data, self.slices = self._collate_fixed_size(
            positions[indices], numbers, energy[indices], forces[indices], indices, dtype)

    @staticmethod
    def split_indices(num_structures: int = None) -> Dict[str, np.ndarray]:
        """Indices of the fixed train/val/test split (into the full file)."""
        if num_structures is None:
            with np.load(DATA_FILE) as raw:
                num_structures = len(raw["energy"])
        first_val = num_structures - NUM_TEST - NUM_VAL
        return {
            "train": np.arange(0, first_val),
            "val": np.arange(first_val, num_structures - NUM_TEST),
            "test": np.arange(num_structures - NUM_TEST, num_structures),
        }

    @staticmethod
    def _collate_fixed_size(positions, numbers, energy, forces, indices, dtype):
        """Collated storage of S structures of n atoms each, without a Python loop."""
        num, n = positions.shape[:2]
        data = Data(
            z=torch.as_tensor(numbers, dtype=torch.long).repeat(num),
            pos=torch.as_tensor(positions.reshape(-1, 3), dtype=dtype),
            energy=torch.as_tensor(energy, dtype=dtype),
            forces=torch.as_tensor(forces.reshape(-1, 3), dtype=dtype),
            idx=torch.as_tensor(indices, dtype=torch.long),
        )
        atom_slice = torch.arange(num + 1) * n
        graph_slice = torch.arange(num + 1)
        slices = {"z": atom_slice, "pos": atom_slice, "forces": atom_slice,
                  "energy": graph_slice, "idx": graph_slice}
        return data, slices

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, split={self.split!r})"
