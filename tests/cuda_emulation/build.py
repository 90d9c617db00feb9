"""Build and load the host emulation of the CUDA glue (test-only).

The CUDA glue of every op (``csrc/cuda/<op>_cuda.cu``) and its kernels are compiled as
C++ with ``TORCH_PET_HOST_EMULATION`` (``csrc/kernels/cuda_compat.h``,
``csrc/kernels/launch.h``: every block and thread of each grid runs in a loop on the
host) together with the op's schema and argument checks (``csrc/<op>.cpp``), and
registered for CPU tensors as ``torch.ops.torch_pet_emu.<op>``, next to the real
``torch.ops.torch_pet.<op>``.

Built with ``torch.utils.cpp_extension.load`` into a persistent folder
(``$TORCH_PET_EMULATION_BUILD_DIR``, default ``~/.cache/torch_pet/cuda_emulation``):
ninja rebuilds only what changed (headers and the included ``.cu`` files are tracked), so a
CI run pays the build once and later runs only load it.

Run as a script to build (or check that the build is current) and print the time taken.
"""
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NAME = "torch_pet_cuda_emulation"
OPS = ("reverse_edge_index", "ecse_pairs", "radius_graph")


def build_directory() -> Path:
    default = Path.home() / ".cache" / "torch_pet" / "cuda_emulation"
    return Path(os.environ.get("TORCH_PET_EMULATION_BUILD_DIR", default))


def sources() -> list:
    """The op definitions, the emulated CUDA glue of each op and the launch log."""
    files = [ROOT / "csrc" / f"{op}.cpp" for op in OPS]
    files += [HERE / f"{op}_emu.cpp" for op in OPS]
    files.append(HERE / "launch_log.cpp")
    return [str(f) for f in files]


_LOADED = False


def load(verbose: bool = False) -> float:
    """Builds (if needed) and loads the emulation library once per process; returns the
    seconds spent (0 when already loaded)."""
    global _LOADED
    if _LOADED:
        return 0.0
    import torch  # noqa: F401  (before cpp_extension, which needs it loaded)
    from torch.utils.cpp_extension import load as load_extension

    folder = build_directory()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load_extension(
        name=NAME,
        sources=sources(),
        extra_include_paths=[str(ROOT / "csrc")],
        extra_cflags=["-O1", "-std=c++17", "-DTORCH_PET_HOST_EMULATION", "-fvisibility=hidden"],
        build_directory=str(folder),
        is_python_module=False,
        verbose=verbose,
    )
    _LOADED = True
    return time.perf_counter() - start


if __name__ == "__main__":
    seconds = load(verbose="-v" in sys.argv)
    print(f"cuda emulation: built/loaded {NAME} in {seconds:.2f} s ({build_directory()})")
