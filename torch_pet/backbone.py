"""The backbone contract: what torch_pet relies on in a model, written down once.

A *backbone* is any ``torch.nn.Module`` called as ``model(data)`` on a PyG ``Data``/``Batch``
(``z`` [N], ``pos`` [N, 3], ``batch``/``ptr``, optionally ``cell`` [B, 3, 3] and ``pbc``
[B, 3]) that returns one row per structure, [B, C], or one row per atom, [N, C], with
``per_atom``. Energy models return total energies [B, 1] and get forces and stress by
autograd (:func:`~torch_pet.nn.derivatives.energy_and_forces`). Nothing else is required;
each attribute below is optional and read only through :func:`backbone_info`:

=================  ======================  ==================================================
attribute          type                    used by (and what happens without it)
=================  ======================  ==================================================
``cutoff``         float > 0 (Å)           :class:`~torch_pet.ECSESymmetrizer`: R_out =
                                           min(cutoff, 10) (else pass ``cutoff=``)
``receptive_field`` float > 0 (Å)          ECSE atom mode (else pass ``receptive_field=``)
``species``        sequence of int         the Trainer (self energies, energy targets), the
                                           calculator (rejects unknown elements; else no
                                           check), checkpoints (stored with the weights)
``self_energies``  tensor [S, C], S =      the Trainer fits them by least squares and
                   len(species)            trains on the residual (required for energy
                                           targets); checkpoints store them
``output_scale``   tensor [C] (a buffer)   the model multiplies its network's output by
                                           it; the Trainer fits it before training
                                           (:mod:`torch_pet.training.output_scale`; else
                                           the model trains at its own scale)
``per_atom``       bool, settable          the calculator's per-atom energies (it sets it on
                                           a shallow copy; else energies only); ECSE's
                                           ``per_atom`` must match it
``out_channels``   int >= 1                the calculator needs 1 (energies); default 1
``hyperparameters`` dict of plain data     checkpoints rebuild ``cls(**hyperparameters)``
                                           (else the constructor's arguments are read from
                                           attributes of the same names)
=================  ======================  ==================================================

Checkpoints of a class other than torch_pet's own are loaded only when the class is passed
(``load_model(path, extra_classes={"Name": cls})``) or registered
(:func:`torch_pet.checkpoint.register_model`). :class:`~torch_pet.PET` meets the whole
contract; :mod:`torch_pet.nn.adapters` brings PyG's SchNet to it.
"""
import math
from dataclasses import dataclass, fields
from typing import Optional, Protocol, Tuple, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Backbone", "BackboneInfo", "backbone_info"]


@runtime_checkable
class Backbone(Protocol):
    """The one required method: ``model(data) -> Tensor`` ([B, C], or [N, C] per atom)."""

    def __call__(self, data) -> Tensor: ...


@dataclass(frozen=True)
class BackboneInfo:
    """The optional attributes of a backbone, checked (None: the model does not provide it).

    ``self_energies`` is the model's buffer itself (read it again after ``model.to(...)``).
    """

    model_class: str
    cutoff: Optional[float] = None
    receptive_field: Optional[float] = None
    species: Optional[Tuple[int, ...]] = None
    self_energies: Optional[Tensor] = None
    output_scale: Optional[Tensor] = None
    per_atom: Optional[bool] = None
    out_channels: Optional[int] = None
    hyperparameters: Optional[dict] = None

    def require(self, *names: str, by: str) -> "BackboneInfo":
        """Raise ``ValueError`` naming what ``by`` needs unless every attribute in ``names``
        is provided; returns ``self``."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            what = ", ".join(f"`{name}`" for name in missing)
            raise ValueError(f"{by} needs the model's {what}, which {self.model_class} does not "
                             "provide; see torch_pet.backbone for the contract (e.g. wrap the "
                             "model in an adapter such as torch_pet.nn.adapters.SchNetBackbone)")
        return self


def backbone_info(model) -> BackboneInfo:
    """The optional attributes of ``model`` (see the module docstring), each checked: a
    present attribute of the wrong type or value raises ``TypeError``/``ValueError``
    naming it."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"a backbone must be a torch.nn.Module, got {type(model).__name__}")
    name = type(model).__name__
    read = {f.name: getattr(model, f.name, None) for f in fields(BackboneInfo)
            if f.name != "model_class"}
    for key in ("cutoff", "receptive_field"):
        if read[key] is not None:
            read[key] = _positive_float(read[key], f"{name}.{key}")
    species = read["species"]
    if species is not None:
        if isinstance(species, Tensor):
            species = species.tolist()
        if isinstance(species, (str, bytes)) or not hasattr(species, "__iter__") or not all(
                isinstance(z, int) and not isinstance(z, bool) for z in species):
            raise TypeError(f"{name}.species must be a sequence of atomic numbers (int), got "
                            f"{species!r}")
        read["species"] = tuple(int(z) for z in species)
    energies = read["self_energies"]
    if energies is not None:
        if not isinstance(energies, Tensor) or energies.dim() != 2:
            raise TypeError(f"{name}.self_energies must be a tensor [num_species, C], got "
                            f"{getattr(energies, 'shape', type(energies).__name__)}")
        if read["species"] is not None and energies.shape[0] != len(read["species"]):
            raise ValueError(f"{name}.self_energies has {energies.shape[0]} rows but the model "
                             f"has {len(read['species'])} species; give one row per species")
    scale = read["output_scale"]
    if scale is not None and (not isinstance(scale, Tensor) or scale.dim() != 1
                              or not scale.is_floating_point()):
        raise TypeError(f"{name}.output_scale must be a floating-point tensor [C], got "
                        f"{getattr(scale, 'shape', type(scale).__name__)}")
    if read["per_atom"] is not None:
        if not isinstance(read["per_atom"], int) or read["per_atom"] not in (0, 1):
            raise TypeError(f"{name}.per_atom must be a bool, got {read['per_atom']!r}")
        read["per_atom"] = bool(read["per_atom"])
    channels = read["out_channels"]
    if channels is not None and (not isinstance(channels, int) or isinstance(channels, bool)
                                 or channels < 1):
        raise TypeError(f"{name}.out_channels must be an int >= 1, got {channels!r}")
    if read["hyperparameters"] is not None and not isinstance(read["hyperparameters"], dict):
        read["hyperparameters"] = None  # e.g. a method or another object: not the contract's
    return BackboneInfo(name, **read)


def _positive_float(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number (Å), got {type(value).__name__}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value
