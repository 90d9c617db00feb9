"""torch_pet: the Point Edge Transformer (PET) and exact rotational symmetrization (ECSE).

Pozdnyakov & Ceriotti, "Smooth, exact rotational symmetrization for deep learning on point
clouds", NeurIPS 2023 (arXiv:2305.19302).

>>> from torch_pet import PET, ECSESymmetrizer
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "PET": "torch_pet.nn.pet",
    "PETConfig": "torch_pet.nn.pet_config",
    "FrameOptions": "torch_pet.ecse.options",
    "PETConv": "torch_pet.nn.pet_conv",
    "ECSESymmetrizer": "torch_pet.ecse.symmetrizer",
    "radius_graph": "torch_pet.ops.radius_graph",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torch_pet' has no attribute {name!r}")
