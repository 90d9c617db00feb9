"""Output kinds: how a prediction or a label transforms under a rotation R (row-vector
convention, ECSE.md), what shape it has, and how its error is measured.

=========  ====================  ======================  ==========================
kind       per-item shape        under a rotation R      examples
=========  ====================  ======================  ==========================
SCALAR     [..., C]              y (invariant)           energy, charges
VECTOR     [..., C, 3]           y·Rᵀ                    forces, dipole, cell rows
TENSOR     [..., C, 3, 3]        R·y·Rᵀ                  stress, polarizability
=========  ====================  ======================  ==========================

Each kind is per structure (one row per structure, B rows) or per atom (N rows), e.g.
``FORCES = OutputKind.VECTOR.with_per_atom()``. Channel dims (C, any number) may sit
between the rows and the Cartesian dims, or be flattened with them ([rows, C·3^rank]).
Augmentation rotates labels with :meth:`OutputKind.rotate` and the per-structure rotations
of a batch; errors are component-wise (:meth:`OutputKind.error`), reported as MAE and RMSE
over all components.

>>> OutputKind.parse("vector")                   # the old string spellings still work
OutputKind.VECTOR
>>> OutputKind.parse("per-atom vector") == FORCES
True
"""
import math
from dataclasses import dataclass, replace
from typing import ClassVar, Optional, Tuple, Union

import torch

__all__ = ["OutputKind", "ENERGY", "FORCES", "STRESS", "KindLike"]

_NAMES = ("scalar", "vector", "tensor")
_PER_ATOM = "per-atom "


@dataclass(frozen=True)
class OutputKind:
    """A kind of output: Cartesian ``rank`` (0 scalar, 1 vector, 2 rank-2 tensor) and
    whether its rows are atoms (``per_atom``) or structures.

    Use the members ``OutputKind.SCALAR``, ``.VECTOR``, ``.TENSOR`` (per structure) and
    :meth:`with_per_atom`; :meth:`parse` turns the strings ``"scalar"``, ``"vector"``,
    ``"tensor"`` (and ``"per-atom vector"`` etc., see ``str(kind)``) into kinds.
    """

    rank: int
    per_atom: bool = False

    SCALAR: ClassVar["OutputKind"]
    VECTOR: ClassVar["OutputKind"]
    TENSOR: ClassVar["OutputKind"]

    def __post_init__(self):
        if self.rank not in (0, 1, 2):
            raise ValueError(f"OutputKind: rank must be 0 (scalar), 1 (vector) or 2 (tensor), "
                             f"got {self.rank!r}")
        if not isinstance(self.per_atom, bool):
            raise TypeError(f"OutputKind: per_atom must be a bool, got {type(self.per_atom).__name__}")

    # ------------------------------------------------------------------ names
    @property
    def name(self) -> str:
        """``"scalar"``, ``"vector"`` or ``"tensor"`` (rows not included)."""
        return _NAMES[self.rank]

    def __str__(self) -> str:
        return (_PER_ATOM if self.per_atom else "") + self.name

    def __repr__(self) -> str:
        member = f"OutputKind.{self.name.upper()}"
        return member + ".with_per_atom()" if self.per_atom else member

    @classmethod
    def choices(cls) -> Tuple[str, ...]:
        """Every string :meth:`parse` accepts."""
        return _NAMES + tuple(_PER_ATOM + name for name in _NAMES)

    @classmethod
    def parse(cls, value: "KindLike", argument: str = "kind",
              per_atom: Optional[bool] = None) -> "OutputKind":
        """``value`` as an OutputKind: a kind is returned as is, a string is looked up.

        Args:
            value: an OutputKind or one of :meth:`choices` (``"vector"``, ...).
            argument: the argument's name, for the error message.
            per_atom: if given, overrides the rows of the result.
        """
        if isinstance(value, OutputKind):
            kind = value
        elif isinstance(value, str):
            if value not in cls.choices():
                raise ValueError(f"{argument} must be one of {list(cls.choices())} or an "
                                 f"OutputKind, got {value!r}")
            per_atom_name = value.startswith(_PER_ATOM)
            kind = cls(_NAMES.index(value[len(_PER_ATOM):] if per_atom_name else value),
                       per_atom_name)
        else:
            raise TypeError(f"{argument} must be an OutputKind or one of {list(cls.choices())}, "
                            f"got {type(value).__name__}")
        return kind if per_atom is None else kind.with_per_atom(bool(per_atom))

    def with_per_atom(self, per_atom: bool = True) -> "OutputKind":
        """The same Cartesian kind with atoms (or, with False, structures) as rows."""
        return replace(self, per_atom=bool(per_atom))

    # ------------------------------------------------------------------ shapes
    @property
    def shape(self) -> Tuple[int, ...]:
        """Trailing Cartesian dims of one item: (), (3,) or (3, 3)."""
        return (3,) * self.rank

    @property
    def components(self) -> int:
        """Cartesian components per channel: 1, 3 or 9."""
        return 3 ** self.rank

    def rows(self, data) -> int:
        """Rows of this kind in a ``Data``/``Batch``: atoms N or structures B."""
        if self.per_atom:
            return int(data.pos.shape[0])
        num_graphs = getattr(data, "num_graphs", None)
        return 1 if num_graphs is None else int(num_graphs)

    def has_shape(self, y: torch.Tensor) -> bool:
        """Whether ``y`` [rows, ..., *shape] ends with this kind's Cartesian dims."""
        return y.dim() >= 1 + self.rank and tuple(y.shape[y.dim() - self.rank:]) == self.shape

    # ------------------------------------------------------------------ rotation
    def rotate(self, y: torch.Tensor, rotation: torch.Tensor,
               batch: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``y`` after the rotation (or improper rotation) R: scalars unchanged, vectors
        ``y·Rᵀ``, tensors ``R·y·Rᵀ``; any channel dims (or flattened components) allowed.

        Shapes:
            y [rows, ...] (per-row numel a multiple of 3^rank);
            rotation [3, 3] (all rows), [rows, 3, 3] (one per row), or, with ``batch`` [N]
            and a per-atom kind, [B, 3, 3] (row i uses ``rotation[batch[i]]``) -> y's shape
        """
        if self.rank == 0:
            return y
        if not isinstance(rotation, torch.Tensor) or rotation.dim() not in (2, 3) \
                or tuple(rotation.shape[-2:]) != (3, 3):
            raise ValueError(f"rotate: rotation must be a [3, 3] or [rows, 3, 3] tensor, got "
                             f"{getattr(rotation, 'shape', type(rotation).__name__)}")
        if not y.is_floating_point():
            raise TypeError(f"rotate: a {self.name} must be floating point, got {y.dtype}")
        rotation = rotation.to(dtype=y.dtype, device=y.device)
        if batch is not None and rotation.dim() == 3 and self.per_atom:
            rotation = rotation[batch]
        per_row = math.prod(y.shape[1:])  # static under torch.compile (no guard on rows)
        if not (self.has_shape(y) or (y.dim() >= 1 and per_row % self.components == 0)):
            raise ValueError(f"rotate: a {self.name} needs its last dims to be {self.shape} or a "
                             f"multiple of {self.components} components per row, got shape "
                             f"{tuple(y.shape)}")
        if rotation.dim() == 2:
            flat = y.reshape(-1, *self.shape)  # [items, *shape]
            if self.rank == 1:
                return (flat @ rotation.T).reshape(y.shape)
            return (rotation @ flat @ rotation.T).reshape(y.shape)
        if not torch.compiler.is_compiling() and y.shape[0] != rotation.shape[0]:
            raise ValueError(f"rotate: one rotation per row needs y with {rotation.shape[0]} "
                             f"rows, got shape {tuple(y.shape)}")
        flat = y.reshape(y.shape[0], per_row // self.components, *self.shape)  # [rows, C, *shape]
        if self.rank == 1:
            return torch.bmm(flat, rotation.transpose(1, 2)).reshape(y.shape)
        q = rotation.unsqueeze(1)
        return (q @ flat @ q.transpose(-1, -2)).reshape(y.shape)

    # ------------------------------------------------------------------ errors
    def error(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Component-wise error ``prediction - target`` (target reshaped to the prediction);
        its MAE and RMSE over all elements are the reported metrics.

        Shapes:
            prediction [rows, ...], target with the same number of elements -> prediction's
        """
        if target.numel() != prediction.numel():
            raise ValueError(f"error: the {self} target has shape {tuple(target.shape)}, which "
                             f"does not match the prediction's {tuple(prediction.shape)}; check "
                             "the label's key and the model's out_channels")
        return prediction - target.reshape_as(prediction)


OutputKind.SCALAR = OutputKind(0)
OutputKind.VECTOR = OutputKind(1)
OutputKind.TENSOR = OutputKind(2)

#: Total energy per structure, forces on the atoms, stress (or virial) per structure.
ENERGY = OutputKind.SCALAR
FORCES = OutputKind.VECTOR.with_per_atom()
STRESS = OutputKind.TENSOR

KindLike = Union[OutputKind, str]
