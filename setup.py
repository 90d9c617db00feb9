"""Build torch_pet and its single compiled extension ``torch_pet._C``.

C++ sources (``csrc/*.cpp``, ``csrc/cpu/*.cpp``) are always compiled. CUDA sources
(``csrc/cuda/*.cu``) are added when the installed torch was built with CUDA and a CUDA
toolkit is found, or when ``FORCE_CUDA=1``. Build with ``--no-build-isolation`` so the
extension is compiled against the torch that is already installed.
"""
import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _with_cuda() -> bool:
    if os.getenv("FORCE_CUDA", "0") == "1":
        return True
    if os.getenv("FORCE_CPU", "0") == "1":
        return False
    return torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    define_macros = [("TORCH_PET_BUILT_WITH_TORCH", f'"{torch.__version__}"')]
    extra = {"cxx": ["-O3", "-std=c++17"]}
    if os.name != "nt":
        extra["cxx"].append("-fopenmp")
    if _with_cuda():
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        define_macros.append(("WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "-std=c++17", "--expt-relaxed-constexpr"]
        return CUDAExtension(
            "torch_pet._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros, extra_compile_args=extra,
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "torch_pet._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros, extra_compile_args=extra, extra_link_args=["-fopenmp"],
    )


setup(
    name="torch_pet",
    version="0.1.0",
    description="Point Edge Transformer (PET) and exact rotational symmetrization (ECSE) for PyTorch Geometric",
    long_description=open(os.path.join(ROOT, "README.md")).read() if os.path.exists(os.path.join(ROOT, "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["torch_pet", "torch_pet.*"]),
    package_data={"torch_pet": ["datasets/data/*"]},
    python_requires=">=3.9",
    install_requires=["torch>=2.3", "torch_geometric>=2.3", "numpy", "tqdm", "pyyaml"],
    extras_require={
        "ase": ["ase>=3.22"],
        "test": ["pytest", "scipy", "ase>=3.22"],
        "plot": ["matplotlib"],
        "xtb": ["tblite"],
    },
    entry_points={"console_scripts": ["torch-pet=torch_pet.cli:main"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
