"""Loading of the compiled extension ``torch_pet._C``.

``WITH_EXTENSION`` says whether the C++ ops are registered in ``torch.ops.torch_pet``;
``WITH_CUDA_EXT`` whether their CUDA kernels were compiled too. When the extension is
missing or was built for another torch, every op falls back to its pure-PyTorch
reference (``torch_pet.ops.reference``) after one clear warning.
"""
import warnings

import torch

WITH_EXTENSION = False
WITH_CUDA_EXT = False
LOAD_ERROR = None

_REINSTALL = (
    "Rebuild it against the installed torch with "
    "`pip install --no-build-isolation -e .` (or `python setup.py build_ext --inplace`)."
)

try:
    from torch_pet import _C  # noqa: F401  (registers torch.ops.torch_pet.*)

    if _C.BUILT_WITH_TORCH.split("+")[0] != torch.__version__.split("+")[0]:
        LOAD_ERROR = (
            f"torch_pet._C was built with torch {_C.BUILT_WITH_TORCH} but torch "
            f"{torch.__version__} is installed."
        )
    else:
        WITH_EXTENSION = True
        WITH_CUDA_EXT = bool(_C.WITH_CUDA)
except (ImportError, OSError) as err:  # missing file, or undefined symbols of another torch
    LOAD_ERROR = f"torch_pet._C could not be loaded ({err})."

_warned = False


def use_extension(device: torch.device) -> bool:
    """Whether the compiled op can serve tensors on ``device``; warns once when not."""
    global _warned
    ok = WITH_EXTENSION and (device.type == "cpu" or (device.type == "cuda" and WITH_CUDA_EXT))
    if not ok and not _warned:
        _warned = True
        reason = LOAD_ERROR or f"torch_pet._C was built without {device.type.upper()} kernels."
        warnings.warn(
            f"{reason} Falling back to the slower pure-PyTorch reference ops. {_REINSTALL}",
            RuntimeWarning,
            stacklevel=3,
        )
    return ok
