"""Versioned checkpoints: a trained model (and its auxiliary model) plus training state.

A checkpoint is a ``torch.save``d dict that loads with ``weights_only=True``::

    {
      "format": "torch_pet.checkpoint", "format_version": 1, "torch_pet_version": "0.1.0",
      "model":     {"class": "torch_pet.nn.pet.PET", "hyperparameters": {...},
                    "species": [...], "self_energies": Tensor[num_species, out],
                    "state_dict": {...}, "dtype": "float32"},
      "aux_model": same layout, or None,
      "optimizer": optimizer.state_dict() or None,   # for resuming
      "scheduler": scheduler.state_dict() or None,
      "trainer":   trainer state (epoch, config, sigma, history, ...) or None,
      "metadata":  free-form dict (dataset, metrics, ...),
    }

Loading validates the layout. A file written by a newer format fails with a message asking
for a newer torch_pet; an older format is upgraded step by step by the functions in
``UPGRADES`` (none exist yet: format 1 is the first); a bare ``state_dict`` (no format)
fails with a message explaining how to wrap it.
"""
import importlib
import inspect
import os
from typing import Any, Callable, Dict, Optional

import torch

FORMAT = "torch_pet.checkpoint"
FORMAT_VERSION = 1

# UPGRADES[v] turns a format-v checkpoint dict into a format-(v+1) one.
UPGRADES: Dict[int, Callable[[dict], dict]] = {}

_MODEL_KEYS = ("class", "hyperparameters", "species", "self_energies", "state_dict")


def model_hyperparameters(model: torch.nn.Module) -> Dict[str, Any]:
    """The constructor arguments that rebuild ``model``.

    Uses ``model.hyperparameters`` (a dict) when the model provides it, otherwise reads
    each argument of ``type(model).__init__`` from the attribute of the same name.
    """
    explicit = getattr(model, "hyperparameters", None)
    if isinstance(explicit, dict):
        return dict(explicit)
    params = {}
    signature = inspect.signature(type(model).__init__)
    for name, parameter in list(signature.parameters.items())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if not hasattr(model, name):
            raise ValueError(
                f"cannot save {type(model).__name__}: its constructor argument {name!r} is not "
                "stored as an attribute; give the model a `hyperparameters` dict"
            )
        value = getattr(model, name)
        params[name] = list(value) if isinstance(value, tuple) else value
    return params


def _model_record(model: torch.nn.Module) -> dict:
    cls = type(model)
    self_energies = getattr(model, "self_energies", None)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "hyperparameters": model_hyperparameters(model),
        "species": [int(s) for s in getattr(model, "species", [])],
        "self_energies": None if self_energies is None else self_energies.detach().cpu(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
    }


def save_checkpoint(path: str, model: torch.nn.Module, *,
                    aux_model: Optional[torch.nn.Module] = None, optimizer=None,
                    scheduler=None, trainer: Optional[dict] = None,
                    metadata: Optional[dict] = None) -> None:
    """Write a checkpoint atomically (a temporary file renamed into place)."""
    from torch_pet import __version__

    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_pet_version": __version__,
        "model": _model_record(model),
        "aux_model": None if aux_model is None else _model_record(aux_model),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "trainer": trainer,
        "metadata": metadata or {},
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(record, tmp)
    os.replace(tmp, path)


def upgrade_checkpoint(record: Any, source: str = "checkpoint") -> dict:
    """Validate a loaded checkpoint dict and upgrade it to ``FORMAT_VERSION``."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        if isinstance(record, dict) and record and all(
                isinstance(v, torch.Tensor) for v in record.values()):
            raise ValueError(
                f"{source} holds a bare state_dict without a format version; build the model "
                "yourself and call model.load_state_dict(torch.load(...)), then write a "
                "proper checkpoint with torch_pet.checkpoint.save_checkpoint"
            )
        raise ValueError(f"{source} is not a torch_pet checkpoint (no format {FORMAT!r} tag)")
    version = record.get("format_version")
    if not isinstance(version, int):
        raise ValueError(f"{source} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{source} was written with checkpoint format {version}, newer than the format "
            f"{FORMAT_VERSION} this torch_pet reads (written by torch_pet "
            f"{record.get('torch_pet_version', '?')}); upgrade torch_pet"
        )
    while version < FORMAT_VERSION:
        if version not in UPGRADES:
            raise ValueError(
                f"{source} uses checkpoint format {version}, which this torch_pet cannot "
                f"upgrade to format {FORMAT_VERSION}; load it with the torch_pet version that "
                "wrote it and retrain or re-save"
            )
        record = UPGRADES[version](dict(record))
        version = record["format_version"]
    missing = [key for key in _MODEL_KEYS if key not in (record.get("model") or {})]
    if missing:
        raise ValueError(f"{source} is damaged: its model record lacks {missing}")
    return record


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Read, validate and upgrade a checkpoint file (``weights_only`` loading)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    record = torch.load(path, map_location=map_location, weights_only=True)
    return upgrade_checkpoint(record, source=f"checkpoint {path}")


def build_model(record: dict, *, device=None, dtype: Optional[torch.dtype] = None
                ) -> torch.nn.Module:
    """Instantiate the model of a checkpoint's model record and load its weights."""
    module_name, _, class_name = record["class"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"checkpoint model class {record['class']} cannot be imported "
                         f"({err}); install the package that defines it") from err
    model = cls(**record["hyperparameters"])
    model.load_state_dict(record["state_dict"])
    if dtype is None:
        dtype = getattr(torch, record.get("dtype", "float32"))
    return model.to(device=device, dtype=dtype).eval()


def load_model(path: str, *, aux: bool = False, device=None,
               dtype: Optional[torch.dtype] = None) -> torch.nn.Module:
    """The trained model (or, with ``aux=True``, the auxiliary model) of a checkpoint."""
    record = load_checkpoint(path)
    key = "aux_model" if aux else "model"
    if record[key] is None:
        raise ValueError(f"checkpoint {path} holds no {key.replace('_', ' ')}")
    return build_model(record[key], device=device, dtype=dtype)
