"""An ASE calculator for PET models and their ECSE-symmetrized versions.

>>> from torch_pet.calculator import PETCalculator
>>> atoms.calc = PETCalculator("run/best.pt", symmetrize=True, dtype=torch.float64)
>>> atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Energies are the model's output (eV for models trained on the bundled data), forces
``-dE/dx`` and the stress ``(1/V) dE/dε`` (ASE's sign convention and Voigt order), all by
automatic differentiation through :func:`torch_pet.nn.derivatives.energy_and_forces`, so
they are exactly the derivatives of the energy (energy-conserving dynamics).

Per-atom energies (``atoms.get_potential_energies()``) are PET's atomic contributions
ε_i (self energies included; they sum to the energy). They are available when the model
can give per-atom rows: :class:`~torch_pet.PET` (the calculator evaluates a view of the
same module with ``per_atom=True``), a model with ``per_atom=True``, or any model exposing a
``per_atom`` attribute likewise. With ``symmetrize=True`` they are ECSE-symmetrized too
(the per-atom outputs are averaged over the same frames as the energy, so they still sum
to it). Other models give energy, forces and stress only.

The calculator keeps its own copy of the model on ``device`` in ``dtype``; it never changes
torch's global default dtype.

Shapes: N atoms.
"""
import copy
from typing import Optional, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress
from torch_geometric.data import Data

from torch_pet.backbone import backbone_info
from torch_pet.nn.derivatives import energy_and_forces

__all__ = ["PETCalculator", "atoms_to_data"]


def atoms_to_data(atoms, dtype: torch.dtype = torch.float64, device=None) -> Data:
    """A PyG ``Data`` of an ASE ``Atoms`` (``cell``/``pbc`` only when some axis is periodic).

    Shapes:
        -> Data(z [N], pos [N, 3], cell [1, 3, 3], pbc [1, 3])
    """
    data = Data(z=torch.as_tensor(atoms.numbers, dtype=torch.long, device=device),
                pos=torch.as_tensor(atoms.positions, dtype=dtype, device=device))
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        data.cell = torch.as_tensor(np.asarray(atoms.cell), dtype=dtype, device=device)[None]
        data.pbc = torch.as_tensor(pbc, device=device)[None]
    return data


class _AtomicSum(torch.nn.Module):
    """Sums a per-atom model over each structure and keeps the last per-atom rows.

    Shapes:
        data.pos [N, 3] -> [B, 1]; ``last_atomic`` [N]
    """

    def __init__(self, atomic_model: torch.nn.Module):
        super().__init__()
        self.atomic_model = atomic_model
        self.last_atomic = None

    def forward(self, data) -> torch.Tensor:
        from torch_pet.inputs import read_structure_index

        index = read_structure_index(data, data.pos)  # batch derived from ptr if dropped
        atomic = self.atomic_model(data)
        if atomic.shape not in ((data.pos.shape[0],), (data.pos.shape[0], 1)):
            raise ValueError(f"PETCalculator: the per-atom model returned shape "
                             f"{tuple(atomic.shape)} for {data.pos.shape[0]} atoms, expected [N] "
                             "or [N, 1]")
        atomic = atomic.reshape(data.pos.shape[0])  # [N]
        self.last_atomic = atomic.detach()
        return atomic.new_zeros(index.num_structures).index_add(0, index.batch, atomic)[:, None]


def _per_atom_view(model: torch.nn.Module) -> Optional[torch.nn.Module]:
    """The same module (shared parameters) returning per-atom rows, or None if it cannot."""
    if model is None:
        return None
    info = backbone_info(model)
    if info.per_atom is None or info.out_channels not in (None, 1):
        return None
    if info.per_atom:
        return model
    view = copy.copy(model)  # shallow: parameters and submodules are shared
    try:
        view.per_atom = True
    except AttributeError:  # a read-only property: the model cannot switch
        return None
    return view


class PETCalculator(Calculator):
    """ASE calculator for a trained PET (or any energy model taking PyG ``Data``).

    Args:
        model: a checkpoint path (:func:`torch_pet.checkpoint.load_model`; the checkpoint's
            auxiliary model is loaded too when it has one and ``aux_model`` is not given;
            only torch_pet's models or classes registered with ``register_model`` are
            rebuilt, see docs/security.md), or
            a module with ``model(data) -> [1]`` or ``[1, 1]`` energies.
        aux_model: the intrinsically invariant auxiliary model ECSE blends in for degenerate
            geometries (linear molecules, dimers, isolated atoms); only used with
            ``symmetrize=True``.
        symmetrize: wrap the model in :class:`~torch_pet.ECSESymmetrizer` (exactly
            rotation-invariant energies, equivariant forces and stress).
        ecse_options: further keyword arguments of :class:`~torch_pet.ECSESymmetrizer`
            (``mode``, ``cutoff``, ``o3``, ``frame_options``, ``chunk_size``, ...). Unlike
            the wrapper's own default, frames are not pruned here (``frame_options``
            ``prune_steps=0``) unless ``frame_options`` says otherwise: the pruning switch is
            smooth but so steep that velocity Verlet cannot integrate it (CH4, 0.5 fs steps:
            total-energy drift 6.9 meV/atom/ps with pruning, 0.003 without, 0.004 for the raw
            backbone; ``examples/md.py``), at about 5x the frames on CH4.
        device: torch device of the evaluation ("cpu", "cuda", ...).
        dtype: floating dtype of the evaluation; default the model's (a checkpoint's saved
            dtype). ``torch.float64`` gives the best energy conservation in dynamics.
        species: atomic numbers the model accepts; default ``model.species``.
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.

    ``implemented_properties``: energy, free_energy, forces, stress (periodic cells with
    nonzero volume; requesting it for a non-periodic structure raises
    ``PropertyNotImplementedError``), and energies (per atom) when the model supports
    per-atom output (see the module docstring).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model: Union[str, torch.nn.Module], *,
                 aux_model: Optional[torch.nn.Module] = None, symmetrize: bool = False,
                 ecse_options: Optional[dict] = None, device: Union[str, torch.device] = "cpu",
                 dtype: Optional[torch.dtype] = None, species=None, **kwargs):
        super().__init__(**kwargs)
        self.device = torch.device(device)
        model, aux_model = self._load(model, aux_model)
        if dtype is None:
            dtype = next(model.parameters()).dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"PETCalculator: dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
        if aux_model is not None:
            aux_model = copy.deepcopy(aux_model).to(device=self.device, dtype=dtype).eval()
        species = species if species is not None else backbone_info(model).species
        self.species = None if species is None else sorted(int(s) for s in species)
        self.symmetrize = bool(symmetrize)
        self.model, self.aux_model = model, aux_model

        atomic, atomic_aux = _per_atom_view(model), _per_atom_view(aux_model)
        self.per_atom = atomic is not None and (aux_model is None or atomic_aux is not None
                                                or not self.symmetrize)
        if self.symmetrize:
            from torch_pet.ecse.symmetrizer import ECSESymmetrizer

            options = dict(ecse_options or {})
            options["frame_options"] = {"prune_steps": 0, **(options.get("frame_options") or {})}
            if self.per_atom:
                energy_model = _AtomicSum(ECSESymmetrizer(
                    atomic, per_atom=True, aux_model=atomic_aux, **options))
            else:
                energy_model = ECSESymmetrizer(model, aux_model=aux_model, **options)
        else:
            if ecse_options:
                raise ValueError("PETCalculator: ecse_options are given but symmetrize=False; "
                                 "set symmetrize=True to use ECSE")
            energy_model = _AtomicSum(atomic) if self.per_atom else model
        self.energy_model = energy_model.to(device=self.device, dtype=dtype).eval()
        self.implemented_properties = [p for p in type(self).implemented_properties
                                       if p != "energies" or self.per_atom]

    # ---------------------------------------------------------------------------------
    def _load(self, model, aux_model):
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from torch_pet.checkpoint import load_checkpoint, build_model

            record = load_checkpoint(str(model))
            self.checkpoint = str(model)
            source = f"checkpoint {self.checkpoint}"
            loaded = build_model(record["model"], device=self.device, source=source)
            if aux_model is None and record.get("aux_model") is not None:
                aux_model = build_model(record["aux_model"], device=self.device, source=source)
            return loaded, aux_model
        if not isinstance(model, torch.nn.Module):
            raise TypeError("PETCalculator: model must be a checkpoint path or a torch.nn.Module, "
                            f"got {type(model).__name__}")
        self.checkpoint = None
        return model, aux_model

    def _check_species(self, atoms) -> None:
        if self.species is None:
            return
        unknown = sorted(set(int(z) for z in atoms.numbers) - set(self.species))
        if unknown:
            names = ", ".join(f"{_symbol(z)} (Z={z})" for z in unknown)
            known = ", ".join(_symbol(z) for z in self.species)
            raise ValueError(f"PETCalculator: atoms.numbers contains {names}, which the model "
                             f"never saw (it knows {known}); use a model trained on these "
                             "elements")

    @staticmethod
    def _check_atoms(atoms) -> None:
        """Positions and cell of ``atoms`` are finite (the model would raise deep inside)."""
        from ase import Atoms

        if not isinstance(atoms, Atoms):
            raise TypeError(f"PETCalculator: atoms must be an ase.Atoms, got "
                            f"{type(atoms).__name__}")
        positions = np.asarray(atoms.positions)
        if not np.isfinite(positions).all():
            atom = int(np.nonzero(~np.isfinite(positions).all(axis=1))[0][0])
            raise ValueError(f"PETCalculator: atoms.positions contains NaN or Inf (first at atom "
                             f"{atom}); fix the structure")
        if atoms.pbc.any() and not np.isfinite(np.asarray(atoms.cell)).all():
            raise ValueError("PETCalculator: atoms.cell contains NaN or Inf")

    def _check_stress(self, atoms) -> None:
        if not atoms.pbc.any() or atoms.cell.rank < 3 or abs(atoms.cell.volume) < 1e-12:
            raise PropertyNotImplementedError(
                "PETCalculator: the stress needs a periodic structure with a 3-D cell of nonzero "
                "volume (set atoms.cell and atoms.pbc); it is undefined for a molecule")

    # ---------------------------------------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if atoms is not None:
            self._check_atoms(atoms)
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self._check_atoms(atoms)
        self._check_species(atoms)
        stress = "stress" in properties
        if stress:
            self._check_stress(atoms)
        data = atoms_to_data(atoms, self.dtype, self.device)
        out = energy_and_forces(self.energy_model, data, compute_stress=stress)
        energy = float(out["energy"].sum())
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out["forces"].cpu().double().numpy()}
        if stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(
                out["stress"][0].cpu().double().numpy())
        if self.per_atom:
            self.results["energies"] = self.energy_model.last_atomic.cpu().double().numpy()

    def __repr__(self) -> str:
        source = self.checkpoint or type(self.model).__name__
        return (f"PETCalculator({source}, symmetrize={self.symmetrize}, device={self.device}, "
                f"dtype={self.dtype})")


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z{z}"
