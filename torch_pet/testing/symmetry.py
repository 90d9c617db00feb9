"""Symmetry errors and the assertions that a model is invariant or equivariant under
rotations (proper or improper), translations and permutations of the atoms.

Errors are relative: ``max|y(g·X) - g·y(X)| / max|y(X)|``, compared with
``atol + rtol·max|y(X)|`` where the default ``rtol`` depends on the dtype
(:data:`DEFAULT_RTOL`). How an output transforms is its
:class:`~torch_pet.outputs.OutputKind` (or its string, ``"vector"``, ...); the kind
``"forces"`` means that ``fn`` returns energies whose forces -dE/dpos are compared.

Shapes: N atoms, B structures.
"""
from typing import Callable, Optional, Tuple, Union

import torch
from torch_geometric.data import Data

from torch_pet.outputs import FORCES, OutputKind
from torch_pet.rotations import GeneratorLike, as_generator, random_rotation, rotate_structure
from torch_pet.testing.structures import batch_vector, permute_atoms, translate_structure

__all__ = ["DEFAULT_RTOL", "symmetry_error", "assert_invariant", "assert_equivariant"]

#: Default relative tolerances of the symmetry assertions, per dtype.
DEFAULT_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}

#: The kind of :func:`assert_equivariant` whose ``fn`` returns energies (forces compared).
DERIVED_FORCES = "forces"

KindOrForces = Union[OutputKind, str]


def _parse_kind(kind: KindOrForces) -> Tuple[OutputKind, bool]:
    """(how the compared output transforms, whether it is -d fn / dpos)."""
    if isinstance(kind, str) and kind == DERIVED_FORCES:
        return FORCES, True
    if isinstance(kind, str) and kind not in OutputKind.choices():
        raise ValueError(f"kind must be one of {[*OutputKind.choices(), DERIVED_FORCES]} or an "
                         f"OutputKind, got {kind!r}")
    return OutputKind.parse(kind, "kind"), False


def _evaluate(fn: Callable, data: Data, derivative: bool) -> torch.Tensor:
    if not derivative:
        with torch.no_grad():
            return fn(data).detach()
    data = data.clone()
    data.pos = data.pos.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = fn(data)
        (gradient,) = torch.autograd.grad(energy.sum(), data.pos)
    return -gradient.detach()


def symmetry_error(fn: Callable, data: Data, kind: KindOrForces = "scalar", *,
                   rotation: Optional[torch.Tensor] = None,
                   translation: Optional[torch.Tensor] = None,
                   permutation: Optional[torch.Tensor] = None,
                   per_atom: bool = False) -> float:
    """Relative error ``max|fn(g·X) - g·fn(X)| / max|fn(X)|`` for one transformation g.

    g = rotation (x -> x·Rᵀ, ``rotation`` may be improper) after a translation and a
    permutation of the atoms (either may be None). ``kind`` says how outputs transform:
    "scalar" (invariant), "vector" ([..., 3]), "tensor" ([..., 3, 3]), an OutputKind, or
    "forces" (``fn`` returns energies; the forces -dE/dpos are compared). ``per_atom`` (or
    a per-atom kind) says that the rows of the output are atoms (they follow the
    permutation); forces always are.
    """
    output, derivative = _parse_kind(kind)
    return _symmetry_error(fn, data, output, derivative, rotation, translation, permutation,
                           per_atom)[0]


def _symmetry_error(fn, data, output: OutputKind, derivative: bool, rotation, translation,
                    permutation, per_atom):
    """(relative error, scale = max|g·fn(X)|) of one transformation g."""
    reference = _evaluate(fn, data, derivative)
    moved = data
    if permutation is not None:
        moved = permute_atoms(moved, permutation)
    if translation is not None:
        moved = translate_structure(moved, translation)
    if rotation is not None:
        moved = rotate_structure(moved, rotation)
    transformed = _evaluate(fn, moved, derivative)
    expected = reference
    if permutation is not None and (per_atom or output.per_atom):
        expected = expected[permutation.to(expected.device)]
    if rotation is not None:
        expected = output.rotate(expected, rotation)
    if transformed.shape != expected.shape:
        raise AssertionError(f"output shape changed under the transformation: {tuple(expected.shape)} "
                             f"-> {tuple(transformed.shape)}")
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    difference = float((transformed - expected).abs().max()) if expected.numel() else 0.0
    return (difference / scale if scale > 0 else difference), scale


def _check_symmetry(fn, data, kind, *, num_rotations, improper, translate, permute, per_atom,
                    generator, rtol, atol, label) -> float:
    output, derivative = _parse_kind(kind)
    gen = as_generator(0 if generator is None else generator)
    dtype = data.pos.dtype
    rtol = DEFAULT_RTOL.get(dtype, 1e-5) if rtol is None else rtol
    batch = batch_vector(data).cpu()
    num_structures = int(batch.max()) + 1 if batch.numel() else 1
    worst = 0.0
    for trial in range(num_rotations):
        rotation = random_rotation(gen, dtype=dtype, device=data.pos.device, improper=improper)
        translation = None
        if translate:
            translation = 3.0 * torch.randn(num_structures, 3, generator=gen, dtype=torch.float64)
        permutation = None
        if permute:
            # A random order of the atoms within each structure (batch stays sorted).
            key = batch.double() + 0.5 * torch.rand(batch.numel(), generator=gen, dtype=torch.float64)
            permutation = torch.argsort(key).to(data.pos.device)
        error, scale = _symmetry_error(fn, data, output, derivative, rotation, translation,
                                       permutation, per_atom)
        # The error is relative: compare it with rtol + atol / scale.
        allowed = rtol + (atol / scale if scale > 0 else atol)
        if not error <= allowed:
            raise AssertionError(
                f"{label}: relative error {error:.3e} > tolerance {allowed:.3e} ({dtype}) under "
                f"transformation {trial} (rotation{' with inversion' if improper else ''}"
                f"{', translation' if translate else ''}{', permutation' if permute else ''})")
        worst = max(worst, error)
    return worst


def assert_invariant(fn: Callable, data: Data, *, num_rotations: int = 3, improper: bool = False,
                     translate: bool = True, permute: bool = True, per_atom: bool = False,
                     generator: GeneratorLike = None, rtol: Optional[float] = None,
                     atol: float = 0.0) -> float:
    """Assert that ``fn(data)`` is unchanged by random rotations (with inversion when
    ``improper``), translations and permutations of the atoms; returns the worst relative
    error. ``per_atom``: output rows are atoms and follow the permutation.

    Tolerance: ``atol + rtol·max|fn(data)|``, rtol from :data:`DEFAULT_RTOL` by dtype.
    """
    return _check_symmetry(fn, data, OutputKind.SCALAR, num_rotations=num_rotations,
                           improper=improper, translate=translate, permute=permute,
                           per_atom=per_atom, generator=generator, rtol=rtol, atol=atol,
                           label="assert_invariant")


def assert_equivariant(fn: Callable, data: Data, kind: KindOrForces = "vector", *,
                       num_rotations: int = 3, improper: bool = False, translate: bool = True,
                       permute: bool = True, per_atom: bool = False,
                       generator: GeneratorLike = None, rtol: Optional[float] = None,
                       atol: float = 0.0) -> float:
    """Assert that ``fn(data)`` rotates with the structure; returns the worst relative error.

    kind: "vector" (output [..., 3] -> y·Rᵀ), "tensor" ([..., 3, 3] -> R·y·Rᵀ), "scalar"
    (invariance), an OutputKind (a per-atom kind implies ``per_atom``), or "forces" (``fn``
    returns energies; -dE/dpos must rotate as vectors). Translations and permutations of
    the atoms are applied too (see :func:`assert_invariant`).
    """
    _parse_kind(kind)  # reject unknown kinds before any evaluation
    return _check_symmetry(fn, data, kind, num_rotations=num_rotations, improper=improper,
                           translate=translate, permute=permute, per_atom=per_atom,
                           generator=generator, rtol=rtol, atol=atol,
                           label=f"assert_equivariant({kind})")
