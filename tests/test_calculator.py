"""The ASE calculator: derivatives, periodic cells, per-atom energies, errors, dynamics."""
import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.verlet import VelocityVerlet

from torch_pet import ECSESymmetrizer, PET
from torch_pet.calculator import PETCalculator, atoms_to_data
from torch_pet.checkpoint import save_checkpoint
from torch_pet.ops import edge_vectors, radius_graph

SPECIES = (1, 6)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_pet(**kwargs):
    options = dict(species=SPECIES, hidden_channels=16, num_heads=2, num_layers=1,
                   num_blocks=2, ff_channels=32, head_channels=16, cutoff=3.0, cutoff_width=0.5)
    options.update(kwargs)
    return PET(**options)


def calculator(symmetrize=False, model=None, **kwargs):
    model = model if model is not None else tiny_pet()
    aux = tiny_pet(distance_only=True) if symmetrize else None
    return PETCalculator(model, aux_model=aux, symmetrize=symmetrize, dtype=torch.float64,
                         **kwargs)


def methane(seed=0):
    atoms = molecule("CH4")
    atoms.rattle(0.1, seed=seed)
    return atoms


def periodic_box(seed=0):
    """6 atoms (C2H4) in a triclinic 4 Å cell: every atom sees periodic images (R_c = 3)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[4.0, 0.0, 0.0], [0.3, 4.2, 0.0], [0.2, -0.3, 3.9]])
    return Atoms(numbers=[6, 1, 1, 6, 1, 1], scaled_positions=rng.random((6, 3)), cell=cell,
                 pbc=True)


def numerical_forces(atoms, h=1e-4):
    positions, forces = atoms.positions.copy(), np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            energies = []
            for sign in (1, -1):
                atoms.positions = positions
                atoms.positions[i, k] += sign * h
                energies.append(atoms.get_potential_energy())
            forces[i, k] = -(energies[0] - energies[1]) / (2 * h)
    atoms.positions = positions
    return forces


def numerical_stress(atoms, h=1e-4):
    """(1/V) dE/dε by central differences of a symmetric strain of cell and positions."""
    cell, positions = atoms.cell.array.copy(), atoms.positions.copy()
    volume = abs(np.linalg.det(cell))
    stress = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            energies = []
            for sign in (1, -1):
                strain = np.zeros((3, 3))
                strain[i, j] += sign * h / 2
                strain[j, i] += sign * h / 2
                deformation = np.eye(3) + strain
                atoms.set_cell(cell @ deformation, scale_atoms=False)
                atoms.positions = positions @ deformation
                energies.append(atoms.get_potential_energy())
            stress[i, j] = stress[j, i] = (energies[0] - energies[1]) / (2 * h) / volume
    atoms.set_cell(cell, scale_atoms=False)
    atoms.positions = positions
    return stress


# --------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("symmetrize", [False, True], ids=["y0", "yS"])
def test_forces_match_finite_differences(symmetrize):
    atoms = methane()
    atoms.calc = calculator(symmetrize)
    forces = atoms.get_forces()
    assert forces.shape == (5, 3) and np.abs(forces).max() > 1e-2
    np.testing.assert_allclose(forces, numerical_forces(atoms), atol=1e-6)


@pytest.mark.parametrize("symmetrize", [False, True], ids=["y0", "yS"])
def test_stress_matches_strained_cell(symmetrize):
    atoms = periodic_box()
    atoms.calc = calculator(symmetrize)
    stress = atoms.get_stress(voigt=False)
    assert np.abs(stress).max() > 1e-3
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    np.testing.assert_allclose(stress, numerical_stress(atoms), atol=1e-6)
    voigt = atoms.get_stress()  # ASE order xx, yy, zz, yz, xz, xy
    np.testing.assert_allclose(voigt, stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]])


@pytest.mark.parametrize("symmetrize", [False, True], ids=["y0", "yS"])
def test_supercell_is_extensive(symmetrize):
    atoms = periodic_box()
    calc = calculator(symmetrize)
    atoms.calc = calc
    energy, forces, stress = (atoms.get_potential_energy(), atoms.get_forces(),
                              atoms.get_stress())
    supercell = atoms.repeat((2, 2, 2))
    supercell.calc = calc
    assert supercell.get_potential_energy() == pytest.approx(8 * energy, rel=1e-10, abs=1e-10)
    super_forces = supercell.get_forces().reshape(8, len(atoms), 3)
    np.testing.assert_allclose(super_forces, np.broadcast_to(forces, super_forces.shape),
                               atol=1e-9)
    np.testing.assert_allclose(supercell.get_stress(), stress, atol=1e-9)
    energies = supercell.get_potential_energies().reshape(8, len(atoms))
    np.testing.assert_allclose(energies, np.broadcast_to(atoms.get_potential_energies(),
                                                         energies.shape), atol=1e-9)


def test_periodic_path_matches_molecule_in_a_large_box():
    atoms = methane()
    calc = calculator()
    atoms.calc = calc
    boxed = atoms.copy()
    boxed.set_cell(np.diag([12.0, 13.0, 14.0]))
    boxed.center()
    boxed.pbc = True
    boxed.calc = calc
    assert boxed.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(boxed.get_forces(), atoms.get_forces(), atol=1e-10)
    assert np.abs(boxed.get_stress()).max() > 0


def test_ecse_energy_is_rotation_invariant_and_y0_is_not():
    atoms = methane()
    rotated = atoms.copy()
    rotated.rotate(73, (1, 2, 3))
    for symmetrize, expect_invariant in ((False, False), (True, True)):
        calc = calculator(symmetrize)
        atoms.calc, rotated.calc = calc, calc
        difference = abs(rotated.get_potential_energy() - atoms.get_potential_energy())
        assert (difference < 1e-10) == expect_invariant, difference


def test_ecse_keeps_every_frame_unless_told_otherwise():
    """Dynamics needs the unpruned (smooth, not steep) frame ensemble: prune_steps=0 by default."""
    atoms = methane()
    energies = {}
    for options in (None, {"frame_options": {"prune_steps": 4}}, {"frame_options": {"beta_w": 1.0}}):
        torch.manual_seed(0)  # the same weights in every calculator
        calc = calculator(True, ecse_options=options)
        symmetrizer = next(m for m in calc.energy_model.modules() if isinstance(m, ECSESymmetrizer))
        atoms.calc = calc
        key = "pruned" if options and "prune_steps" in options["frame_options"] else "all"
        assert symmetrizer.frame_options["prune_steps"] == (4 if key == "pruned" else 0)
        energies.setdefault(key, []).append(atoms.get_potential_energy())
    assert energies["all"][0] == pytest.approx(energies["all"][1], abs=1e-12)


# --------------------------------------------------------------------------- per atom
@pytest.mark.parametrize("symmetrize", [False, True], ids=["y0", "yS"])
def test_per_atom_energies_sum_to_the_energy(symmetrize):
    atoms = methane()
    atoms.calc = calculator(symmetrize)
    energies = atoms.get_potential_energies()
    assert energies.shape == (5,)
    assert energies.sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    assert "energies" in atoms.calc.implemented_properties


class PairEnergy(torch.nn.Module):
    """A model without per-atom output: sum over pairs of exp(-r) (energies [B, 1])."""

    species = list(SPECIES)
    cutoff = 3.0

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, data):
        edge_index, shifts = radius_graph(data.pos.detach(), self.cutoff,
                                          cell=getattr(data, "cell", None),
                                          pbc=getattr(data, "pbc", None))
        length = edge_vectors(data.pos, edge_index, shifts, getattr(data, "cell", None)).norm(dim=1)
        return (self.scale * torch.exp(-length)).sum().reshape(1, 1)


def test_models_without_per_atom_output_do_not_claim_energies():
    atoms = methane()
    atoms.calc = PETCalculator(PairEnergy())
    assert "energies" not in atoms.calc.implemented_properties
    assert atoms.get_potential_energy() > 0
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_potential_energies()


# --------------------------------------------------------------------------- errors, dtypes
def test_unknown_species_error_names_the_element():
    atoms = Atoms("SiH4", positions=molecule("CH4").positions * 1.3)
    atoms.calc = calculator()
    with pytest.raises(ValueError, match=r"Si \(Z=14\).*never saw.*knows H, C"):
        atoms.get_potential_energy()


def test_stress_of_a_molecule_is_not_implemented():
    atoms = methane()
    atoms.calc = calculator()
    with pytest.raises(PropertyNotImplementedError, match="periodic structure"):
        atoms.get_stress()


def test_bad_arguments():
    with pytest.raises(ValueError, match="symmetrize=True"):
        PETCalculator(tiny_pet(), ecse_options={"mode": "atom"})
    with pytest.raises(TypeError, match="checkpoint path or a torch.nn.Module"):
        PETCalculator(42)
    with pytest.raises(TypeError, match="floating torch.dtype"):
        PETCalculator(tiny_pet(), dtype=torch.int64)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PETCalculator("no/such/checkpoint.pt")


@pytest.mark.parametrize("model_dtype,calc_dtype", [(torch.float32, torch.float64),
                                                    (torch.float64, torch.float32)])
def test_dtype_choice_leaves_global_default_and_model_alone(model_dtype, calc_dtype):
    default = torch.get_default_dtype()
    model = tiny_pet().to(model_dtype)
    calc = PETCalculator(model, dtype=calc_dtype, symmetrize=True,
                         aux_model=tiny_pet(distance_only=True))
    atoms = methane()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert torch.get_default_dtype() == default
    assert next(model.parameters()).dtype == model_dtype  # the caller's model is untouched
    assert next(calc.model.parameters()).dtype == calc_dtype
    assert np.isfinite(energy) and atoms.get_forces().dtype == np.float64


def test_float32_and_float64_agree():
    model = tiny_pet()
    atoms = methane()
    e32 = PETCalculator(model, dtype=torch.float32).get_potential_energy(atoms)
    e64 = PETCalculator(model, dtype=torch.float64).get_potential_energy(atoms)
    assert e32 == pytest.approx(e64, rel=1e-5, abs=1e-5)


def test_checkpoint_with_aux_model(tmp_path):
    model, aux = tiny_pet(), tiny_pet(distance_only=True)
    with torch.no_grad():
        model.self_energies.copy_(torch.tensor([[-13.6], [-1029.0]]))
    path = tmp_path / "tiny.pt"
    save_checkpoint(str(path), model, aux_model=aux)
    atoms = methane()
    direct = PETCalculator(model, aux_model=aux, symmetrize=True, dtype=torch.float64)
    loaded = PETCalculator(str(path), symmetrize=True, dtype=torch.float64)
    assert loaded.aux_model is not None and "tiny.pt" in repr(loaded)
    assert loaded.get_potential_energy(atoms) == pytest.approx(
        direct.get_potential_energy(atoms), abs=1e-10)
    np.testing.assert_allclose(loaded.get_forces(atoms), direct.get_forces(atoms), atol=1e-10)


# --------------------------------------------------------------------------- dynamics
class BondedPET(torch.nn.Module):
    """A tiny PET (output scaled by 0.2) plus smooth Morse C-H and H-H terms, so that a
    CH4 molecule stays bound in dynamics while PET still shapes the forces.

    Shapes:
        data.pos [N, 3] -> [B, 1] (or [N, 1] with ``per_atom``)
    """

    MORSE = {(1, 6): (4.0, 1.8, 1.09), (1, 1): (0.5, 1.5, 1.78), (6, 6): (3.0, 1.8, 1.54)}

    def __init__(self):
        super().__init__()
        self.pet = tiny_pet(per_atom=True, cutoff_width=1.0)
        self.species, self.cutoff = self.pet.species, self.pet.cutoff
        self.receptive_field, self.per_atom, self.out_channels = self.pet.receptive_field, False, 1
        table = torch.zeros(7, 7, 3)
        for (a, b), params in self.MORSE.items():
            table[a, b] = table[b, a] = torch.tensor(params)
        self.register_buffer("morse", table)

    def forward(self, data):
        pos, z = data.pos, data.z
        batch = getattr(data, "batch", None)
        batch = torch.zeros_like(z) if batch is None else batch
        cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
        edge_index, shifts = radius_graph(pos.detach(), self.cutoff, batch, cell=cell, pbc=pbc)
        length = edge_vectors(pos, edge_index, shifts, cell, batch).norm(dim=1)  # [E]
        depth, width, r0 = self.morse[z[edge_index[0]], z[edge_index[1]]].unbind(-1)
        switch = 0.5 * (1 + torch.cos(torch.pi * (length / self.cutoff).clamp(max=1)))
        pair = switch * depth * ((1 - torch.exp(-width * (length - r0))) ** 2 - 1)
        atomic = 0.2 * self.pet(data) + 0.5 * pos.new_zeros(pos.shape[0], 1).index_add(
            0, edge_index[1], pair[:, None])
        if self.per_atom:
            return atomic
        num_graphs = int(batch.max()) + 1
        return atomic.new_zeros(num_graphs, 1).index_add(0, batch, atomic)


def nve_energy_error(calc, timestep_fs, duration_fs=50.0):
    """max |E_total(t) - E_total(0)| of NVE CH4 at ~300 K, and the kinetic-energy range."""
    atoms = molecule("CH4")
    atoms.rattle(0.05, seed=1)
    rng = np.random.default_rng(0)
    velocities = rng.normal(size=(5, 3)) * np.sqrt(units.kB * 300 / atoms.get_masses())[:, None]
    atoms.set_momenta(velocities * atoms.get_masses()[:, None])
    atoms.calc = calc
    total, kinetic = [], []

    def record():
        total.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())

    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dynamics.attach(record, interval=1)
    dynamics.run(int(round(duration_fs / timestep_fs)))
    assert atoms.get_all_distances().max() < 3.0  # the molecule stayed bound
    return np.abs(np.array(total) - total[0]).max(), np.ptp(kinetic)


@pytest.mark.parametrize("symmetrize", [False, True], ids=["y0", "yS"])
def test_nve_conserves_energy(symmetrize):
    """Bound: over 50 fs of velocity Verlet at 0.5 fs (CH4, C-H period ~10 fs) the total
    energy stays within 10 meV (2 meV/atom) and within 5% of the kinetic-energy swing
    (~0.25 eV); doubling the step multiplies the error by 3-6 (Verlet is second order when
    the forces are the exact gradient of a smooth energy; measured: ~4.0 for y0, ~4.5 for
    yS). A jump in the energy or non-conservative forces breaks the scaling."""
    calc = calculator(symmetrize, model=BondedPET())
    error, swing = nve_energy_error(calc, 0.5)
    error_double, _ = nve_energy_error(calc, 1.0)
    assert swing > 0.1
    assert error < 1e-2 and error < 0.05 * swing, (error, swing)
    assert 3.0 < error_double / error < 6.0, (error, error_double)
