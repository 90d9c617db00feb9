"""ECSE: exact rotational symmetrization by an ensemble of local coordinate frames.

Pozdnyakov & Ceriotti, arXiv:2305.19302. :func:`ecse_frames` builds the weighted frames of a
batch; :class:`ECSESymmetrizer` (imported lazily) wraps any backbone with them.
"""
import importlib

from torch_pet.ecse.frames import ECSEFrames, ecse_frames
from torch_pet.ecse.options import FrameOptions

__all__ = ["ECSEFrames", "FrameOptions", "ecse_frames", "ECSESymmetrizer"]


def __getattr__(name):
    if name == "ECSESymmetrizer":
        return importlib.import_module("torch_pet.ecse.symmetrizer").ECSESymmetrizer
    raise AttributeError(f"module 'torch_pet.ecse' has no attribute {name!r}")
