"""Datasets: the bundled distorted methane set, extended-XYZ files and QM9 helpers."""
from torch_pet.datasets.methane import DistortedMethane

__all__ = ["DistortedMethane"]
