"""Datasets larger than memory: structures in a folder of flat arrays, read lazily.

``torch-pet preprocess data.xyz out/`` (:func:`preprocess_extxyz`) streams an extended-XYZ
file, one structure at a time, into ``out/``; :class:`OnDiskStructures` (a PyG ``Dataset``)
maps the arrays (``numpy.memmap``) and builds each ``Data`` on access, so only the
structures being batched are read. Training on it (``--dataset ondisk --data out/``) gives
the same results as on the extended-XYZ file in memory (same split, same values).

Why not ``torch_geometric.data.OnDiskDataset``: with its default schema each structure is
stored with ``torch.save`` and read back with ``torch.load(weights_only=False)``, and PyG's
``Dataset`` reads ``pre_transform.pt``/``pre_filter.pt`` of the processed folder the same
way, so a folder from someone else could run code when loaded. Here a dataset is raw
little-endian arrays plus one JSON index; loading parses JSON, checks every size and maps
the arrays: nothing in the folder is ever executed.

Layout of the folder (B structures, N atoms in all)::

    index.json     {"format": "torch_pet.structures", "version": 1, "num_structures": B,
                    "num_atoms": N, "species": [...], "source": "...",
                    "fields": {name: {"per_atom": bool, "dtype": "float64", "shape": [...]}},
                    "sha256": {file: hex digest}}
    atom_ptr.bin   int64 [B + 1]   (structure b holds atoms ptr[b]:ptr[b+1])
    <name>.bin     per-atom fields [N, *shape]; per-structure fields [B, *shape]
"""
import hashlib
import json
import math
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch_geometric.data import Data, Dataset

__all__ = ["FORMAT", "VERSION", "ATOM_KEYS", "OutDirError", "write_structures", "iter_extxyz",
           "preprocess_extxyz", "read_index", "OnDiskStructures"]

FORMAT, VERSION = "torch_pet.structures", 1
ATOM_KEYS = ("z", "pos", "forces")  # per-atom fields; every other field is per structure
INDEX = "index.json"
_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "bool": np.bool_}


class OutDirError(ValueError):
    """The output folder of a write cannot be used."""


def _dtype_name(tensor: torch.Tensor) -> str:
    name = str(tensor.dtype).replace("torch.", "")
    if name not in _DTYPES:
        raise TypeError(f"write_structures: dtype {tensor.dtype} is not stored; use one of "
                        f"{tuple(_DTYPES)}")
    return name


def _prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutDirError(f"{out_dir} is an existing file; give a directory")
    os.makedirs(out_dir, exist_ok=True)
    ours = [f for f in os.listdir(out_dir) if f == INDEX or f.endswith(".bin")]
    others = sorted(set(os.listdir(out_dir)) - set(ours))
    if others:
        raise OutDirError(f"{out_dir} holds other files ({', '.join(others[:3])}); give "
                         "an empty or new directory")
    if ours and not overwrite:
        raise OutDirError(f"{out_dir} already holds a dataset; pass overwrite=True "
                          "(--overwrite) to replace it, or give a new directory")
    for name in ours:
        os.remove(os.path.join(out_dir, name))


def write_structures(structures: Iterable[Data], out_dir: str, *, source: str = "",
                     overwrite: bool = False, atom_keys: Sequence[str] = ATOM_KEYS,
                     drop: Sequence[str] = ()) -> dict:
    """Write ``structures`` (read one at a time from any iterable) to ``out_dir``.

    Every structure must carry the fields of the first with the same dtypes and trailing
    shapes (per-atom fields ``atom_keys``: [n_atoms, ...]); ``drop`` names fields to leave
    out. The index is written last, so an interrupted write leaves no readable dataset.
    Returns the index.
    """
    _prepare_out_dir(out_dir, overwrite)
    files, hashes, spec, species = {}, {}, None, set()
    ptr, count = [0], 0
    try:
        for b, data in enumerate(structures):
            where = f"write_structures: structure {b}"
            if not isinstance(getattr(data, "z", None), torch.Tensor) or data.z.dim() != 1:
                raise ValueError(f"{where}: needs z [n_atoms] (atomic numbers)")
            n = data.z.numel()
            if n == 0:
                raise ValueError(f"{where}: has no atoms")
            keys = [k for k in data.keys() if k not in drop]
            if spec is None:
                spec = {k: {"per_atom": k in atom_keys, "dtype": _dtype_name(data[k]),
                            "shape": list(data[k].shape[1:] if k in atom_keys
                                          else data[k].shape)} for k in keys}
                for k in spec:
                    files[k] = open(os.path.join(out_dir, f"{k}.bin"), "wb")
                    hashes[k] = hashlib.sha256()
            if sorted(keys) != sorted(spec):
                raise ValueError(f"{where}: carries {sorted(keys)} but the first structure "
                                 f"{sorted(spec)}; every structure needs the same fields")
            for k, s in spec.items():
                value = data[k]
                expected = [n] + s["shape"] if s["per_atom"] else s["shape"]
                if list(value.shape) != expected or _dtype_name(value) != s["dtype"]:
                    raise ValueError(f"{where}: field {k} is {value.dtype} {list(value.shape)}, "
                                     f"expected {s['dtype']} {expected}")
                raw = value.detach().cpu().contiguous().numpy().astype(
                    np.dtype(_DTYPES[s["dtype"]]).newbyteorder("<"), copy=False).tobytes()
                files[k].write(raw)
                hashes[k].update(raw)
            species.update(data.z.tolist())
            ptr.append(ptr[-1] + n)
            count += 1
    finally:
        for f in files.values():
            f.close()
    if count == 0:
        raise ValueError("write_structures: no structure to write")
    raw = np.asarray(ptr, dtype="<i8").tobytes()
    with open(os.path.join(out_dir, "atom_ptr.bin"), "wb") as f:
        f.write(raw)
    digests = {f"{k}.bin": h.hexdigest() for k, h in hashes.items()}
    digests["atom_ptr.bin"] = hashlib.sha256(raw).hexdigest()
    index = {"format": FORMAT, "version": VERSION, "num_structures": count,
             "num_atoms": ptr[-1], "species": sorted(species), "source": source,
             "fields": spec, "sha256": digests}
    with open(os.path.join(out_dir, INDEX), "w") as f:
        json.dump(index, f, indent=1)
    return index


def iter_extxyz(path: str, *, properties: Optional[Sequence[str]] = None,
                energy_key: str = "energy", forces_key: str = "forces",
                stress_key: str = "stress", periodic: Optional[list] = None) -> Iterator[Data]:
    """The structures of an extended-XYZ file one at a time (float64), checked as
    :func:`~torch_pet.datasets.extxyz.read_extxyz` checks them; ``cell``/``pbc`` on every
    structure. ``periodic`` (a list) gets True appended for each structure with a lattice or
    a periodic direction."""
    from torch_pet.datasets.extxyz import (_structure_to_data, found_properties, is_periodic,
                                           iter_atoms, property_keys)

    keys = property_keys(energy_key, forces_key, stress_key)
    for index, atoms in enumerate(iter_atoms(path, properties=properties)):
        if properties is None:
            properties = found_properties(atoms, keys)
        if periodic is not None and is_periodic(atoms):
            periodic.append(True)
        yield _structure_to_data(atoms, f"{path}: structure {index}", properties, keys, True,
                                 torch.float64)


def preprocess_extxyz(path: str, out_dir: str, *, overwrite: bool = False,
                      **read_kwargs) -> dict:
    """Convert an extended-XYZ file into an on-disk dataset (float64, as in the file);
    ``cell``/``pbc`` are kept when any structure has a lattice or a periodic direction
    (as :func:`~torch_pet.datasets.extxyz.read_extxyz` does). Returns the index."""
    periodic: list = []
    index = write_structures(iter_extxyz(path, periodic=periodic, **read_kwargs), out_dir,
                             source=os.path.abspath(path), overwrite=overwrite)
    if not periodic:
        for name in ("cell", "pbc"):
            os.remove(os.path.join(out_dir, f"{name}.bin"))
            del index["fields"][name], index["sha256"][f"{name}.bin"]
        with open(os.path.join(out_dir, INDEX), "w") as f:
            json.dump(index, f, indent=1)
    return index


def _expect(condition: bool, root: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{os.path.join(root, INDEX)}: {problem}; rewrite the dataset with "
                         "torch-pet preprocess")


def read_index(root: str) -> dict:
    """The checked index of the dataset in ``root`` (layout, dtypes, file sizes)."""
    path = os.path.join(root, INDEX)
    if not os.path.isfile(path):
        raise ValueError(f"{root} holds no {INDEX}: not an on-disk dataset (write one with "
                         "torch-pet preprocess data.xyz OUT/)")
    try:
        with open(path) as f:
            index = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    _expect(isinstance(index, dict) and index.get("format") == FORMAT, root,
            f"format is not {FORMAT!r}")
    _expect(index.get("version") == VERSION, root, f"version {index.get('version')!r} is not "
            f"{VERSION} (written by another torch_pet?)")
    num, atoms = index.get("num_structures"), index.get("num_atoms")
    _expect(isinstance(num, int) and num >= 1 and isinstance(atoms, int) and atoms >= num,
            root, "num_structures/num_atoms are not positive integers")
    fields = index.get("fields")
    _expect(isinstance(fields, dict) and "z" in fields and "pos" in fields, root,
            "fields must include z and pos")
    sizes = {"atom_ptr.bin": (num + 1) * 8}
    for name, spec in fields.items():
        _expect(isinstance(spec, dict) and spec.get("dtype") in _DTYPES
                and isinstance(spec.get("per_atom"), bool) and isinstance(spec.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in spec["shape"])
                and name.isidentifier(), root, f"field {name!r} is malformed")
        rows = atoms if spec["per_atom"] else num
        itemsize = np.dtype(_DTYPES[spec["dtype"]]).itemsize
        sizes[f"{name}.bin"] = rows * math.prod(spec["shape"]) * itemsize
    _expect(isinstance(index.get("sha256"), dict) and set(index["sha256"]) == set(sizes),
            root, "sha256 must name every file of the dataset")
    _expect(isinstance(index.get("species"), list)
            and all(isinstance(z, int) for z in index["species"]), root, "species is malformed")
    for file, size in sizes.items():
        full = os.path.join(root, file)
        actual = os.path.getsize(full) if os.path.isfile(full) else None
        _expect(actual == size, root, f"{file} has {actual} bytes, expected {size} "
                "(missing or truncated)")
    return index


class OnDiskStructures(Dataset):
    """A PyG dataset reading the structures of an on-disk dataset lazily (memory maps).

    Args:
        root: the folder written by :func:`write_structures` / ``torch-pet preprocess``.
        dtype: floating dtype of the returned tensors (the file keeps its own).
        transform: PyG transform applied on access.
        verify: also check the sha256 of every file (reads them all once).

    Shapes:
        per structure as stored, e.g. z [n], pos [n, 3], energy [1], forces [n, 3]
    """

    def __init__(self, root: str, *, dtype: torch.dtype = torch.float32,
                 transform: Optional[Callable] = None, verify: bool = False):
        self.index = read_index(root)
        super().__init__(None, transform)
        self.path, self.dtype = root, dtype
        self._arrays, self._pid = None, None
        ptr = self._open()["atom_ptr"]
        if ptr[0] != 0 or ptr[-1] != self.index["num_atoms"] or (np.diff(ptr) < 1).any():
            raise ValueError(f"{root}/atom_ptr.bin is not an increasing pointer from 0 to "
                             f"{self.index['num_atoms']}; rewrite the dataset")
        if verify:
            self.verify()

    def _open(self) -> dict:
        if self._arrays is None or self._pid != os.getpid():  # one set of maps per process
            num, atoms = self.index["num_structures"], self.index["num_atoms"]
            arrays = {"atom_ptr": np.memmap(os.path.join(self.path, "atom_ptr.bin"), "<i8",
                                            mode="r", shape=(num + 1,))}
            for name, spec in self.index["fields"].items():
                shape = (atoms if spec["per_atom"] else num, *spec["shape"])
                dtype = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
                arrays[name] = np.memmap(os.path.join(self.path, f"{name}.bin"), dtype,
                                         mode="r", shape=shape)
            self._arrays, self._pid = arrays, os.getpid()
        return self._arrays

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_arrays"] = state["_pid"] = None  # reopened by each worker process
        return state

    def verify(self) -> None:
        """Check the sha256 of every file against the index."""
        for file, expected in self.index["sha256"].items():
            digest = hashlib.sha256()
            with open(os.path.join(self.path, file), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != expected:
                raise ValueError(f"{os.path.join(self.path, file)} does not match the sha256 "
                                 "of its index: the dataset was modified or damaged")

    @property
    def species(self) -> list:
        return list(self.index["species"])

    def structure_sizes(self) -> torch.Tensor:
        """Atoms per structure [num_structures] (of the selected structures)."""
        sizes = torch.from_numpy(np.diff(np.asarray(self._open()["atom_ptr"])))
        return sizes[torch.as_tensor(list(self.indices()), dtype=torch.long)]

    def len(self) -> int:
        return self.index["num_structures"]

    def get(self, idx: int) -> Data:
        arrays = self._open()
        start, stop = int(arrays["atom_ptr"][idx]), int(arrays["atom_ptr"][idx + 1])
        data = Data()
        for name, spec in self.index["fields"].items():
            array = arrays[name]
            value = torch.from_numpy(np.array(array[start:stop] if spec["per_atom"]
                                              else array[idx],
                                              dtype=array.dtype.newbyteorder("=")))
            data[name] = value.to(self.dtype) if value.is_floating_point() else value
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, path={self.path!r})"
