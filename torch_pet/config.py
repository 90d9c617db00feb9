"""Typed configuration: one dataclass per concept, each field with a type, a default, a help
text and a check.

A configuration class derives from :class:`Config` and declares its fields with
:func:`option` (a scalar) or :func:`section` (a nested configuration)::

    @dataclass
    class TrainingConfig(Config):
        epochs: int = option(100, "maximum number of epochs", check=POSITIVE_INT)

Construction coerces and checks every field (``int`` fields take only integers, ``float``
fields integers, floats and numeric strings such as YAML's ``1e-3``; ``Optional`` fields
also ``None``); a bad value raises :class:`OptionError` (a ``ValueError``) or
:class:`OptionTypeError` (a ``TypeError``) naming the field. The same metadata generates
the command-line options and their help texts (:mod:`torch_pet.cli`), the YAML run files
(:meth:`Config.from_dict` / :meth:`Config.to_dict`) and the docstrings
(:func:`fields_doc`). No argparse or YAML here: those live in the entry points.
"""
import dataclasses
import math
import re
import typing
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import torch

__all__ = ["Config", "Check", "OptionError", "OptionTypeError", "UnknownKeyError", "option",
           "section", "fields_doc", "resolve_device", "POSITIVE_INT", "NON_NEGATIVE_INT",
           "POSITIVE", "NON_NEGATIVE", "FRACTION", "UNIT_INTERVAL_OPEN", "DEVICE", "is_section"]


class OptionError(ValueError):
    """A configuration value is invalid: ``str()`` is ``"[owner: ]path problem"``.

    ``path`` is the dotted field path (``"training.epochs"``), ``problem`` the rest of the
    message (``"must be an integer >= 1, got 0"``), so that an entry point can name the
    option its own way (``--epochs``).
    """

    def __init__(self, path: str, problem: str, owner: Optional[str] = None):
        super().__init__(path, problem, owner)
        self.path, self.problem, self.owner = path, problem, owner

    def __str__(self) -> str:
        return f"{self.owner + ': ' if self.owner else ''}{self.path} {self.problem}"

    def within(self, section: str) -> "OptionError":
        """The same error with ``section.`` prefixed to the path."""
        return type(self)(f"{section}.{self.path}", self.problem, self.owner)


class OptionTypeError(OptionError, TypeError):
    """A configuration value has the wrong type (both a ``ValueError`` and a ``TypeError``)."""


class UnknownKeyError(OptionError):
    """A mapping given to :meth:`Config.from_dict` has a key that is no field."""


class Check(NamedTuple):
    """A predicate on a coerced value and the requirement it states (for messages)."""

    test: Callable[[Any], bool]
    requirement: str


POSITIVE_INT = Check(lambda v: v >= 1, "an integer >= 1")
NON_NEGATIVE_INT = Check(lambda v: v >= 0, "an integer >= 0")
POSITIVE = Check(lambda v: math.isfinite(v) and v > 0, "positive and finite")
NON_NEGATIVE = Check(lambda v: math.isfinite(v) and v >= 0, ">= 0 and finite")
FRACTION = Check(lambda v: 0 < v <= 1, "in (0, 1]")
UNIT_INTERVAL_OPEN = Check(lambda v: 0 <= v < 1, "in [0, 1)")
DEVICE = Check(lambda v: re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v) is not None,
               "auto, cpu, cuda or cuda:N")


def option(default: Any, help: str, *, check: Optional[Check] = None, choices=None,
           cli: bool = True, metavar: Optional[str] = None) -> Any:
    """A configuration field: ``default``, a ``help`` text, an optional ``check`` (applied
    to non-``None`` values; for tuples, to every element), ``choices`` (a tuple, or a
    callable returning one), and whether the command line exposes it (``cli``)."""
    if not help:
        raise ValueError("option: every configuration field needs a help text")
    metadata = dict(help=help, check=check, choices=choices, cli=cli, metavar=metavar)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls: type, help: str) -> Any:
    """A nested configuration field (a YAML mapping; its options are flattened on the
    command line)."""
    return dataclasses.field(default_factory=cls, metadata=dict(help=help, section=True))


def is_section(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get("section"))


def choices_of(field: dataclasses.Field) -> Optional[tuple]:
    choices = field.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices


class Config:
    """Base of the configuration dataclasses: coercion and checks on construction,
    conversion from and to plain dicts (YAML), ``replace``. Subclasses add cross-field
    checks in :meth:`check`."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        owner = type(self).__name__
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if is_section(field):
                if isinstance(value, Mapping):
                    value = hints[field.name].from_dict(value)
                elif not isinstance(value, hints[field.name]):
                    raise OptionTypeError(field.name, f"must be a {hints[field.name].__name__} "
                                          f"or a mapping, got {type(value).__name__}", owner)
            else:
                value = _coerce(value, hints[field.name], field.name, owner)
                _check(value, field, owner)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Cross-field checks (raise :class:`OptionError`); none by default."""

    @classmethod
    def from_dict(cls, mapping: Mapping, source: str = "") -> "Config":
        """Build from a (nested) mapping; a key that is no field raises naming its path."""
        if not isinstance(mapping, Mapping):
            raise OptionTypeError(cls.__name__, f"must be a mapping of options, got "
                                  f"{type(mapping).__name__}", source or None)
        known = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in mapping.items():
            if key not in known:
                raise UnknownKeyError(str(key), f"is not an option of {cls.__name__}; known: "
                                      f"{', '.join(sorted(known))}", source or None)
            if is_section(known[key]) and isinstance(value, Mapping):
                try:
                    value = hints[key].from_dict(value)
                except OptionError as err:
                    raise err.within(key) from None
            values[key] = value
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        """Plain Python values (tuples as lists, sections as dicts), e.g. for YAML."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Config):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def fields_doc(cls: type, indent: int = 8) -> str:
    """One ``name: help`` line per field (for docstrings generated from the config)."""
    pad = " " * indent

    def default(f):
        text = repr(f.default)
        return f" (default {text})" if len(text) <= 40 else ""

    return "\n".join(f"{pad}{f.name}: {f.metadata['help']}{default(f)}"
                     for f in dataclasses.fields(cls) if not is_section(f))


# ----------------------------------------------------------------------------- internals
def _describe(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value, tp, name: str, owner: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name, owner)
    if origin in (tuple, Tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, range)):
            raise OptionTypeError(name, f"must be a sequence, got {value!r}", owner)
        value = tuple(value)
        if args and args[-1] is not Ellipsis and len(value) != len(args):
            raise OptionError(name, f"must have {len(args)} values, got {len(value)}", owner)
        element = args[0] if args else Any
        return tuple(_coerce(v, element, name, owner) for v in value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise OptionTypeError(name, f"must be true or false, got {value!r}", owner)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionTypeError(name, f"must be an integer, got {value!r}", owner)
        return int(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionTypeError(name, f"must be a number, got {value!r}", owner)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise OptionTypeError(name, f"must be a string, got {value!r}", owner)
        return value
    raise TypeError(f"{owner}: field {name} has an unsupported type {_describe(tp)}")


def _check(value, field: dataclasses.Field, owner: str) -> None:
    if value is None:
        return
    items = value if isinstance(value, tuple) else (value,)
    choices = choices_of(field)
    if choices is not None and any(v not in choices for v in items):
        raise OptionError(field.name, f"must be one of {choices}, got {value!r}", owner)
    check = field.metadata.get("check")
    if check is not None and not all(check.test(v) for v in items):
        raise OptionError(field.name, f"must be {check.requirement}, got {value!r}", owner)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named device, checked.

    Raises :class:`OptionError` (path ``device``) for a malformed name, for CUDA where
    torch has no usable GPU and for a GPU index that does not exist.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise OptionTypeError("device", f"must be a string such as 'cpu' or 'cuda:0', got "
                              f"{device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise OptionError("device", f"must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("device", f"is {device!r} but CUDA is not available here "
                              "(torch.cuda.is_available() is False: a CPU-only torch build or "
                              "no GPU); use cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise OptionError("device", f"is {device!r} but only {torch.cuda.device_count()} "
                              "CUDA device(s) exist")
    elif resolved.type != "cpu":
        raise OptionError("device", f"must be auto, cpu, cuda or cuda:N, got {device!r}")
    return resolved
