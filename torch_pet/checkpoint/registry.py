"""Which model classes a checkpoint may instantiate, and how a model is rebuilt.

A checkpoint names its model class by a registry name (``"PET"``), never by an import
path: loading looks the name up in

1. torch_pet's own models (:func:`builtin_models`: ``{"PET": torch_pet.nn.pet.PET}``);
2. classes the user registered in this process (:func:`register_model`);
3. classes passed to the call (``extra_classes={"MySchNet": MySchNet}``).

Nothing else is ever imported or called. A model is rebuilt as ``cls(**hyperparameters)``
with hyperparameters that are plain data, first on the ``meta`` device (no memory) to check
that the stored weights fit the architecture and that the model's memory is bounded by the
stored weights, then for real.
"""
import inspect
from typing import Dict, Mapping, Optional, Type

import torch

from torch_pet.checkpoint.integrity import CheckpointError, check_plain_data

# format-1 checkpoints named classes by their import path
LEGACY_CLASS_PATHS = {"torch_pet.nn.pet.PET": "PET"}

# memory a model may hold beyond its stored weights (non-persistent buffers, lookups)
EXTRA_MODEL_BYTES = 64 * 2 ** 20

FLOAT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                "float32": torch.float32, "float64": torch.float64}

_USER_MODELS: Dict[str, type] = {}


def builtin_models() -> Dict[str, type]:
    """torch_pet's own model classes by registry name."""
    from torch_pet.nn.pet import PET

    return {"PET": PET}


def _check_class(name, cls, argument: str) -> None:
    if not isinstance(name, str) or not name or "." in name:
        raise TypeError(f"{argument}: model names must be non-empty strings without dots, "
                        f"got {name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f"{argument}: {name!r} must map to a torch.nn.Module subclass, got "
                        f"{cls!r}")
    builtin = builtin_models()
    if name in builtin and builtin[name] is not cls:
        raise ValueError(f"{argument}: the name {name!r} belongs to torch_pet's own "
                         f"{builtin[name].__qualname__}; register your class under another "
                         "name")


def register_model(cls: Type[torch.nn.Module], name: Optional[str] = None):
    """Allow checkpoints of ``cls`` (saved under ``name``, default ``cls.__name__``) to be
    loaded in this process. Only register classes you trust: loading calls
    ``cls(**hyperparameters)`` with the file's hyperparameters. Returns ``cls`` (usable
    as a decorator)."""
    name = cls.__name__ if name is None and inspect.isclass(cls) else name
    _check_class(name, cls, "register_model")
    _USER_MODELS[name] = cls
    return cls


def unregister_model(name: str) -> None:
    """Undo :func:`register_model` (``KeyError`` if ``name`` is not registered)."""
    del _USER_MODELS[name]


def model_class_name(cls: type) -> str:
    """The registry name a checkpoint of a ``cls`` instance is saved under."""
    for table in (builtin_models(), _USER_MODELS):
        for name, known in table.items():
            if known is cls:
                return name
    name = cls.__name__
    if name in builtin_models():
        raise ValueError(f"cannot save a {cls.__module__}.{cls.__qualname__}: its name "
                         f"{name!r} is that of torch_pet's own model; rename the class or "
                         "register it under another name with "
                         "torch_pet.checkpoint.register_model(cls, name=...)")
    return name


def resolve_class(name: str, source: str,
                  extra_classes: Optional[Mapping[str, type]] = None) -> type:
    """The class a checkpoint's model record names, from the allowed classes only."""
    extra = dict(extra_classes or {})
    for key, cls in extra.items():
        _check_class(key, cls, "extra_classes")
    builtin = builtin_models()
    if name in builtin:
        return builtin[name]
    allowed = {**_USER_MODELS, **extra}
    if name in allowed:
        return allowed[name]
    short = name.rpartition(".")[2]
    if "." in name and short in allowed:  # a format-1 import path of a user's class
        return allowed[short]
    raise CheckpointError(
        f"{source} names the model class {name!r}, which is not one of torch_pet's models "
        f"({', '.join(sorted(builtin))}) nor a class you allowed; nothing was imported or "
        f"run. If you trust this file and its class, pass the class yourself: "
        f"load_model(path, extra_classes={{{short!r}: TheClass}}) or "
        f"torch_pet.checkpoint.register_model(TheClass, name={short!r})")


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _check_fits(cls, hyperparameters: dict, state_dict: dict, source: str) -> None:
    """Build ``cls`` on the meta device: the stored weights must fit it exactly and it may
    hold at most EXTRA_MODEL_BYTES more than them (hyperparameters cannot claim memory)."""
    try:
        with torch.device("meta"):
            probe = cls(**hyperparameters)
    except Exception as err:  # the constructor rejected the file's hyperparameters
        if cls in builtin_models().values():
            raise CheckpointError(f"{source}: {cls.__name__} rejects the stored "
                                  f"hyperparameters: {err}") from err
        return  # a user's class that cannot be built on meta: trusted by its user
    expected = probe.state_dict()
    # entries a class declares optional (added later, with a default: PET's output_scale)
    optional = set(getattr(cls, "optional_state", ()))
    missing = sorted(set(expected) - set(state_dict) - optional)
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: the stored weights do not fit {cls.__name__} with the "
                              f"stored hyperparameters (missing {missing[:5]}, unexpected "
                              f"{unexpected[:5]})")
    for key, tensor in expected.items():
        if key in state_dict and tuple(tensor.shape) != tuple(state_dict[key].shape):
            raise CheckpointError(f"{source}: weight {key!r} has shape "
                                  f"{tuple(state_dict[key].shape)} but {cls.__name__} with the "
                                  f"stored hyperparameters expects {tuple(tensor.shape)}")
    held = _nbytes(list(probe.parameters()) + list(probe.buffers()))
    stored = _nbytes(state_dict.values())
    if held > stored + EXTRA_MODEL_BYTES:
        raise CheckpointError(f"{source}: {cls.__name__} with the stored hyperparameters would "
                              f"hold {held} bytes, far more than its {stored} bytes of stored "
                              "weights; the hyperparameters are not trustworthy")


def build_model(record: dict, *, device=None, dtype: Optional[torch.dtype] = None,
                extra_classes: Optional[Mapping[str, type]] = None,
                source: str = "checkpoint") -> torch.nn.Module:
    """Instantiate the model of a checkpoint's model record and load its weights.

    ``record``: ``load_checkpoint(path)["model"]`` (or ``["aux_model"]``); ``source``
    names the file in error messages. Only registered classes (see the module docstring)
    are instantiated; any failure raises :class:`CheckpointError`.
    """
    if not isinstance(record, dict) or not isinstance(record.get("class"), str):
        raise CheckpointError(f"{source}: the model record has no class name")
    cls = resolve_class(record["class"], source, extra_classes)
    try:
        hyperparameters = check_plain_data(record.get("hyperparameters"), "hyperparameters")
    except TypeError as err:
        raise CheckpointError(f"{source}: {err}") from err
    if not isinstance(hyperparameters, dict):
        raise CheckpointError(f"{source}: the model hyperparameters are not a dict")
    state_dict = record.get("state_dict")
    if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{source}: the model state_dict is not a dict of tensors")
    _check_fits(cls, hyperparameters, state_dict, source)
    stored = record.get("dtype", "float32")
    if stored not in FLOAT_DTYPES:
        raise CheckpointError(f"{source}: stored dtype {stored!r} is not one of "
                              f"{sorted(FLOAT_DTYPES)}")
    try:
        # in the stored dtype before loading: float64 weights copied into a float32 model
        # would be rounded
        model = cls(**hyperparameters).to(dtype=FLOAT_DTYPES[stored])
        model.load_state_dict(state_dict)
    except Exception as err:
        raise CheckpointError(f"{source}: cannot rebuild {record['class']} from the stored "
                              f"hyperparameters and weights: {err}") from err
    return model.to(device=device, dtype=FLOAT_DTYPES[stored] if dtype is None else dtype).eval()
