"""Forces and stress by autograd; smoothness across the cutoff; periodic cells; gradcheck."""
import pytest
import torch
from torch_geometric.data import Data

from torch_pet.nn.derivatives import energy_and_forces

from pet_helpers import batch_of, methane, molecule, periodic, small_pet


@pytest.mark.parametrize("attention", ["fused", "explicit"])
def test_forces_match_central_finite_differences(attention):
    model = small_pet(attention=attention).double().eval()
    data = batch_of(methane(), molecule(5))
    forces = energy_and_forces(model, data)["forces"]
    h = 1e-5
    structures = data.to_data_list()
    displaced = []  # every +-h displacement as one structure of a single batch
    for s, structure in enumerate(structures):
        for atom in range(structure.num_nodes):
            for axis in range(3):
                for sign in (1, -1):
                    copy = structure.clone()
                    copy.pos = structure.pos.clone()
                    copy.pos[atom, axis] += sign * h
                    displaced.append(copy)
    with torch.no_grad():
        energies = model(batch_of(*displaced))[:, 0]
    numeric = -(energies[0::2] - energies[1::2]).reshape(-1, 3) / (2 * h)
    assert torch.allclose(forces, numeric, atol=1e-7, rtol=1e-6)


def test_gradcheck_and_gradgradcheck():
    model = small_pet(hidden_channels=8, ff_channels=8, head_channels=8, attention="explicit",
                      cutoff_width=1.0).double()
    data = periodic(n=3, length=2.6)
    cell = data.cell.clone().requires_grad_(True)

    def energy(pos, cell):
        return model(Data(z=data.z, pos=pos, cell=cell, pbc=data.pbc))

    pos = data.pos.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(energy, (pos, cell))
    assert torch.autograd.gradgradcheck(energy, (pos, cell), fast_mode=True)


def test_training_on_forces_double_backward():
    """create_graph=True: the loss on forces reaches every parameter (explicit path)."""
    model = small_pet().double().train()
    data = batch_of(methane(), molecule(5))
    result = energy_and_forces(model, data, create_graph=True)
    loss = result["forces"].square().mean() + result["energy"].square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the same works in eval mode: energy_and_forces(create_graph=True) asks for it
    model.eval().zero_grad()
    energy_and_forces(model, data, create_graph=True)["forces"].square().sum().backward()
    # the energy and forces of the two modes agree (fused/explicit choice only)
    with torch.no_grad():
        assert torch.allclose(model.train()(data), model.eval()(data), atol=1e-12)


def scan(model, distances):
    """Energy and force on the moving atom as an O atom moves along x past a CH4."""
    base = methane()
    structures = []
    for d in distances:
        pos = torch.cat([base.pos, torch.tensor([[d, 0.3, -0.2]], dtype=torch.float64)])
        structures.append(Data(z=torch.tensor([6, 1, 1, 1, 1, 8]), pos=pos))
    result = energy_and_forces(model, batch_of(*structures))  # one batch: batch == single
    return result["energy"], result["forces"][5::6]


@pytest.mark.parametrize("function", ["cosine", "bump"])
def test_smooth_across_the_cutoff(function):
    """Fine scans of an atom crossing R_c: energy and force jumps shrink with the step."""
    model = small_pet(cutoff_function=function).double().eval()
    # the nearest hydrogen is ~0.9-1.3 A from C along +x; the O crosses the C cutoff (3 A) and
    # then the hydrogens' cutoffs between x = 2.7 and 4.6 A
    coarse = torch.linspace(2.5, 4.7, 221, dtype=torch.float64)  # 0.01 A
    fine = torch.linspace(2.5, 4.7, 2201, dtype=torch.float64)  # 0.001 A
    e_coarse, f_coarse = scan(model, coarse)
    e_fine, f_fine = scan(model, fine)
    # energy: each step is bounded by the forces at its ends (no jump beyond the slope)
    slope = torch.maximum(f_fine[1:, 0].abs(), f_fine[:-1, 0].abs())
    assert (e_fine.diff().abs() <= 0.001 * slope * 1.05 + 1e-12).all()
    # forces: continuous, so the largest jump shrinks about tenfold with a tenfold finer step
    jump_coarse = f_coarse.diff(dim=0).norm(dim=1).max()
    jump_fine = f_fine.diff(dim=0).norm(dim=1).max()
    assert jump_fine < 0.2 * jump_coarse
    # beyond every cutoff the O atom does not interact: constant energy, zero force
    far = fine > 4.65
    assert (e_fine[far] - e_fine[far][0]).abs().max() < 1e-12
    assert f_fine[far].abs().max() < 1e-12
    assert f_fine[fine < 3.5].abs().max() > 1e-4  # and it does interact inside


def test_periodic_wrapping_and_supercell():
    model = small_pet().double().eval()
    data = periodic(n=5, length=3.5)
    energy = model(data)
    wrapped = data.clone()
    wrapped.pos = data.pos + torch.tensor([[1, 0, -1], [0, 2, 0], [0, 0, 0], [-1, -1, 1],
                                           [0, 0, 3]], dtype=torch.float64) @ data.cell[0]
    assert torch.allclose(model(wrapped), energy, atol=1e-11, rtol=1e-11)
    cell = data.cell[0]
    images = torch.tensor([[a, b, c] for a in range(2) for b in range(2) for c in range(2)],
                          dtype=torch.float64) @ cell  # [8, 3]
    supercell = Data(z=data.z.repeat(8), pos=(data.pos[None] + images[:, None]).reshape(-1, 3),
                     cell=2 * data.cell, pbc=data.pbc)
    assert torch.allclose(model(supercell), 8 * energy, atol=1e-10, rtol=1e-11)
    forces = energy_and_forces(model, data)["forces"]
    super_forces = energy_and_forces(model, supercell)["forces"]
    assert torch.allclose(super_forces, forces.repeat(8, 1), atol=1e-10)


def test_stress_matches_finite_differences_of_strain():
    model = small_pet().double().eval()
    data = batch_of(periodic(n=5, length=3.5), periodic(n=4, length=3.2, tilt=0.5))
    stress = energy_and_forces(model, data, compute_stress=True)["stress"]
    assert stress.shape == (2, 3, 3)
    assert torch.allclose(stress, stress.transpose(1, 2), atol=1e-12)
    volume = torch.linalg.det(data.cell).abs()
    h = 1e-5
    for a in range(3):
        for b in range(3):
            strain = torch.zeros(3, 3, dtype=torch.float64)
            strain[a, b] = strain[b, a] = h / 2 if a != b else h
            values = []
            for sign in (1, -1):
                deformation = torch.eye(3, dtype=torch.float64) + sign * strain
                shifted = data.clone()
                shifted.pos = data.pos @ deformation
                shifted.cell = data.cell @ deformation
                with torch.no_grad():
                    values.append(model(shifted)[:, 0])
            numeric = (values[0] - values[1]) / (2 * h) / volume
            assert torch.allclose(stress[:, a, b], numeric, atol=1e-7, rtol=1e-6)


def test_stress_errors():
    model = small_pet().double()
    flat = periodic(n=3)
    flat.cell = flat.cell.clone()
    flat.cell[0, 2] = 0.0
    flat.pbc = torch.tensor([[True, True, False]])
    with pytest.raises(ValueError, match="zero volume"):
        energy_and_forces(model, flat, compute_stress=True)
