"""Writing, reading, verifying and upgrading checkpoint files."""
import inspect
import os
import re
import warnings
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from torch_pet.backbone import backbone_info
from torch_pet.checkpoint.integrity import (CheckpointError, CheckpointWarning,
                                            check_plain_data, content_hash)
from torch_pet.checkpoint.registry import (FLOAT_DTYPES, LEGACY_CLASS_PATHS, build_model,
                                           model_class_name)

FORMAT = "torch_pet.checkpoint"
FORMAT_VERSION = 2

_MODEL_KEYS = ("class", "hyperparameters", "species", "self_energies", "state_dict")
_STATE_KEYS = ("optimizer", "scheduler", "trainer")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _upgrade_1_to_2(record: dict) -> dict:
    """Format 1 named model classes by import path ("torch_pet.nn.pet.PET"); format 2 by
    registry name ("PET") and adds ``content_sha256``. A format-1 file has no hash, so the
    upgraded record carries none either (its content was not verified)."""
    for key in ("model", "aux_model"):
        model = record.get(key)
        if isinstance(model, dict) and isinstance(model.get("class"), str):
            model = dict(model)
            model["class"] = LEGACY_CLASS_PATHS.get(model["class"], model["class"])
            record[key] = model
    record.pop("content_sha256", None)
    record["format_version"] = 2
    return record


# UPGRADES[v] turns a format-v checkpoint dict into a format-(v+1) one.
UPGRADES: Dict[int, Callable[[dict], dict]] = {1: _upgrade_1_to_2}


def model_hyperparameters(model: torch.nn.Module) -> Dict[str, Any]:
    """The constructor arguments that rebuild ``model`` (plain data; tuples become lists).

    Uses ``model.hyperparameters`` (a dict, see :mod:`torch_pet.backbone`) when the model
    provides it, otherwise reads each argument of ``type(model).__init__`` from the
    attribute of the same name.
    """
    explicit = backbone_info(model).hyperparameters
    if explicit is not None:
        params = dict(explicit)
    else:
        params = {}
        signature = inspect.signature(type(model).__init__)
        for name, parameter in list(signature.parameters.items())[1:]:
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if not hasattr(model, name):
                raise ValueError(
                    f"cannot save {type(model).__name__}: its constructor argument {name!r} is "
                    "not stored as an attribute; give the model a `hyperparameters` dict")
            params[name] = getattr(model, name)
    try:
        return check_plain_data(params, f"{type(model).__name__} hyperparameters")
    except TypeError as err:
        raise TypeError(f"cannot save {type(model).__name__}: {err}; a checkpoint rebuilds "
                        "the model from plain data only") from err


def _model_record(model: torch.nn.Module) -> dict:
    info = backbone_info(model)
    self_energies = info.self_energies
    return {
        "class": model_class_name(type(model)),
        "hyperparameters": model_hyperparameters(model),
        "species": list(info.species or ()),
        "self_energies": None if self_energies is None else self_energies.detach().cpu(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
    }


def save_checkpoint(path: str, model: torch.nn.Module, *,
                    aux_model: Optional[torch.nn.Module] = None, optimizer=None,
                    scheduler=None, trainer: Optional[dict] = None,
                    metadata: Optional[dict] = None) -> None:
    """Write a checkpoint atomically (a temporary file renamed into place), with the
    sha256 of its content (:func:`~torch_pet.checkpoint.integrity.content_hash`).

    ``trainer`` and ``metadata`` may hold tensors and plain data (str, int, float, bool,
    None, lists, tuples, dicts); anything else raises ``TypeError`` naming the entry.
    """
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
    record["content_sha256"] = content_hash(record)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(record, tmp)
    os.replace(tmp, path)


def _verify(record: dict, source: str) -> None:
    stored = record.get("content_sha256")
    if not isinstance(stored, str) or not _SHA256.fullmatch(stored):
        raise CheckpointError(f"{source} carries no valid content hash (content_sha256), "
                              "which its format requires; the file is damaged or was edited")
    try:
        actual = content_hash(record)
    except TypeError as err:
        raise CheckpointError(f"{source} is damaged: {err}") from err
    if actual != stored:
        raise CheckpointError(
            f"{source} is corrupted: the sha256 of its content ({actual[:16]}...) differs from "
            f"the one stored when it was written ({stored[:16]}...); the file was damaged or "
            "modified after saving. Restore it from a good copy")


def _check_model_record(model: Any, key: str, source: str) -> None:
    if not isinstance(model, dict):
        raise CheckpointError(f"{source} is damaged: its {key} record is not a dict")
    missing = [k for k in _MODEL_KEYS if k not in model]
    if missing:
        raise CheckpointError(f"{source} is damaged: its {key} record lacks {missing}")
    if not isinstance(model["class"], str):
        raise CheckpointError(f"{source} is damaged: its {key} class is not a string")
    try:
        check_plain_data(model["hyperparameters"], f"{key} hyperparameters")
    except TypeError as err:
        raise CheckpointError(f"{source}: {err}") from err
    if not isinstance(model["hyperparameters"], dict):
        raise CheckpointError(f"{source} is damaged: its {key} hyperparameters are not a dict")
    species = model["species"]
    if not isinstance(species, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in species):
        raise CheckpointError(f"{source} is damaged: its {key} species are not a list of ints")
    if model["self_energies"] is not None and not isinstance(model["self_energies"],
                                                             torch.Tensor):
        raise CheckpointError(f"{source} is damaged: its {key} self_energies are not a tensor")
    state = model["state_dict"]
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{source} is damaged: its {key} state_dict is not a dict of "
                              "tensors")
    if model.get("dtype", "float32") not in FLOAT_DTYPES:
        raise CheckpointError(f"{source} is damaged: its {key} dtype {model.get('dtype')!r} "
                              f"is not one of {sorted(FLOAT_DTYPES)}")


def upgrade_checkpoint(record: Any, source: str = "checkpoint") -> dict:
    """Validate a loaded checkpoint dict, verify its content hash (format >= 2) and upgrade
    it to ``FORMAT_VERSION``. Every problem raises :class:`CheckpointError` naming
    ``source``; a format-1 record (no hash) loads with a :class:`CheckpointWarning`."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        if isinstance(record, dict) and record and all(
                isinstance(v, torch.Tensor) for v in record.values()):
            raise CheckpointError(
                f"{source} holds a bare state_dict without a format version; build the model "
                "yourself and call model.load_state_dict(torch.load(...)), then write a "
                "proper checkpoint with torch_pet.checkpoint.save_checkpoint")
        raise CheckpointError(f"{source} is not a torch_pet checkpoint (no format {FORMAT!r} "
                              "tag)")
    version = record.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CheckpointError(f"{source} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source} was written with checkpoint format {version}, newer than the format "
            f"{FORMAT_VERSION} this torch_pet reads (written by torch_pet "
            f"{record.get('torch_pet_version', '?')}); upgrade torch_pet")
    if version >= 2:
        _verify(record, source)
    else:
        warnings.warn(f"{source} uses checkpoint format {version}, which carries no content "
                      "hash: its integrity cannot be verified. Load it once from a trusted "
                      "copy and re-save it with save_checkpoint to add one",
                      CheckpointWarning, stacklevel=3)
    while version < FORMAT_VERSION:
        if version not in UPGRADES:
            raise CheckpointError(
                f"{source} uses checkpoint format {version}, which this torch_pet cannot "
                f"upgrade to format {FORMAT_VERSION}; load it with the torch_pet version that "
                "wrote it and retrain or re-save")
        record = UPGRADES[version](dict(record))
        version = record["format_version"]
    for key in ("aux_model", *_STATE_KEYS):
        record.setdefault(key, None)
    record.setdefault("metadata", {})
    _check_model_record(record.get("model"), "model", source)
    if record.get("aux_model") is not None:
        _check_model_record(record["aux_model"], "aux_model", source)
    for key in _STATE_KEYS:
        if record.get(key) is not None and not isinstance(record[key], dict):
            raise CheckpointError(f"{source} is damaged: its {key} state is not a dict")
    if not isinstance(record["metadata"], dict):
        raise CheckpointError(f"{source} is damaged: its metadata is not a dict")
    return record


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Read, verify, validate and upgrade a checkpoint file.

    The file is read with ``torch.load(weights_only=True)`` (no code in it can run). A
    missing path raises ``FileNotFoundError``; anything wrong with the file itself (empty,
    truncated, corrupted, not a checkpoint, hash mismatch) raises :class:`CheckpointError`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint path must be a str or os.PathLike, got "
                        f"{type(path).__name__}")
    path = os.fspath(path)
    source = f"checkpoint {path}"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{source} does not exist")
    if not os.path.isfile(path):
        raise CheckpointError(f"{source} is not a regular file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{source} is empty (0 bytes); it was not written completely")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as err:
        raise CheckpointError(f"{source} cannot be opened ({type(err).__name__}: "
                              f"{err.strerror or err}); check its permissions") from err
    except Exception as err:  # torch raises assorted types for damaged or foreign files
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise CheckpointError(
            f"{source} cannot be read: it is truncated, corrupted or not a torch.save file "
            f"({type(err).__name__}: {detail})") from err
    try:
        return upgrade_checkpoint(record, source=source)
    except CheckpointError:
        raise
    except Exception as err:  # an upgrade step tripping over a damaged record
        raise CheckpointError(f"{source} is damaged ({type(err).__name__}: {err})") from err


def load_model(path: str, *, aux: bool = False, device=None,
               dtype: Optional[torch.dtype] = None,
               extra_classes: Optional[Mapping[str, type]] = None) -> torch.nn.Module:
    """The trained model (or, with ``aux=True``, the auxiliary model) of a checkpoint.

    Only torch_pet's models, classes registered with
    :func:`~torch_pet.checkpoint.register_model` and ``extra_classes`` (name -> class, e.g.
    ``{"MySchNet": MySchNet}``) can be instantiated.
    """
    record = load_checkpoint(path)
    key = "aux_model" if aux else "model"
    if record.get(key) is None:
        raise CheckpointError(f"checkpoint {os.fspath(path)} holds no "
                              f"{key.replace('_', ' ')}")
    return build_model(record[key], device=device, dtype=dtype, extra_classes=extra_classes,
                       source=f"checkpoint {os.fspath(path)}")
