"""Datasets: the bundled distorted methane set, extended-XYZ files and QM9 helpers."""
from torch_pet.datasets.extxyz import ExtXYZDataset, read_extxyz
from torch_pet.datasets.methane import DistortedMethane
from torch_pet.datasets.qm9 import QM9_TARGETS, QM9ToPET, load_qm9, qm9_split, qm9_target

__all__ = ["DistortedMethane", "ExtXYZDataset", "QM9ToPET", "QM9_TARGETS", "load_qm9",
           "qm9_split", "qm9_target", "read_extxyz"]
