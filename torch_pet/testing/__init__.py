"""Symmetry-testing helpers for users of torch_pet: random rotations, random structures and
assertions that a model is invariant or equivariant.

Conventions (:mod:`torch_pet.rotations`): a rotation R acts on row vectors as ``x -> x·Rᵀ``
(positions, cell rows, forces, vector outputs) and on rank-2 Cartesian tensors as
``T -> R·T·Rᵀ``. Errors are relative: ``max|y(g·X) - g·y(X)| / max|y(X)|``, compared with
``atol + rtol·max|y(X)|`` where the default ``rtol`` depends on the dtype
(:data:`DEFAULT_RTOL`). Production code never imports this package.

>>> from torch_pet.testing import random_molecule, assert_invariant, assert_equivariant
>>> assert_invariant(model, random_molecule(8))               # scalar output
>>> assert_equivariant(model, random_molecule(8), kind="forces")  # -dE/dx of an energy

Modules: :mod:`~torch_pet.testing.structures` (random structures, translations,
permutations), :mod:`~torch_pet.testing.symmetry` (errors and assertions),
:mod:`~torch_pet.testing.toy` (a non-equivariant backbone).
"""
from torch_pet.rotations import random_rotation, rotate_structure
from torch_pet.testing.structures import (permute_atoms, random_methane, random_molecule,
                                          random_periodic_box, translate_structure, water_box)
from torch_pet.testing.symmetry import (DEFAULT_RTOL, assert_equivariant, assert_invariant,
                                        symmetry_error)
from torch_pet.testing.toy import AngularToyModel

__all__ = [
    "DEFAULT_RTOL", "random_rotation", "random_molecule", "random_methane",
    "random_periodic_box", "water_box", "rotate_structure", "translate_structure",
    "permute_atoms", "symmetry_error", "assert_invariant", "assert_equivariant",
    "AngularToyModel",
]
