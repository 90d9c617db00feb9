"""Integrity of checkpoint files: one error type, a content hash, plain-data checks.

The content hash is a sha256 over a canonical serialisation of a checkpoint record (every
key but ``content_sha256`` itself). The serialisation is defined here, once, and does not
depend on how ``torch.save`` lays out the zip file, on dict insertion order or on devices:

* every value is written as a one-byte tag followed by a length-prefixed payload
  (lengths as 8-byte little-endian unsigned integers);
* ``None`` ``n``; ``bool`` ``b`` (one byte 0/1); ``int`` ``i`` (decimal text, any size);
  ``float`` ``f`` (IEEE-754 binary64, little-endian, so NaN payloads and -0.0 count);
  ``str`` ``s`` (UTF-8);
* ``list`` ``l`` and ``tuple`` ``u``: the item count, then the items in order;
* ``dict`` (any mapping) ``d``: the item count, then (key, value) pairs sorted by the
  bytes of the serialised key; keys are ``str`` or ``int``;
* tensor ``t``: dtype name, number of dimensions, each size, then the raw bytes of the
  values in row-major (C) order as stored in memory (little-endian on every platform
  torch_pet supports).

Anything else (a function, a numpy array, bytes, a sparse tensor, ...) is refused with a
``TypeError`` naming where it sits in the record.
"""
import hashlib
import struct
from typing import Any

import torch

#: the serialisation defined above; part of the hash, so a future scheme cannot collide
HASH_SCHEME = b"torch_pet.checkpoint.content_sha256/1\n"

#: what checkpoint hyperparameters may contain (recursively, in lists and str-keyed dicts)
PLAIN_TYPES = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A file that cannot be loaded as a torch_pet checkpoint: missing layout, corrupted
    or truncated bytes, a content hash that does not match, a model class that is not
    allowed, hyperparameters that are not plain data, weights that do not fit the model."""


class CheckpointWarning(UserWarning):
    """A checkpoint that loads but whose integrity cannot be verified (format 1: no hash)."""


def _length(n: int) -> bytes:
    return struct.pack("<Q", n)


def _atom(tag: bytes, payload: bytes) -> bytes:
    return tag + _length(len(payload)) + payload


def _scalar_bytes(value: Any, where: str) -> bytes:
    if value is None:
        return _atom(b"n", b"")
    if isinstance(value, bool):
        return _atom(b"b", b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return _atom(b"i", str(int(value)).encode("ascii"))
    if isinstance(value, float):
        return _atom(b"f", struct.pack("<d", value))
    if isinstance(value, str):
        return _atom(b"s", value.encode("utf-8", "surrogatepass"))
    raise TypeError(f"{where} is a {type(value).__name__}, which a checkpoint cannot hold "
                    "(allowed: tensors, str, int, float, bool, None, lists, tuples, dicts)")


def _feed(h, value: Any, where: str, depth: int = 0) -> None:
    if depth > 64:
        raise TypeError(f"{where} is nested more than 64 levels deep")
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized:
            raise TypeError(f"{where} is a {value.layout} tensor; only dense tensors can be "
                            "saved in a checkpoint")
        flat = value.detach().resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
        header = f"{str(value.dtype)}:{value.dim()}:" + ",".join(map(str, value.shape))
        h.update(_atom(b"t", header.encode("ascii")))
        raw = flat.view(torch.uint8).numpy()
        h.update(_length(raw.nbytes))
        h.update(raw.data)
    elif isinstance(value, dict):
        items = []
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; "
                                "checkpoint dict keys must be str or int")
            items.append((_scalar_bytes(key, where), key, item))
        items.sort(key=lambda entry: entry[0])
        h.update(_atom(b"d", _length(len(items))))
        for key_bytes, key, item in items:
            h.update(key_bytes)
            _feed(h, item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, (list, tuple)):
        h.update(_atom(b"u" if isinstance(value, tuple) else b"l", _length(len(value))))
        for i, item in enumerate(value):
            _feed(h, item, f"{where}[{i}]", depth + 1)
    else:
        h.update(_scalar_bytes(value, where))


def content_hash(record: dict) -> str:
    """sha256 (hex) of the canonical serialisation of ``record`` without ``content_sha256``.

    Raises ``TypeError`` naming the entry when the record holds a value the serialisation
    does not define (see the module docstring).
    """
    h = hashlib.sha256(HASH_SCHEME)
    _feed(h, {k: v for k, v in record.items() if k != "content_sha256"}, "checkpoint")
    return h.hexdigest()


def check_plain_data(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` with tuples turned into lists, if it is plain data: str, int, float,
    bool, None, and lists/tuples/str-keyed dicts of those. Otherwise ``TypeError`` naming
    ``where`` (never a callable, a class, a tensor or an object)."""
    if depth > 32:
        raise TypeError(f"{where} is nested more than 32 levels deep")
    if isinstance(value, PLAIN_TYPES):
        return value
    if isinstance(value, (list, tuple)):
        return [check_plain_data(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}; hyperparameter "
                                "dicts must have str keys")
            out[key] = check_plain_data(item, f"{where}[{key!r}]", depth + 1)
        return out
    raise TypeError(f"{where} is a {type(value).__name__}; hyperparameters must be plain "
                    "data (str, int, float, bool, None, lists and dicts of those)")
