"""Rotations: Haar-random proper and improper rotations, and rotating structures with their
labels. The one place where torch_pet draws and applies rotations (ECSE, augmentation,
evaluation and the testing helpers all use it).

Convention (row vectors, ECSE.md): a rotation R acts on positions, cell rows, forces and
vector labels as ``x -> x·Rᵀ`` and on rank-2 tensors (stress) as ``T -> R·T·Rᵀ``; an
improper rotation is -R. How each label transforms is its :class:`~torch_pet.outputs.OutputKind`.

Shapes: N atoms, B structures.
"""
from types import MappingProxyType
from typing import Mapping, Optional, Union

import torch
from torch_geometric.data import Data

from torch_pet.inputs import read_structure_index
from torch_pet.outputs import FORCES, STRESS, OutputKind, KindLike

__all__ = ["GeneratorLike", "as_generator", "random_rotation", "random_rotations",
           "rotate_vectors", "rotate_tensors", "rotate_structure", "DEFAULT_LABELS"]

GeneratorLike = Union[None, int, torch.Generator]

#: Labels rotated with a structure unless told otherwise (absent keys are skipped).
DEFAULT_LABELS: Mapping[str, OutputKind] = MappingProxyType({"forces": FORCES, "stress": STRESS})
_ATOM_VECTOR = OutputKind.VECTOR.with_per_atom()  # positions


def as_generator(generator: GeneratorLike) -> Optional[torch.Generator]:
    """None (the global RNG) and generators as they are; an int seeds a new CPU generator."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be None, an int seed or a torch.Generator, got {type(generator).__name__}")


def random_rotation(generator: GeneratorLike = None, dtype: torch.dtype = torch.float64,
                    device=None, improper: bool = False) -> torch.Tensor:
    """A uniformly (Haar) distributed rotation, from a random unit quaternion; with
    ``improper``, a rotation times -1.

    Args:
        generator: None (global RNG), an int seed or a CPU ``torch.Generator``.

    Shapes:
        -> [3, 3], det = +1 (or -1 with ``improper``)
    """
    quaternion = torch.randn(1, 4, generator=as_generator(generator), dtype=torch.float64)
    rotation = _quaternion_rotations(quaternion)[0]
    if improper:
        rotation = -rotation
    return rotation.to(dtype=dtype, device=device)


def random_rotations(num: int, *, generator: GeneratorLike = None,
                     improper_probability: float = 0.0, dtype: torch.dtype = torch.float64,
                     device=None) -> torch.Tensor:
    """``num`` Haar-random rotations, each made improper (times -1) with probability
    ``improper_probability`` (PET's augmentation: one per structure, 1/2).

    Shapes:
        -> [num, 3, 3]
    """
    if not (isinstance(num, int) and num >= 0):
        raise ValueError(f"random_rotations: num must be an int >= 0, got {num!r}")
    if not 0.0 <= improper_probability <= 1.0:
        raise ValueError("random_rotations: improper_probability must be in [0, 1], got "
                         f"{improper_probability!r}")
    generator = as_generator(generator)
    improper = torch.rand(num, generator=generator, dtype=torch.float64) < improper_probability
    if num == 0:
        return torch.zeros(0, 3, 3, dtype=dtype, device=device)
    # one draw of all quaternions (vectorised; the same seed gives the same rotations)
    rotations = _quaternion_rotations(torch.randn(num, 4, generator=generator,
                                                  dtype=torch.float64))
    sign = 1.0 - 2.0 * improper.to(torch.float64)
    return (rotations * sign[:, None, None]).to(dtype=dtype, device=device)


def _quaternion_rotations(quaternion: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of (unnormalised) quaternions (w, x, y, z).

    Shapes:
        quaternion [M, 4] -> [M, 3, 3]
    """
    w, x, y, z = (quaternion / quaternion.norm(dim=1, keepdim=True)).unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=1).reshape(-1, 3, 3)


def rotate_vectors(vectors: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """``v·Rᵀ`` for row vectors (positions, cell rows, forces).

    Shapes:
        vectors [..., 3] (or [rows, C·3]), rotation [3, 3] or [rows, 3, 3] -> vectors' shape
    """
    return OutputKind.VECTOR.rotate(vectors, rotation)


def rotate_tensors(tensors: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """``R·T·Rᵀ`` for rank-2 Cartesian tensors (stress).

    Shapes:
        tensors [..., 3, 3] (or [rows, C·9]), rotation [3, 3] or [rows, 3, 3] -> same shape
    """
    return OutputKind.TENSOR.rotate(tensors, rotation)


def rotate_structure(data: Data, rotation: torch.Tensor,
                     labels: Optional[Mapping[str, KindLike]] = None) -> Data:
    """A copy of ``data`` (a ``Data`` or a ``Batch``) rotated by R: positions and cell rows,
    and every label in ``labels`` as its kind says. The input is left untouched.

    Args:
        rotation: one R for all structures, or one per structure.
        labels: ``{key: kind}`` of the labels to rotate (default :data:`DEFAULT_LABELS`:
            forces and stress); keys absent from ``data`` are skipped. Kinds may be
            OutputKinds or their strings (``"vector"``, ``"per-atom vector"``, ...).

    Shapes:
        rotation [3, 3] or [B, 3, 3]; pos [N, 3]; cell [B, 3, 3]
    """
    pos = getattr(data, "pos", None)
    if not isinstance(pos, torch.Tensor) or pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError("rotate_structure: data.pos must be a tensor of shape [N, 3], got "
                         f"{getattr(pos, 'shape', type(pos).__name__)}")
    if not isinstance(rotation, torch.Tensor) or rotation.dim() not in (2, 3) \
            or tuple(rotation.shape[-2:]) != (3, 3):
        raise ValueError("rotate_structure: rotation must be a [3, 3] or [B, 3, 3] tensor, got "
                         f"{getattr(rotation, 'shape', type(rotation).__name__)}")
    kinds = {key: OutputKind.parse(kind, f"labels[{key!r}]")
             for key, kind in (DEFAULT_LABELS if labels is None else labels).items()}
    rotation = rotation.to(dtype=pos.dtype, device=pos.device)
    index = read_structure_index(data, pos, owner="rotate_structure: ")
    batch = index.batch
    if rotation.dim() == 3 and rotation.shape[0] != index.num_structures:
        raise ValueError(f"rotate_structure: rotation has {rotation.shape[0]} matrices for "
                         f"{index.num_structures} structure(s); give one [3, 3] or one per "
                         "structure")
    out = data.clone()
    out.pos = _ATOM_VECTOR.rotate(out.pos, rotation, batch)
    if getattr(out, "cell", None) is not None:  # rows are vectors of the structure
        cell = out.cell
        out.cell = OutputKind.VECTOR.rotate(cell.reshape(-1, 3, 3), rotation).reshape(cell.shape)
    for key, kind in kinds.items():
        if kind.rank > 0 and getattr(out, key, None) is not None:
            out[key] = kind.rotate(out[key], rotation, batch)
    return out
