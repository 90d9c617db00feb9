"""PET model: symmetries it has (and the one it lacks), batching, edge cases, dtypes, API."""
import math

import pytest
import torch
from torch_geometric.data import Batch, Data

import torch_pet.ops
from torch_pet import PET, PETConv
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.testing import random_rotation

from pet_helpers import SPECIES, batch_of, methane, molecule, periodic, small_pet

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-11}


def test_default_parameter_count():
    model = PET()
    count = sum(p.numel() for p in model.parameters())
    # 3 blocks x (3 transformer layers 594,816 + geometry 640 + token MLP 49,408 + heads
    # 66,306 + central embedding 118 x 128) + neighbour embedding 118 x 128
    assert count == 2_193_926
    assert model.receptive_field == 15.0 and model.cutoff == 5.0
    assert model.self_energies.shape == (118, 1) and not model.self_energies.any()
    assert model.species == list(range(1, 119))
    assert "PETConv(128, num_species=118, num_heads=4, num_layers=3" in repr(model.blocks[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_permutation_and_translation_invariance(dtype):
    model = small_pet().to(dtype).eval()
    data = batch_of(molecule(7, dtype=dtype), periodic(6, dtype=dtype))
    energy = model(data)
    perm = torch.cat([torch.randperm(7), 7 + torch.randperm(6)])
    permuted = data.clone()
    permuted.z, permuted.pos = data.z[perm], data.pos[perm]
    assert torch.allclose(model(permuted), energy, atol=TOLERANCE[dtype] * 10, rtol=TOLERANCE[dtype])
    shifted = data.clone()
    shifted.pos = data.pos + torch.tensor([1.3, -0.7, 2.1], dtype=dtype)
    assert torch.allclose(model(shifted), energy, atol=TOLERANCE[dtype] * 10, rtol=TOLERANCE[dtype])
    per_atom = small_pet(per_atom=True).to(dtype).eval()
    per_atom.load_state_dict(model.state_dict())
    atomic = per_atom(data)
    assert torch.allclose(per_atom(permuted), atomic[perm], atol=TOLERANCE[dtype] * 10, rtol=0)
    assert torch.allclose(atomic[:7].sum(0), energy[0], atol=TOLERANCE[dtype] * 10, rtol=0)


def test_rotation_error_of_raw_backbone_and_distance_only():
    data = batch_of(*[methane(seed=s) for s in range(8)])
    rotated = data.clone()
    rotated.pos = data.pos @ random_rotation().T
    raw = small_pet().double().eval()
    e, er = raw(data), raw(rotated)
    error = ((er - e).abs() / e.abs()).max().item()
    print(f"\nraw PET backbone: max relative energy change under rotation {error:.2e}")
    assert error > 1e-8  # it sees Cartesian vectors: not invariant (ECSE's job)
    invariant = small_pet(distance_only=True).double().eval()
    assert invariant.blocks[0].geometry_embedding.in_features == 1
    assert torch.allclose(invariant(rotated), invariant(data), atol=1e-12, rtol=1e-12)
    forces = energy_and_forces(invariant, data)["forces"]
    rotation = random_rotation()
    rotated.pos = data.pos @ rotation.T
    forces_rotated = energy_and_forces(invariant, rotated)["forces"]
    assert torch.allclose(forces_rotated, forces @ rotation.T, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_equals_single(dtype):
    model = small_pet(out_channels=3).to(dtype).eval()
    structures = [methane(dtype=dtype), molecule(5, dtype=dtype), periodic(7, dtype=dtype),
                  molecule(4, dtype=dtype)]
    batched = model(batch_of(*structures))
    assert batched.shape == (4, 3)
    single = torch.cat([model(s) for s in structures])
    assert torch.allclose(batched, single, atol=TOLERANCE[dtype] * 10, rtol=TOLERANCE[dtype])
    data = batch_of(*structures)
    energy_model = small_pet().to(dtype)
    result = energy_and_forces(energy_model, data)
    for s, structure in enumerate(structures):
        alone = energy_and_forces(energy_model, structure)
        mask = data.batch == s
        assert torch.allclose(result["forces"][mask], alone["forces"],
                              atol=TOLERANCE[dtype] * 100, rtol=0)


def test_zero_cross_structure_gradient():
    model = small_pet().double()
    data = batch_of(methane(), molecule(5), periodic(6))
    data.pos.requires_grad_(True)
    energy = model(data)
    for b in range(3):
        grad, = torch.autograd.grad(energy[b, 0], data.pos, retain_graph=True)
        assert grad[data.batch != b].abs().max() == 0
        assert grad[data.batch == b].abs().max() > 0


def test_isolated_atoms_and_structures_without_edges():
    model = small_pet().double().eval()
    far = Data(z=torch.tensor([1, 6, 8]),
               pos=torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 20, 0]], dtype=torch.float64))
    single = Data(z=torch.tensor([7]), pos=torch.zeros(1, 3, dtype=torch.float64))
    empty = Data(z=torch.zeros(0, dtype=torch.long), pos=torch.zeros(0, 3, dtype=torch.float64))
    # a batch without a single edge, and one with edges; empty structures in the middle and last
    no_edges = batch_of(far, single, empty)
    energy = model(no_edges)
    assert energy.shape == (3, 1) and torch.isfinite(energy).all() and energy[2, 0] == 0
    mixed = batch_of(methane(), far, empty, single, empty)
    out = model(mixed)
    assert out.shape == (5, 1) and out[2, 0] == 0 and out[4, 0] == 0
    assert torch.allclose(out[1], energy[0], atol=1e-12) and torch.allclose(out[3], energy[1])
    # an isolated atom's energy depends only on its species
    lone = lambda z: model(Data(z=torch.tensor([z]), pos=torch.zeros(1, 3, dtype=torch.float64)))  # noqa
    assert torch.allclose(energy[0], lone(1) + lone(6) + lone(8), atol=1e-12)
    result = energy_and_forces(model, mixed)
    assert result["forces"].shape == (mixed.num_nodes, 3)
    assert result["forces"][mixed.batch != 0].abs().max() == 0
    per_atom = small_pet(per_atom=True).double()(mixed)
    assert per_atom.shape == (mixed.num_nodes, 1)


def test_atom_beyond_cutoff_does_not_interact():
    model = small_pet().double().eval()
    base = methane()
    energies = []
    for distance in (3.0, 3.5, 5.0):  # the hydrogen-carbon distance; cutoff is 3.0
        pos = torch.cat([base.pos, torch.tensor([[distance + 1.2, 0, 0]], dtype=torch.float64)])
        energies.append(model(Data(z=torch.tensor([6, 1, 1, 1, 1, 8]), pos=pos)))
    alone = model(base) + model(Data(z=torch.tensor([8]), pos=torch.zeros(1, 3, dtype=torch.float64)))
    for e in energies:
        assert torch.allclose(e, alone, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_self_energies(dtype):
    model = small_pet(out_channels=2).to(dtype)
    data = methane(dtype=dtype)
    out = model(data)
    assert out.dtype == dtype and out.shape == (1, 2)
    with torch.no_grad():
        model.self_energies.copy_(torch.arange(8, dtype=dtype).reshape(4, 2))
    counts = torch.tensor([[4, 4 + 1], [0, 0]], dtype=dtype)  # 4 H (index 0), 1 C (index 1)
    expected = 4 * torch.tensor([0.0, 1.0], dtype=dtype) + torch.tensor([2.0, 3.0], dtype=dtype)
    assert torch.allclose(model(data) - out, expected[None], atol=TOLERANCE[dtype] * 10)
    del counts


def test_precomputed_graph_matches_built_graph():
    model = small_pet().double().eval()
    data = batch_of(periodic(6), methane())
    energy = model(data)
    edge_index, shifts = torch_pet.ops.radius_graph(data.pos, model.cutoff, data.batch,
                                                    cell=data.cell, pbc=data.pbc)
    data.pet_edge_index, data.pet_shifts = edge_index, shifts
    assert torch.allclose(model(data), energy, atol=1e-12)
    # a shuffled neighbour list is re-sorted by centre
    perm = torch.randperm(edge_index.shape[1])
    data.pet_edge_index, data.pet_shifts = edge_index[:, perm], shifts[perm]
    assert torch.allclose(model(data), energy, atol=1e-12)
    # a graph built with a larger cutoff is refused (tests/test_bad_inputs.py: the checks)
    data.pet_edge_index, data.pet_shifts = torch_pet.ops.radius_graph(
        data.pos, model.cutoff + 1.0, data.batch, cell=data.cell, pbc=data.pbc)
    with pytest.raises(ValueError, match="beyond the model's cutoff 3.0"):
        model(data)


def test_forward_tensors_and_petconv_standalone():
    model = small_pet().double().eval()
    data = methane()
    assert torch.allclose(model.forward_tensors(data.z, data.pos), model(data))
    conv = PETConv(8, num_species=3, num_heads=2, num_layers=1, ff_channels=16).double()
    edge_index = torch.tensor([[1, 2, 0, 0], [0, 0, 1, 2]])
    features = torch.randn(4, 4, dtype=torch.float64)
    central, tokens = conv(torch.tensor([0, 1, 2]), edge_index, features,
                           torch.randn(4, 8, dtype=torch.float64),
                           torch.tensor([1.0, 0.5, 1.0, 0.5], dtype=torch.float64))
    assert central.shape == (3, 8) and tokens.shape == (4, 8)
    assert "attention='auto'" in repr(conv)


def test_errors():
    model = small_pet()
    with pytest.raises(ValueError, match=r"atomic number\(s\) \[26\].*\[1, 6, 7, 8\]"):
        model(Data(z=torch.tensor([6, 26]), pos=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"atomic number\(s\) \[200\]"):
        model(Data(z=torch.tensor([200]), pos=torch.zeros(1, 3)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(Data(z=torch.tensor([6]), pos=torch.tensor([[0.0, float("nan"), 0]])))
    with pytest.raises(TypeError, match="model.double"):
        model(methane(dtype=torch.float64))
    with pytest.raises(ValueError, match=r"pos must have shape \[N, 3\]"):
        model(Data(z=torch.tensor([6, 1]), pos=torch.zeros(3, 3)))
    with pytest.raises(ValueError, match="attention must be one of"):
        PET(attention="flash")
    with pytest.raises(ValueError, match="distinct atomic numbers"):
        PET(species=[1, 1])
    with pytest.raises(ValueError, match="divisible by num_heads"):
        PET(hidden_channels=30, num_heads=4)
    data = methane(dtype=torch.float32)
    data.pet_edge_index = torch.tensor([[0, 9], [1, 0]])
    with pytest.raises(ValueError, match="outside"):
        model(data)
    with pytest.raises(ValueError, match="energy_and_forces needs a model returning"):
        energy_and_forces(small_pet(out_channels=2), methane(dtype=torch.float32))
    with pytest.raises(ValueError, match="needs a periodic cell"):
        energy_and_forces(model, methane(dtype=torch.float32), compute_stress=True)


def test_torch_compile_runs():
    model = small_pet(num_blocks=1).double().eval()
    data = batch_of(methane(), molecule(4))
    expected = model(data)
    compiled = torch.compile(model, backend="aot_eager")
    assert torch.allclose(compiled(data), expected, atol=1e-12)
    explanation = torch._dynamo.explain(model)(data)
    print(f"\ntorch.compile: {explanation.graph_count} graphs, {explanation.graph_break_count} "
          "graph breaks")
    for reason in explanation.break_reasons:
        print("  break:", str(reason.reason).splitlines()[0][:150])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_and_explicit_models_agree(dtype):
    fused = small_pet(attention="fused").to(dtype).eval()
    explicit = small_pet(attention="explicit").to(dtype).eval()
    explicit.load_state_dict(fused.state_dict())
    data = batch_of(methane(dtype=dtype), periodic(6, dtype=dtype))
    a, b = energy_and_forces(fused, data), energy_and_forces(explicit, data)
    assert torch.allclose(a["energy"], b["energy"], atol=TOLERANCE[dtype] * 10, rtol=TOLERANCE[dtype])
    assert torch.allclose(a["forces"], b["forces"], atol=TOLERANCE[dtype] * 10, rtol=0)
