"""Symmetry-testing helpers for users of torch_pet: random rotations, random structures and
assertions that a model is invariant or equivariant.

Conventions: a rotation R acts on row vectors as ``x -> x·Rᵀ`` (positions, cell rows,
forces, vector outputs) and on rank-2 Cartesian tensors as ``T -> R·T·Rᵀ``. Errors are
relative: ``max|y(g·X) - g·y(X)| / max|y(X)|``, compared with ``atol + rtol·max|y(X)|``
where the default ``rtol`` depends on the dtype (:data:`DEFAULT_RTOL`).

>>> from torch_pet.testing import random_molecule, assert_invariant, assert_equivariant
>>> assert_invariant(model, random_molecule(8))               # scalar output
>>> assert_equivariant(model, random_molecule(8), kind="forces")  # -dE/dx of an energy

Shapes: N atoms, B structures.
"""
import math
from typing import Callable, Optional, Sequence, Union

import torch
from torch_geometric.data import Batch, Data

__all__ = [
    "DEFAULT_RTOL", "random_rotation", "random_molecule", "random_methane",
    "random_periodic_box", "water_box", "rotate_structure", "translate_structure",
    "permute_atoms", "symmetry_error", "assert_invariant", "assert_equivariant",
    "AngularToyModel",
]

#: Default relative tolerances of the symmetry assertions, per dtype.
DEFAULT_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 2e-2}

GeneratorLike = Union[None, int, torch.Generator]

# Attributes that describe a whole structure (or are labels), never permuted as atoms.
_STRUCTURE_KEYS = {"cell", "pbc", "energy", "stress", "ptr", "num_nodes", "virial"}


def _generator(generator: GeneratorLike) -> Optional[torch.Generator]:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be None, an int seed or a torch.Generator, got {type(generator).__name__}")


def random_rotation(generator: GeneratorLike = None, dtype: torch.dtype = torch.float64,
                    device=None, improper: bool = False) -> torch.Tensor:
    """A uniformly (Haar) distributed rotation; with ``improper``, a rotation times -1.

    Args:
        generator: None (global RNG), an int seed or a CPU ``torch.Generator``.

    Shapes:
        -> [3, 3], det = +1 (or -1 with ``improper``)
    """
    quaternion = torch.randn(4, generator=_generator(generator), dtype=torch.float64)
    w, x, y, z = (quaternion / quaternion.norm()).tolist()
    rotation = torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ], dtype=torch.float64)
    if improper:
        rotation = -rotation
    return rotation.to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------
# Random structures
# ---------------------------------------------------------------------------------------


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
    gen = _generator(generator)
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
    gen = _generator(generator)
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
    gen = _generator(generator)
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
    gen = _generator(generator)
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


# ---------------------------------------------------------------------------------------
# Transformations of structures
# ---------------------------------------------------------------------------------------


def rotate_structure(data: Data, rotation: torch.Tensor) -> Data:
    """A copy of ``data`` rotated by R: pos, cell rows and forces -> x·Rᵀ, stress -> R·σ·Rᵀ.

    Shapes:
        rotation [3, 3] (one for all structures) or [B, 3, 3] (one per structure)
    """
    data = data.clone()
    rotation = rotation.to(dtype=data.pos.dtype, device=data.pos.device)
    per_structure = rotation.dim() == 3
    batch = _batch_vector(data)
    atom_rotation = rotation[batch] if per_structure else rotation
    data.pos = _rotate_rows(data.pos, atom_rotation)
    if getattr(data, "forces", None) is not None:
        data.forces = _rotate_rows(data.forces, atom_rotation)
    if getattr(data, "cell", None) is not None:
        data.cell = data.cell @ rotation.transpose(-1, -2)
    if getattr(data, "stress", None) is not None:
        data.stress = rotation @ data.stress @ rotation.transpose(-1, -2)
    return data


def translate_structure(data: Data, translation: torch.Tensor) -> Data:
    """A copy of ``data`` with every atom of structure b moved by ``translation[b]``.

    Shapes:
        translation [3] or [B, 3]
    """
    data = data.clone()
    translation = translation.to(dtype=data.pos.dtype, device=data.pos.device)
    if translation.dim() == 2:
        translation = translation[_batch_vector(data)]
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


def _batch_vector(data: Data) -> torch.Tensor:
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(data.pos.shape[0], dtype=torch.long, device=data.pos.device)
    return batch


def _rotate_rows(rows: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    if rotation.dim() == 3:  # one rotation per row
        return torch.einsum("nj,nij->ni", rows, rotation)
    return rows @ rotation.T


def _rotate_output(y: torch.Tensor, rotation: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "scalar":
        return y
    if kind in ("vector", "forces"):
        return y @ rotation.T
    return rotation @ y @ rotation.T


# ---------------------------------------------------------------------------------------
# Symmetry errors and assertions
# ---------------------------------------------------------------------------------------

_KINDS = ("scalar", "vector", "tensor", "forces")


def _evaluate(fn: Callable, data: Data, kind: str) -> torch.Tensor:
    if kind != "forces":
        with torch.no_grad():
            return fn(data).detach()
    data = data.clone()
    data.pos = data.pos.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = fn(data)
        (gradient,) = torch.autograd.grad(energy.sum(), data.pos)
    return -gradient.detach()


def symmetry_error(fn: Callable, data: Data, kind: str = "scalar", *,
                   rotation: Optional[torch.Tensor] = None,
                   translation: Optional[torch.Tensor] = None,
                   permutation: Optional[torch.Tensor] = None,
                   per_atom: bool = False) -> float:
    """Relative error ``max|fn(g·X) - g·fn(X)| / max|fn(X)|`` for one transformation g.

    g = rotation (x -> x·Rᵀ, ``rotation`` may be improper) after a translation and a
    permutation of the atoms (either may be None). ``kind`` says how outputs transform:
    "scalar" (invariant), "vector" ([..., 3]), "tensor" ([..., 3, 3]) or "forces" (``fn``
    returns energies; the forces -dE/dpos are compared). ``per_atom`` says that the rows
    of the output are atoms (they follow the permutation); forces always are.
    """
    return _symmetry_error(fn, data, kind, rotation, translation, permutation, per_atom)[0]


def _symmetry_error(fn, data, kind, rotation, translation, permutation, per_atom):
    """(relative error, scale = max|g·fn(X)|) of one transformation g."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    reference = _evaluate(fn, data, kind)
    moved = data
    if permutation is not None:
        moved = permute_atoms(moved, permutation)
    if translation is not None:
        moved = translate_structure(moved, translation)
    if rotation is not None:
        moved = rotate_structure(moved, rotation)
    transformed = _evaluate(fn, moved, kind)
    expected = reference
    if permutation is not None and (per_atom or kind == "forces"):
        expected = expected[permutation.to(expected.device)]
    if rotation is not None:
        expected = _rotate_output(expected, rotation.to(dtype=expected.dtype, device=expected.device), kind)
    if transformed.shape != expected.shape:
        raise AssertionError(f"output shape changed under the transformation: {tuple(expected.shape)} "
                             f"-> {tuple(transformed.shape)}")
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    difference = float((transformed - expected).abs().max()) if expected.numel() else 0.0
    return (difference / scale if scale > 0 else difference), scale


def _check_symmetry(fn, data, kind, *, num_rotations, improper, translate, permute, per_atom,
                    generator, rtol, atol, label) -> float:
    gen = _generator(0 if generator is None else generator)
    dtype = data.pos.dtype
    rtol = DEFAULT_RTOL.get(dtype, 1e-5) if rtol is None else rtol
    batch = _batch_vector(data).cpu()
    num_structures = int(batch.max()) + 1 if batch.numel() else 1
    worst = 0.0
    for trial in range(num_rotations):
        rotation = random_rotation(gen, dtype=dtype, device=data.pos.device, improper=improper)
        translation = None
        if translate:
            translation = 3.0 * torch.randn(num_structures, 3, generator=gen, dtype=torch.float64)
        permutation = None
        if permute:
            # A random order of the atoms within each structure (batch stays sorted).
            key = batch.double() + 0.5 * torch.rand(batch.numel(), generator=gen, dtype=torch.float64)
            permutation = torch.argsort(key).to(data.pos.device)
        error, scale = _symmetry_error(fn, data, kind, rotation, translation, permutation, per_atom)
        # The error is relative: compare it with rtol + atol / scale.
        allowed = rtol + (atol / scale if scale > 0 else atol)
        if not error <= allowed:
            raise AssertionError(
                f"{label}: relative error {error:.3e} > tolerance {allowed:.3e} ({dtype}) under "
                f"transformation {trial} (rotation{' with inversion' if improper else ''}"
                f"{', translation' if translate else ''}{', permutation' if permute else ''})")
        worst = max(worst, error)
    return worst


def assert_invariant(fn: Callable, data: Data, *, num_rotations: int = 3, improper: bool = False,
                     translate: bool = True, permute: bool = True, per_atom: bool = False,
                     generator: GeneratorLike = None, rtol: Optional[float] = None,
                     atol: float = 0.0) -> float:
    """Assert that ``fn(data)`` is unchanged by random rotations (with inversion when
    ``improper``), translations and permutations of the atoms; returns the worst relative
    error. ``per_atom``: output rows are atoms and follow the permutation.

    Tolerance: ``atol + rtol·max|fn(data)|``, rtol from :data:`DEFAULT_RTOL` by dtype.
    """
    return _check_symmetry(fn, data, "scalar", num_rotations=num_rotations, improper=improper,
                           translate=translate, permute=permute, per_atom=per_atom,
                           generator=generator, rtol=rtol, atol=atol, label="assert_invariant")


def assert_equivariant(fn: Callable, data: Data, kind: str = "vector", *, num_rotations: int = 3,
                       improper: bool = False, translate: bool = True, permute: bool = True,
                       per_atom: bool = False, generator: GeneratorLike = None,
                       rtol: Optional[float] = None, atol: float = 0.0) -> float:
    """Assert that ``fn(data)`` rotates with the structure; returns the worst relative error.

    kind: "vector" (output [..., 3] -> y·Rᵀ), "tensor" ([..., 3, 3] -> R·y·Rᵀ), "forces"
    (``fn`` returns energies; -dE/dpos must rotate as vectors) or "scalar" (invariance).
    Translations and permutations of the atoms are applied too (see :func:`assert_invariant`).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return _check_symmetry(fn, data, kind, num_rotations=num_rotations, improper=improper,
                           translate=translate, permute=permute, per_atom=per_atom,
                           generator=generator, rtol=rtol, atol=atol, label=f"assert_equivariant({kind})")


# ---------------------------------------------------------------------------------------
# A deliberately non-equivariant backbone
# ---------------------------------------------------------------------------------------


class AngularToyModel(torch.nn.Module):
    """A smooth backbone that is strongly NOT rotation-equivariant, to prove symmetrizers.

    Each atom i gets, from its neighbours j within ``cutoff`` (periodic images included,
    neighbour list from :func:`torch_pet.ops.radius_graph`),

    .. math::
        h_i = \\sum_j \\phi(r_{ij}) \\, \\mathrm{tanh}(W [x_{ij}, y_{ij}, z_{ij},
              x_{ij}^2, x_{ij} y_{ij}, \\dots] + b_{z_j})

    with lab-frame coordinates, so its outputs change by O(1) under rotations. Outputs per
    atom (``per_atom``) or summed per structure: ``output`` "scalar" [.., C], "vector"
    [.., C, 3] (the raw direction-weighted sum, not equivariant either) or "tensor"
    [.., C, 3, 3]. Energies are translation-invariant (only differences enter).

    Shapes:
        data.pos [N, 3] -> [B, C(, 3(, 3))] or [N, C(, 3(, 3))]
    """

    def __init__(self, out_channels: int = 1, hidden_channels: int = 16, cutoff: float = 3.0,
                 output: str = "scalar", per_atom: bool = False, max_species: int = 119):
        super().__init__()
        if output not in ("scalar", "vector", "tensor"):
            raise ValueError(f"output must be scalar, vector or tensor, got {output!r}")
        self.cutoff = float(cutoff)
        self.output, self.per_atom, self.out_channels = output, per_atom, out_channels
        self.species_bias = torch.nn.Embedding(max_species, hidden_channels)
        self.angular = torch.nn.Linear(9, hidden_channels)
        width = {"scalar": 1, "vector": 3, "tensor": 9}[output]
        self.readout = torch.nn.Linear(hidden_channels, out_channels * width)
        with torch.no_grad():  # large angular terms
            self.angular.weight.mul_(4.0)

    def forward(self, data: Data) -> torch.Tensor:
        from torch_pet.ops.radius_graph import edge_vectors, radius_graph

        pos = data.pos
        batch = _batch_vector(data)
        num_structures = int(batch.max()) + 1 if batch.numel() else 1
        if getattr(data, "ptr", None) is not None:
            num_structures = data.ptr.numel() - 1
        cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
        with torch.no_grad():
            edge_index, shifts = radius_graph(pos.detach(), self.cutoff, batch, cell=cell, pbc=pbc)
        vectors = edge_vectors(pos, edge_index, shifts, cell, batch)  # [E, 3]
        neighbour, centre = edge_index
        x, y, z = vectors.unbind(-1)
        features = torch.stack([x, y, z, x * x, x * y, x * z, y * y, y * z, z * z], dim=-1)
        length2 = (vectors * vectors).sum(-1)
        envelope = (1 - length2 / self.cutoff ** 2) ** 2  # smooth at the cutoff
        hidden = torch.tanh(self.angular(features) + self.species_bias(data.z[neighbour]))
        atomic = hidden.new_zeros(pos.shape[0], hidden.shape[-1]).index_add(
            0, centre, envelope.unsqueeze(-1) * hidden)
        out = self.readout(atomic)  # [N, C * width]
        shape = {"scalar": (self.out_channels,), "vector": (self.out_channels, 3),
                 "tensor": (self.out_channels, 3, 3)}[self.output]
        out = out.reshape(pos.shape[0], *shape)
        if self.per_atom:
            return out
        return out.new_zeros(num_structures, *shape).index_add(0, batch, out)
