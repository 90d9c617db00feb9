"""FrameOptions: the parameters of the ECSE frames and weights, defined once.

Used by :func:`~torch_pet.ecse.frames.ecse_frames` (and its export twins
``frame_structure`` / ``frames_from_structure``), :class:`~torch_pet.ECSESymmetrizer`
(``frame_options=``), the calculator and the exported ECSE programs. It reads like a
mapping of its fields (``options["prune_steps"]``, ``dict(options)``, ``**options``).
"""
from dataclasses import dataclass, fields
from typing import Mapping, Optional, Union

from torch_pet.config import (NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, Config, OptionError,
                              option)

__all__ = ["FrameOptions"]


@dataclass(frozen=True)
class FrameOptions(Config):
    """Inner-cutoff, weight and pruning parameters of ECSE (arXiv:2305.19302, App. F).

    Checked on construction: beta, delta_r > 0; 0 < delta_omega <= omega;
    omega + delta_omega < 1; weight_eps, beta_w >= 0; prune_steps an integer >= 0.
    """

    beta: float = option(5.0, "beta (1/A): sharpness of the smooth minimum that gives the "
                         "adaptive inner cutoff R_in", check=POSITIVE)
    delta_r: float = option(0.15, "Delta_R (A): width of the radial switches at R_in and R_out",
                            check=POSITIVE)
    omega: float = option(0.2, "omega: collinearity threshold on s = |r_ij x r_ij'|^2 of unit "
                          "vectors (pairs with s < omega - delta_omega define no frame)",
                          check=POSITIVE)
    delta_omega: float = option(0.15, "Delta_omega: width of the collinearity switch",
                                check=POSITIVE)
    weight_eps: float = option(1e-10, "frames with weight <= weight_eps are dropped",
                               check=NON_NEGATIVE)
    beta_w: float = option(1.0, "beta_w: sharpness of the smooth maximum of a pool's frame "
                           "weights (pruning and the auxiliary weight)", check=NON_NEGATIVE)
    prune_steps: int = option(4, "rounds of smooth pruning towards the largest weights (0 keeps "
                              "every frame; 4 is the paper's)", check=NON_NEGATIVE_INT)
    smooth_outer_cutoff: bool = option(
        True, "also switch each frame weight off smoothly at R_out with f(r; R_out, delta_r) of "
        "both edges; False gives the published weights exactly (which can jump where an atom "
        "has no well-conditioned pair well inside R_out)")

    def check(self) -> None:
        owner = "ecse_frames"
        if not 0 < self.delta_omega <= self.omega:
            raise OptionError("delta_omega", "must satisfy 0 < delta_omega <= omega so that the "
                              "collinearity window [omega - delta_omega, omega] lies in s >= 0, "
                              f"got omega={self.omega}, delta_omega={self.delta_omega}", owner)
        if not self.omega + self.delta_omega < 1:
            raise OptionError("omega", f"needs omega + delta_omega < 1 (s <= 1), got "
                              f"{self.omega + self.delta_omega}", owner)

    @classmethod
    def coerce(cls, options: Union["FrameOptions", Mapping, None] = None,
               **overrides) -> "FrameOptions":
        """``FrameOptions`` from ``None`` (defaults), an instance or a mapping of its fields,
        with ``overrides`` applied; a name that is no field raises ``ValueError``."""
        if options is None:
            options = {}
        if isinstance(options, FrameOptions):
            options = dict(options)
        if not isinstance(options, Mapping):
            raise TypeError(f"frame_options must be a FrameOptions or a dict of its fields, got "
                            f"{type(options).__name__}")
        merged = {**options, **overrides}
        unknown = sorted(set(merged) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown frame_options {unknown}; allowed: {list(cls.names())}")
        return cls(**merged)

    @classmethod
    def names(cls):
        return tuple(f.name for f in fields(cls))

    # mapping protocol: options["beta"], dict(options), **options
    def keys(self):
        return self.names()

    def __getitem__(self, name: str):
        if name not in self.names():
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Optional[object] = None):
        return getattr(self, name) if name in self.names() else default

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
