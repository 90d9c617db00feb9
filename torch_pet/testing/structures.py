"""Random test structures (molecules, distorted methane, periodic boxes, liquid water) and
the non-rotational transformations of the symmetry tests (translations, permutations).

Shapes: N atoms, B structures.
"""
import math
from typing import Sequence

import torch
from torch_geometric.data import Data

from torch_pet.rotations import GeneratorLike, as_generator, random_rotation

__all__ = ["random_molecule", "random_methane", "random_periodic_box", "water_box",
           "translate_structure", "permute_atoms", "batch_vector"]

# Attributes that describe a whole structure (or are labels), never permuted as atoms.
_STRUCTURE_KEYS = {"cell", "pbc", "energy", "stress", "ptr", "num_nodes", "virial"}


def random_molecule(num_atoms: int, *, species: Sequence[int] = (1, 6, 7, 8),
                    min_distance: float = 0.95, max_bond: float = 1.6,
                    generator: GeneratorLike = None, dtype: torch.dtype = torch.float64) -> Data:
    """A connected random cluster: each atom sits ``min_distance..max_bond`` Å from a random
    earlier atom and at least ``min_distance`` Å from all others (molecule-like density).

    Shapes:
        -> Data(z [N], pos [N, 3])
    """
    if num_atoms < 1:
        raise ValueError(f"random_molecule: num_atoms must be >= 1, got {num_atoms}")
    if not 0 < min_distance < max_bond:
        raise ValueError("random_molecule: need 0 < min_distance < max_bond, got "
                         f"{min_distance}, {max_bond}")
    gen = as_generator(generator)
    pos = torch.zeros(num_atoms, 3, dtype=torch.float64)
    for i in range(1, num_atoms):
        for _ in range(10_000):
            anchor = pos[int(torch.randint(i, (1,), generator=gen))]
            direction = torch.randn(3, generator=gen, dtype=torch.float64)
            length = min_distance + (max_bond - min_distance) * torch.rand(1, generator=gen, dtype=torch.float64)
            trial = anchor + length * direction / direction.norm()
            if bool(((pos[:i] - trial).norm(dim=1) >= min_distance).all()):
                pos[i] = trial
                break
        else:
            raise RuntimeError("random_molecule: could not place an atom; lower min_distance")
    pos = pos - pos.mean(0)
    z = torch.tensor(species)[torch.randint(len(species), (num_atoms,), generator=gen)]
    return Data(z=z, pos=pos.to(dtype))


def random_methane(generator: GeneratorLike = None, dtype: torch.dtype = torch.float64, *,
                   min_length: float = 0.8, max_length: float = 1.6,
                   min_hh: float = 0.8) -> Data:
    """A randomly distorted CH4: C at the origin, four H at random directions and C-H
    lengths in ``[min_length, max_length]`` Å, H-H distances at least ``min_hh`` Å.

    Shapes:
        -> Data(z [5], pos [5, 3])
    """
    gen = as_generator(generator)
    for _ in range(10_000):
        direction = torch.randn(4, 3, generator=gen, dtype=torch.float64)
        length = min_length + (max_length - min_length) * torch.rand(4, 1, generator=gen, dtype=torch.float64)
        hydrogens = length * direction / direction.norm(dim=1, keepdim=True)
        distance = torch.cdist(hydrogens, hydrogens) + 1e3 * torch.eye(4, dtype=torch.float64)
        if float(distance.min()) >= min_hh:
            break
    pos = torch.cat([torch.zeros(1, 3, dtype=torch.float64), hydrogens])
    return Data(z=torch.tensor([6, 1, 1, 1, 1]), pos=pos.to(dtype))


def random_periodic_box(num_atoms: int, *, box_length: float = 6.0, skew: float = 0.0,
                        species: Sequence[int] = (1, 8), min_distance: float = 0.9,
                        generator: GeneratorLike = None, dtype: torch.dtype = torch.float64) -> Data:
    """Random atoms in a periodic cell, at least ``min_distance`` Å apart (minimum image).

    ``skew`` > 0 makes the cell triclinic (off-diagonal entries up to ``skew·box_length``).

    Shapes:
        -> Data(z [N], pos [N, 3], cell [1, 3, 3], pbc [1, 3])
    """
    gen = as_generator(generator)
    cell = box_length * torch.eye(3, dtype=torch.float64)
    if skew:
        cell = cell + skew * box_length * torch.rand(3, 3, generator=gen, dtype=torch.float64).triu(1)
    frac = torch.zeros(0, 3, dtype=torch.float64)
    for _ in range(200 * num_atoms):
        if frac.shape[0] == num_atoms:
            break
        trial = torch.rand(1, 3, generator=gen, dtype=torch.float64)
        delta = frac - trial
        delta = (delta - delta.round()) @ cell
        if frac.shape[0] == 0 or float(delta.norm(dim=1).min()) >= min_distance:
            frac = torch.cat([frac, trial])
    else:
        if frac.shape[0] < num_atoms:
            raise RuntimeError("random_periodic_box: box too small for the atoms; lower "
                               "min_distance or enlarge box_length")
    z = torch.tensor(species)[torch.randint(len(species), (num_atoms,), generator=gen)]
    return Data(z=z, pos=(frac @ cell).to(dtype), cell=cell.to(dtype).unsqueeze(0),
                pbc=torch.ones(1, 3, dtype=torch.bool))


def water_box(num_molecules: int, *, density: float = 1.0, jitter: float = 0.1,
              generator: GeneratorLike = None, dtype: torch.dtype = torch.float64) -> Data:
    """A cubic periodic box of randomly oriented rigid H2O on a grid (liquid-like density).

    64 molecules (192 atoms) give a 12.4 Å box at 1 g/cm³; 512 (1,536 atoms) 24.8 Å.

    Shapes:
        -> Data(z [3M], pos [3M, 3], cell [1, 3, 3], pbc [1, 3])
    """
    gen = as_generator(generator)
    molar_mass = 18.015  # g/mol
    length = (num_molecules * molar_mass / (0.602214076 * density)) ** (1 / 3)  # Å
    per_side = math.ceil(num_molecules ** (1 / 3) - 1e-9)
    grid = torch.stack(torch.meshgrid(*[torch.arange(per_side, dtype=torch.float64)] * 3,
                                      indexing="ij"), dim=-1).reshape(-1, 3)[:num_molecules]
    oxygen = (grid + 0.5) * (length / per_side)
    oxygen = oxygen + jitter * torch.randn(num_molecules, 3, generator=gen, dtype=torch.float64)
    half_angle = math.radians(104.52) / 2
    bond = 0.9572
    local = torch.tensor([[0.0, 0.0, 0.0],
                          [bond * math.sin(half_angle), 0.0, bond * math.cos(half_angle)],
                          [-bond * math.sin(half_angle), 0.0, bond * math.cos(half_angle)]],
                         dtype=torch.float64)
    rotations = torch.stack([random_rotation(gen) for _ in range(num_molecules)])
    pos = oxygen[:, None, :] + local @ rotations.transpose(1, 2)  # [M, 3, 3]
    z = torch.tensor([8, 1, 1]).repeat(num_molecules)
    return Data(z=z, pos=pos.reshape(-1, 3).to(dtype),
                cell=(length * torch.eye(3, dtype=torch.float64)).to(dtype).unsqueeze(0),
                pbc=torch.ones(1, 3, dtype=torch.bool))


def translate_structure(data: Data, translation: torch.Tensor) -> Data:
    """A copy of ``data`` with every atom of structure b moved by ``translation[b]``.

    Shapes:
        translation [3] or [B, 3]
    """
    data = data.clone()
    translation = translation.to(dtype=data.pos.dtype, device=data.pos.device)
    if translation.dim() == 2:
        translation = translation[batch_vector(data)]
    data.pos = data.pos + translation
    return data


def permute_atoms(data: Data, permutation: torch.Tensor) -> Data:
    """A copy of ``data`` whose atom k is atom ``permutation[k]`` of ``data``.

    Every per-atom attribute is permuted; the permutation must keep the batch vector sorted
    (permute within structures). ``edge_index``, if present, is relabelled.

    Shapes:
        permutation [N]
    """
    data = data.clone()
    num_atoms = data.pos.shape[0]
    for key in _atom_keys(data):
        data[key] = data[key][permutation]
    if getattr(data, "edge_index", None) is not None:
        inverse = torch.empty_like(permutation)
        inverse[permutation] = torch.arange(num_atoms, device=permutation.device)
        data.edge_index = inverse[data.edge_index]
    return data


def _atom_keys(data: Data) -> list:
    num_atoms = data.pos.shape[0]
    return [key for key in data.keys()
            if key not in _STRUCTURE_KEYS and "edge" not in key
            and isinstance(data[key], torch.Tensor) and data[key].dim() > 0
            and data[key].shape[0] == num_atoms]


def batch_vector(data: Data) -> torch.Tensor:
    """data.batch (derived from data.ptr if dropped), or zeros [N] for a single structure."""
    from torch_pet.inputs import read_structure_index

    return read_structure_index(data, data.pos).batch
