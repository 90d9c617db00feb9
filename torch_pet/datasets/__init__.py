"""Datasets: the bundled distorted methane set, extended-XYZ files, QM9 helpers and
procedural 3D shapes for point-cloud classification."""
from torch_pet.datasets.extxyz import ExtXYZDataset, read_extxyz
from torch_pet.datasets.methane import DistortedMethane
from torch_pet.datasets.shapes import SHAPE_CLASSES, ProceduralShapes
from torch_pet.datasets.qm9 import QM9_TARGETS, QM9ToPET, load_qm9, qm9_split, qm9_target
from torch_pet.datasets.registry import (DataConfig, Splits, dataset_names, load_splits,
                                        register_dataset)

__all__ = ["DistortedMethane", "ExtXYZDataset", "ProceduralShapes", "QM9ToPET", "QM9_TARGETS",
           "SHAPE_CLASSES", "load_qm9", "qm9_split", "qm9_target", "read_extxyz",
           "DataConfig", "Splits", "dataset_names", "load_splits", "register_dataset"]
