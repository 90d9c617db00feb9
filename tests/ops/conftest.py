"""Fixtures of the op tests: ``emu``, the host emulation of the CUDA glue
(tests/cuda_emulation), built once (cached on disk) and loaded once per session."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from torch_pet import _extension


@pytest.fixture(scope="session")
def emu_ops():
    """torch.ops.torch_pet_emu (built with the C++ compiler the extension was built with)."""
    if not _extension.WITH_EXTENSION:
        pytest.skip("torch_pet._C is not built (no C++ toolchain): no CUDA emulation either")
    name = "torch_pet_cuda_emulation_build"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "cuda_emulation" / "build.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    sys.modules[name].load()
    return torch.ops.torch_pet_emu


@pytest.fixture
def emu(emu_ops):
    """The emulated ops, with an empty launch log (emu.take_launch_log())."""
    emu_ops.take_launch_log()
    return emu_ops
