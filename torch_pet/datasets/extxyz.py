"""Read extended-XYZ files (energy, forces, stress, cell, pbc) into PyG ``Data`` objects.

Parsing is done by ASE (``pip install ase``); this module checks every structure and turns
it into the package's data convention::

    Data(z [N] long, pos [N, 3], energy [1], forces [N, 3], stress [1, 3, 3],
         cell [1, 3, 3], pbc [1, 3] bool)

Units are taken as they are in the file (eV, A, eV/A, eV/A^3 for ASE-written files). The
stress follows ASE's convention, sigma = (1/V) dE/d(strain); a six-component (Voigt) stress
is expanded to 3x3. ``cell``/``pbc`` are stored for every structure as soon as one structure
of the file has a lattice or a periodic direction (zeros/False for the others), and omitted
for purely molecular files.

Every structure of a file must carry the same properties; a missing property, a
per-atom array whose length does not match the atom count, a malformed frame or a
non-finite value raises ``ValueError`` naming the file and the structure index.

A file with forces but no energies (``Properties=species:S:1:pos:R:3:forces:R:3``, no
``energy=`` key) loads: the structures carry ``forces`` and no ``energy`` (enough to
compare forces). Training needs energies (PET's forces are derivatives of its energy):
``TrainingConfig`` then raises a ``ValueError`` saying that the energies are missing.
Pass ``properties=("energy", "forces")`` to require both at load time.
"""
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

PROPERTIES = ("energy", "forces", "stress")


def _value(atoms, key: str, per_atom: bool):
    """A property stored under ``key`` in ``atoms.arrays``/``atoms.info`` or its calculator."""
    if per_atom and key in atoms.arrays:
        return atoms.arrays[key]
    if not per_atom and key in atoms.info:
        return atoms.info[key]
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    return None


def _structure_to_data(atoms, where: str, properties: Sequence[str], keys: dict,
                       periodic_file: bool, dtype: torch.dtype) -> Data:
    num_atoms = len(atoms)
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise ValueError(f"{where}: positions contain NaN or Inf; fix the coordinates")
    data = Data(z=torch.as_tensor(atoms.numbers, dtype=torch.long),
                pos=torch.as_tensor(pos, dtype=dtype))

    for name in properties:
        key = keys[name]
        value = _value(atoms, key, per_atom=(name == "forces"))
        if value is None:
            raise ValueError(
                f"{where}: property '{name}' (key '{key}') is missing; every structure of "
                f"the file must carry it (or pass properties=... without '{name}', or the "
                f"right {name}_key=...)"
            )
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: property '{name}' (key '{key}') is not numeric: "
                             f"{value!r}") from None
        if name == "energy":
            if value.size != 1:
                raise ValueError(f"{where}: energy (key '{key}') must be one number, got "
                                 f"shape {value.shape}")
            value = value.reshape(1)
        elif name == "forces":
            if value.shape != (num_atoms, 3):
                raise ValueError(f"{where}: forces (key '{key}') have shape {value.shape} but "
                                 f"the structure has {num_atoms} atoms; expected "
                                 f"({num_atoms}, 3)")
        elif name == "stress":
            if value.size == 6:  # Voigt order xx, yy, zz, yz, xz, xy
                xx, yy, zz, yz, xz, xy = value.reshape(6)
                value = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
            elif value.size == 9:
                value = value.reshape(3, 3)
            else:
                raise ValueError(f"{where}: stress (key '{key}') must have 6 (Voigt) or 9 "
                                 f"components, got {value.size}")
            value = value.reshape(1, 3, 3)
        if not np.isfinite(value).all():
            raise ValueError(f"{where}: property '{name}' (key '{key}') contains NaN or Inf; "
                             "remove the structure or fix the value")
        data[name] = torch.as_tensor(value, dtype=dtype)

    if periodic_file:
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if not np.isfinite(cell).all():
            raise ValueError(f"{where}: the lattice contains NaN or Inf")
        for axis in np.nonzero(pbc)[0]:
            if np.linalg.norm(cell[axis]) == 0.0:
                raise ValueError(f"{where}: direction {axis} is periodic but its lattice "
                                 "vector is zero; give a Lattice= or set that pbc to F")
        data.cell = torch.as_tensor(cell, dtype=dtype).reshape(1, 3, 3)
        data.pbc = torch.as_tensor(pbc).reshape(1, 3)
    return data


def iter_atoms(path: str, *, properties: Optional[Sequence[str]] = None) -> Iterator:
    """The ``ase.Atoms`` of an extended-XYZ file one at a time; a structure that does not
    parse raises ValueError naming the file and the structure, an empty file raises too.
    ``properties`` (if given) is checked against :data:`PROPERTIES` first."""
    try:
        import ase.io
    except ImportError as err:
        raise ImportError("reading extended-XYZ files needs ASE: pip install ase") from err
    if not os.path.isfile(path):
        raise FileNotFoundError(f"extended-XYZ file {path} does not exist")
    if properties is not None:
        unknown = [p for p in properties if p not in PROPERTIES]
        if unknown:
            raise ValueError(f"unknown properties {unknown}; choose from {PROPERTIES}")
    reader = ase.io.iread(path, index=":", format="extxyz")
    index = 0
    while True:
        try:
            atoms = next(reader)
        except StopIteration:
            break
        except Exception as err:  # ASE raises XYZError, ValueError, IndexError, ...
            raise ValueError(
                f"{path}: structure {index} could not be parsed ({type(err).__name__}: {err}); "
                "check that its atom-count line matches the number of atom lines and that "
                "every line has the columns declared in Properties="
            ) from err
        yield atoms
        index += 1
    if index == 0:
        raise ValueError(f"{path}: the file holds no structure")


def property_keys(energy_key: str = "energy", forces_key: str = "forces",
                  stress_key: str = "stress") -> Dict[str, str]:
    """Map of :data:`PROPERTIES` to their names in the file."""
    return {"energy": energy_key, "forces": forces_key, "stress": stress_key}


def found_properties(atoms, keys: Dict[str, str]) -> List[str]:
    """The properties of :data:`PROPERTIES` that ``atoms`` carries."""
    return [name for name in PROPERTIES
            if _value(atoms, keys[name], per_atom=(name == "forces")) is not None]


def is_periodic(atoms) -> bool:
    """Whether ``atoms`` has a lattice or a periodic direction."""
    return bool(atoms.pbc.any() or atoms.cell.rank > 0)


def read_extxyz(path: str, *, properties: Optional[Sequence[str]] = None,
                energy_key: str = "energy", forces_key: str = "forces",
                stress_key: str = "stress", dtype: torch.dtype = torch.float32) -> List[Data]:
    """Read every structure of an extended-XYZ file into a list of ``Data``.

    Args:
        path: the ``.xyz``/``.extxyz`` file.
        properties: subset of ``("energy", "forces", "stress")`` every structure must carry;
            ``None`` takes the properties found on the first structure.
        energy_key, forces_key, stress_key: names of the properties in the file (e.g.
            ``"REF_energy"``).
        dtype: floating dtype of the returned tensors.

    Shapes:
        per structure: z [N], pos [N, 3], energy [1], forces [N, 3], stress [1, 3, 3],
        cell [1, 3, 3], pbc [1, 3].
    """
    keys = property_keys(energy_key, forces_key, stress_key)
    frames = list(iter_atoms(path, properties=properties))
    if properties is None:
        properties = found_properties(frames[0], keys)
    periodic_file = any(is_periodic(atoms) for atoms in frames)
    return [
        _structure_to_data(atoms, f"{path}: structure {i}", properties, keys, periodic_file,
                           dtype)
        for i, atoms in enumerate(frames)
    ]


class ExtXYZDataset(InMemoryDataset):
    """An in-memory PyG dataset holding every structure of an extended-XYZ file.

    Takes the keyword arguments of :func:`read_extxyz`, plus a PyG ``transform``.
    """

    def __init__(self, path: str, *, transform: Optional[Callable] = None, **read_kwargs):
        super().__init__(None, transform)
        self.path = path
        data_list = read_extxyz(path, **read_kwargs)
        self.data, self.slices = self.collate(data_list)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, path={self.path!r})"
