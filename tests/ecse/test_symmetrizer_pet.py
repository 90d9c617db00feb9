"""ECSESymmetrizer around a small PET (d = 16, 2 blocks): exact energies, forces, stress,
vector and tensor outputs in both modes, PET(distance_only=True) as the auxiliary model."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from torch_pet import PET, ECSESymmetrizer
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.testing import (assert_equivariant, assert_invariant, random_methane,
                               random_molecule, random_periodic_box, random_rotation,
                               rotate_structure, symmetry_error)

SPECIES = (1, 6, 7, 8)


def _pet(dtype=torch.float64, **options):
    options = dict(dict(species=SPECIES, hidden_channels=16, num_heads=2, num_layers=1,
                        num_blocks=2, ff_channels=32, head_channels=16, cutoff=3.5), **options)
    return PET(**options).to(dtype)


def _molecules(dtype=torch.float64):
    return Batch.from_data_list([random_molecule(7, generator=1, dtype=dtype),
                                 random_methane(2, dtype=dtype)])


def test_pet_energy_and_forces_exact():
    pet = _pet()
    data = _molecules()
    assert symmetry_error(pet, data, "forces", rotation=random_rotation(1)) > 0.05
    sym = ECSESymmetrizer(pet)
    assert sym.cutoff == 3.5
    assert_invariant(sym, data, num_rotations=2)
    assert_equivariant(sym, data, "forces", num_rotations=2)
    # batch == single structures; energy_and_forces works on the wrapper
    together = energy_and_forces(sym, data)
    for b, structure in enumerate(data.to_data_list()):
        alone = energy_and_forces(sym, structure)
        assert torch.allclose(alone["energy"], together["energy"][b:b + 1], rtol=1e-12, atol=1e-12)
        assert torch.allclose(alone["forces"], together["forces"][data.batch == b], rtol=1e-10, atol=1e-12)


def test_pet_float32():
    sym = ECSESymmetrizer(_pet(torch.float32))
    data = _molecules(torch.float32)
    assert_invariant(sym, data, num_rotations=2)
    assert_equivariant(sym, data, "forces", num_rotations=2)


@pytest.mark.parametrize("per_atom", [False, True])
def test_pet_vector_and_tensor_outputs(per_atom):
    data = _molecules()
    vector_pet = _pet(out_channels=3, per_atom=per_atom)
    assert symmetry_error(vector_pet, data, "vector", rotation=random_rotation(2)) > 0.05
    vector = ECSESymmetrizer(vector_pet, output="vector", per_atom=per_atom)
    assert_equivariant(vector, data, "vector", per_atom=per_atom, num_rotations=1)
    as_tensor = lambda model, batch: model(batch).reshape(-1, 3, 3)  # noqa: E731
    tensor = ECSESymmetrizer(_pet(out_channels=9, per_atom=per_atom), output="tensor",
                             per_atom=per_atom, adapter=as_tensor)
    assert tensor(data).shape == ((data.num_nodes if per_atom else 2), 3, 3)
    assert_equivariant(tensor, data, "tensor", per_atom=per_atom, num_rotations=1)


def test_pet_atom_mode():
    pet = _pet(per_atom=True, num_blocks=1)
    data = _molecules()
    atom = ECSESymmetrizer(pet, mode="atom")
    assert atom.receptive_field == pet.receptive_field == 3.5
    assert atom(data).shape == (2, 1)
    assert_invariant(atom, data, num_rotations=1)
    assert_equivariant(atom, data, "forces", num_rotations=1)
    per_atom = ECSESymmetrizer(pet, mode="atom", per_atom=True)
    assert torch.allclose(per_atom(data).new_zeros(2, 1).index_add(0, data.batch, per_atom(data)),
                          atom(data), rtol=1e-12)


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_pet_periodic_forces_and_stress(mode):
    box = random_periodic_box(12, box_length=5.0, skew=0.2, generator=3)
    sym = ECSESymmetrizer(_pet(per_atom=mode == "atom", num_blocks=1), mode=mode)
    assert_equivariant(sym, box, "forces", num_rotations=1)
    rotation = random_rotation(4)
    result = energy_and_forces(sym, box, compute_stress=True)
    rotated = energy_and_forces(sym, rotate_structure(box, rotation), compute_stress=True)
    assert torch.allclose(rotated["energy"], result["energy"], rtol=1e-10)
    expected = rotation @ result["stress"] @ rotation.T
    assert float((rotated["stress"] - expected).abs().max()) <= 1e-10 * float(result["stress"].abs().max())


def test_distance_only_pet_as_aux_model():
    dimer = Data(z=torch.tensor([6, 8]), pos=torch.tensor([[0.0, 0, 0], [1.13, 0, 0]], dtype=torch.float64))
    sym = ECSESymmetrizer(_pet())
    with pytest.raises(ValueError, match=r"structure\(s\) \[0\] of the batch need the auxiliary model"):
        sym(dimer)
    aux = _pet(distance_only=True)
    sym = ECSESymmetrizer(_pet(), aux_model=aux)
    assert torch.allclose(sym(dimer), aux(dimer), rtol=1e-13)
    batch = Batch.from_data_list([dimer, random_methane(4)])
    assert_invariant(sym, batch, num_rotations=1)
    assert_equivariant(sym, batch, "forces", num_rotations=1)


def test_pet_gradcheck():
    sym = ECSESymmetrizer(_pet(num_blocks=1))
    methane = random_methane(5)

    def energy(pos):
        data = methane.clone()
        data.pos = pos
        return sym(data)

    assert torch.autograd.gradcheck(energy, (methane.pos.clone().requires_grad_(True),),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_pet_cuda(mode):
    data = _molecules()
    sym = ECSESymmetrizer(_pet(per_atom=mode == "atom"), mode=mode)
    expected = energy_and_forces(sym, data)
    sym = sym.to("cuda")
    result = energy_and_forces(sym, data.to("cuda"))
    assert torch.allclose(result["energy"].cpu(), expected["energy"], rtol=1e-10)
    assert torch.allclose(result["forces"].cpu(), expected["forces"], rtol=1e-8, atol=1e-10)
    assert_equivariant(sym, data.to("cuda"), "forces", num_rotations=1)


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_checkpointed_chunks_give_the_same_training_gradients(mode):
    """Activation checkpointing per chunk (memory of one chunk) changes no number, also
    when training on forces (double backward through PET's attention)."""
    data = _molecules()
    results = []
    for checkpoint in (False, True):
        torch.manual_seed(1)
        pet = _pet(per_atom=mode == "atom", num_blocks=1)
        sym = ECSESymmetrizer(pet, mode=mode, chunk_size=30, checkpoint=checkpoint)
        result = energy_and_forces(sym, data, create_graph=True)
        ((result["forces"] ** 2).sum() + result["energy"].sum()).backward()
        gradient = torch.cat([p.grad.flatten() for p in pet.parameters() if p.grad is not None])
        results.append((result["energy"].detach(), result["forces"].detach(), gradient))
    for plain, checkpointed in zip(*results):
        assert torch.allclose(plain, checkpointed, rtol=1e-12, atol=1e-12)
