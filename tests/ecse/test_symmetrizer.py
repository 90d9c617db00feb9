"""ECSESymmetrizer on a deliberately non-equivariant toy backbone (large angular terms) and
on an invariant distance-only toy: exactness for every output kind, mode and dtype, forces
and stress, translation/permutation/batching, continuity, gradients, auxiliary model,
reflections, periodic cells, chunking and errors."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from torch_pet import ECSESymmetrizer
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.ops.radius_graph import edge_vectors, radius_graph
from torch_pet.testing import (AngularToyModel, assert_equivariant, assert_invariant,
                               random_methane, random_molecule, random_periodic_box,
                               random_rotation, rotate_structure, symmetry_error)

KINDS = ["scalar", "vector", "tensor"]


class DistanceToyModel(torch.nn.Module):
    """Rotation-invariant message passing on distances (receptive field layers x cutoff)."""

    def __init__(self, cutoff=2.5, hidden=8, layers=2, per_atom=False):
        super().__init__()
        self.cutoff, self.per_atom = cutoff, per_atom
        self.receptive_field = layers * cutoff
        self.embedding = torch.nn.Embedding(119, hidden)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(hidden, hidden) for _ in range(layers)])
        self.readout = torch.nn.Linear(hidden, 1)

    def forward(self, data):
        batch = data.batch if getattr(data, "batch", None) is not None else \
            torch.zeros_like(data.z)
        cell, pbc = getattr(data, "cell", None), getattr(data, "pbc", None)
        edge_index, shifts = radius_graph(data.pos.detach(), self.cutoff, batch, cell=cell, pbc=pbc)
        length2 = edge_vectors(data.pos, edge_index, shifts, cell, batch).pow(2).sum(-1)
        radial = (torch.exp(-length2) * (1 - length2 / self.cutoff ** 2) ** 2).unsqueeze(-1)
        hidden = self.embedding(data.z).to(data.pos.dtype)
        for layer in self.layers:
            message = radial * torch.tanh(layer(hidden))[edge_index[0]]
            hidden = hidden + hidden.new_zeros(hidden.shape).index_add(0, edge_index[1], message)
        atomic = self.readout(hidden)  # [N, 1]
        if self.per_atom:
            return atomic
        num = data.num_graphs if isinstance(data, Batch) else 1
        return atomic.new_zeros(num, 1).index_add(0, batch, atomic)


def _molecules(dtype=torch.float64):
    return Batch.from_data_list([random_molecule(7, generator=1, dtype=dtype),
                                 random_methane(2, dtype=dtype),
                                 random_molecule(5, generator=2, dtype=dtype)])


def _wrap(output="scalar", per_atom=False, mode="structure", dtype=torch.float64, **options):
    toy = AngularToyModel(out_channels=2, cutoff=3.0, output=output,
                          per_atom=per_atom or mode == "atom").to(dtype)
    return toy, ECSESymmetrizer(toy, output=output, per_atom=per_atom, mode=mode,
                                receptive_field=3.0, **options)


def _linear_co2(dtype=torch.float64):
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.16, 0.0, 0.0], [-1.16, 0.0, 0.0]], dtype=dtype)
    return Data(z=torch.tensor([6, 8, 8]), pos=pos @ random_rotation(5, dtype=dtype).T)


# ---------------------------------------------------------------------------------------
# Exactness
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["structure", "atom"])
@pytest.mark.parametrize("per_atom", [False, True])
@pytest.mark.parametrize("output", KINDS)
def test_exact_equivariance_float64(output, per_atom, mode):
    data = _molecules()
    toy, sym = _wrap(output, per_atom, mode)
    toy_error = symmetry_error(toy, data, output, rotation=random_rotation(1), per_atom=mode == "atom")
    assert toy_error > 0.05  # the backbone is far from equivariant
    out = sym(data)
    rows = data.num_nodes if per_atom else data.num_graphs
    assert out.shape == (rows, 2) + {"scalar": (), "vector": (3,), "tensor": (3, 3)}[output]
    # rotations, translations and permutations of the atoms; relative error <= 1e-10
    assert_equivariant(sym, data, output, per_atom=per_atom, num_rotations=2)


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_forces_and_float32(mode):
    toy64, sym64 = _wrap(mode=mode)
    data64 = _molecules()
    assert symmetry_error(toy64, data64, "forces", rotation=random_rotation(2)) > 0.05
    assert_equivariant(sym64, data64, "forces", num_rotations=2)
    _, sym32 = _wrap(mode=mode, dtype=torch.float32)
    data32 = _molecules(torch.float32)
    # float32: relative errors of ~1e-7 (energies) and ~1e-6 (forces), default rtol 1e-5
    assert_invariant(sym32, data32, num_rotations=2)
    assert_equivariant(sym32, data32, "forces", num_rotations=2)
    assert_equivariant(_wrap("vector", mode=mode, dtype=torch.float32)[1], data32, "vector")


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_periodic_exact_with_stress(mode):
    box = Batch.from_data_list([random_periodic_box(10, box_length=5.0, skew=0.2, generator=0),
                                random_periodic_box(8, box_length=4.5, generator=1)])
    toy, sym = _wrap(mode=mode)
    assert symmetry_error(toy, box, rotation=random_rotation(3), per_atom=mode == "atom") > 0.05
    assert_invariant(sym, box, num_rotations=2)
    assert_equivariant(sym, box, "forces", num_rotations=1)
    # Wrapping an atom into another periodic image changes nothing.
    moved = box.clone()
    moved.pos = box.pos.clone()
    moved.pos[3] += box.cell[0, 1] - box.cell[0, 2]
    assert torch.allclose(sym(moved), sym(box), rtol=1e-11, atol=0)
    # Stress (through frames, weights and the rotated cell) rotates as a rank-2 tensor.
    energy = lambda d: sym(d)[:, 0]  # noqa: E731
    rotation = random_rotation(4)
    stress = energy_and_forces(energy, box, compute_stress=True)["stress"]
    rotated = energy_and_forces(energy, rotate_structure(box, rotation), compute_stress=True)["stress"]
    expected = rotation @ stress @ rotation.T
    assert float((rotated - expected).abs().max()) <= 1e-10 * float(stress.abs().max())


def test_reflections_need_o3():
    data = _molecules()
    _, so3 = _wrap("vector")
    assert symmetry_error(so3, data, "vector", rotation=random_rotation(6, improper=True)) > 0.01
    _, o3 = _wrap("vector", o3=True)
    assert_equivariant(o3, data, "vector", improper=True, num_rotations=2)
    _, o3_atom = _wrap(mode="atom", o3=True)
    assert_invariant(o3_atom, data, improper=True, num_rotations=1)
    assert_equivariant(o3_atom, data, "forces", improper=True, num_rotations=1)


def test_extra_rotation_is_fixed_and_optional():
    data = _molecules()
    toy, sym = _wrap()
    assert torch.allclose(sym.extra_rotation @ sym.extra_rotation.T, torch.eye(3, dtype=torch.float64))
    assert torch.equal(sym.extra_rotation, ECSESymmetrizer(toy).extra_rotation)
    plain = ECSESymmetrizer(toy, extra_rotation=False)
    assert plain.extra_rotation is None
    assert_invariant(plain, data, num_rotations=1)
    assert not torch.allclose(plain(data), sym(data))  # A changes which inputs y_0 sees


# ---------------------------------------------------------------------------------------
# Batching, chunking, modes
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_batch_equals_single_and_structures_isolated(mode):
    data = _molecules()
    _, sym = _wrap(mode=mode)
    together = sym(data)
    alone = torch.cat([sym(structure) for structure in data.to_data_list()])
    assert torch.allclose(together, alone, rtol=1e-12, atol=1e-12)
    pos = data.pos.detach().requires_grad_(True)
    batch = data.clone()
    batch.pos = pos
    (gradient,) = torch.autograd.grad(sym(batch)[0].sum(), pos)
    assert bool((gradient[data.batch != 0] == 0).all()) and bool((gradient[data.batch == 0] != 0).any())


def test_chunks_bound_backbone_calls():
    data = _molecules()
    toy, _ = _wrap()
    calls = []

    def counting(model, batch):
        calls.append(batch.num_nodes)
        return model(batch)

    whole = ECSESymmetrizer(toy, adapter=counting)
    reference = whole(data)
    frames = whole.frames(data)
    assert len(calls) == 1 and calls[0] == int(torch.bincount(data.batch)[frames.pool].sum())
    calls.clear()
    chunked = ECSESymmetrizer(toy, adapter=counting, chunk_size=20)
    assert torch.allclose(chunked(data), reference, rtol=1e-13, atol=1e-13)
    assert len(calls) > 3 and max(calls) <= 20
    calls.clear()
    one_by_one = ECSESymmetrizer(toy, adapter=counting, chunk_size=1)  # a copy never splits
    assert torch.allclose(one_by_one(data), reference, rtol=1e-13, atol=1e-13)
    assert len(calls) == frames.frames.shape[0]


def test_auto_checkpointing_follows_the_measured_activation_budget():
    """checkpoint="auto" runs the first chunk plainly, measures what its backward keeps and
    checkpoints the rest (their forward runs again in the backward pass) only if all
    chunks' activations would exceed activation_budget; the numbers never change."""
    from torch_pet.nn.derivatives import energy_and_forces

    data = _molecules()
    toy, _ = _wrap()
    calls = []

    def counting(model, batch):  # first channel as the energy
        calls.append(batch.num_nodes)
        return model(batch)[:, :1]

    results = {}
    for checkpoint, budget in (("auto", 1e15), ("auto", 0.0), (True, 1e15), (False, 0.0)):
        calls.clear()
        sym = ECSESymmetrizer(toy, adapter=counting, chunk_size=20, checkpoint=checkpoint,
                              activation_budget=budget)
        results[checkpoint, budget] = energy_and_forces(sym, data)
        chunks = sym._chunks(torch.bincount(data.batch)[sym.frames(data).pool])
        recomputed = {("auto", 1e15): 0, ("auto", 0.0): len(chunks) - 1, (True, 1e15): len(chunks),
                      (False, 0.0): 0}[checkpoint, budget]
        assert len(chunks) > 3 and len(calls) == len(chunks) + recomputed, (checkpoint, budget)
    for result in results.values():
        for key in result:
            torch.testing.assert_close(result[key], results["auto", 1e15][key], atol=1e-13, rtol=0)
    with pytest.raises(ValueError, match="activation_budget"):
        ECSESymmetrizer(toy, activation_budget=-1)


@pytest.mark.parametrize("periodic", [False, True])
def test_invariant_backbone_is_unchanged_in_both_modes(periodic):
    """For an already invariant backbone every frame gives the same prediction, so both
    symmetrizations return the backbone itself -- in atom mode only if each subgraph holds
    the whole receptive field (periodic images included)."""
    data = random_periodic_box(14, box_length=5.5, generator=2) if periodic else _molecules()
    model = DistanceToyModel(cutoff=2.5, layers=2, per_atom=True).double()
    expected = model(data)
    structure = ECSESymmetrizer(model, per_atom=True)
    assert torch.allclose(structure(data), expected, rtol=1e-11, atol=1e-12)
    atom = ECSESymmetrizer(model, per_atom=True, mode="atom")
    assert atom.receptive_field == 5.0
    assert torch.allclose(atom(data), expected, rtol=1e-11, atol=1e-12)
    summed = ECSESymmetrizer(model, mode="atom")(data)
    assert torch.allclose(summed, expected.sum(0, keepdim=True) if not isinstance(data, Batch)
                          else torch.zeros_like(summed).index_add(0, data.batch, expected))
    truncated = ECSESymmetrizer(model, per_atom=True, mode="atom", receptive_field=2.5)
    assert not torch.allclose(truncated(data), expected, rtol=1e-6)


def test_modes_are_different_symmetrizations():
    data = _molecules()
    toy = AngularToyModel(cutoff=3.0, per_atom=True).double()
    structure = ECSESymmetrizer(toy, per_atom=True)
    atom = ECSESymmetrizer(toy, per_atom=True, mode="atom", receptive_field=3.0)
    # both exact, neither equal to the other (different frame pools)
    assert_invariant(structure, data, per_atom=True, num_rotations=1)
    assert_invariant(atom, data, per_atom=True, num_rotations=1)
    assert not torch.allclose(structure(data), atom(data), rtol=1e-3)
    assert structure.frames(data).pool.max() < data.num_graphs
    assert torch.equal(atom.frames(data).pool, atom.frames(data).centre)


# ---------------------------------------------------------------------------------------
# Smoothness and gradients
# ---------------------------------------------------------------------------------------


def _scan(sym, molecule, direction, offsets, count_frames=False):
    """Energy, force along ``direction`` on atom 0 (and frame counts) at each offset."""
    energies, forces, frames = [], [], []
    for offset in offsets:
        moved = molecule.clone()
        moved.pos = molecule.pos.clone()
        moved.pos[0] += offset * direction
        result = energy_and_forces(lambda d: sym(d)[:, 0], moved)
        energies.append(result["energy"][0])
        forces.append(result["forces"][0] @ direction)
        if count_frames:
            frames.append(sym.frames(moved).frames.shape[0])
    return torch.stack(energies), torch.stack(forces), frames


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_continuity_in_a_fine_scan(mode):
    """Move one atom in 0.002 Å steps while frames enter and leave the ensemble.

    ECSE on a wildly non-invariant backbone is smooth but steep (forces vary by ~100 over
    0.01 Å), so a fixed bound on the jumps would be arbitrary. Instead the largest energy
    jump and the largest force jump are zoomed into twice, 20x each time: for a continuous
    function the largest sub-jump shrinks ~20x per level (a step of size D would keep a
    sub-jump >= D at every level), and on the finest grid the forces integrate to the
    energy change."""
    _, sym = _wrap(mode=mode)
    molecule = random_molecule(6, generator=4)
    direction = torch.tensor([1.0, 0.3, -0.2], dtype=torch.float64)
    direction = direction / direction.norm()
    offsets = torch.arange(-0.5, -0.2, 0.002, dtype=torch.float64)
    energy, force, frames = _scan(sym, molecule, direction, offsets, count_frames=True)
    assert len(set(frames)) > 1  # frames entered or left during the scan
    for which, series in (("energy", energy), ("force", force)):
        jumps = series.diff().abs()
        k = int(jumps.argmax())
        low, high, jump = offsets[k], offsets[k + 1], float(jumps[k])
        for level in range(2):
            fine = torch.linspace(float(low), float(high), 21, dtype=torch.float64)
            fine_energy, fine_force, _ = _scan(sym, molecule, direction, fine)
            sub_jumps = (fine_energy if which == "energy" else fine_force).diff().abs()
            j = int(sub_jumps.argmax())
            assert float(sub_jumps[j]) < 0.25 * jump, f"{which} jump does not shrink at level {level}"
            low, high, jump = fine[j], fine[j + 1], float(sub_jumps[j])
        change = fine_energy[-1] - fine_energy[0]
        work = -torch.trapezoid(fine_force, fine)
        assert float((work - change).abs()) <= 1e-4 * float(change.abs())


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_gradcheck(mode):
    _, sym = _wrap(mode=mode)
    methane = random_methane(3)

    def energy(pos):
        data = methane.clone()
        data.pos = pos
        return sym(data)

    pos = methane.pos.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(energy, (pos,), eps=1e-6, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------
# Degenerate geometries and the auxiliary model
# ---------------------------------------------------------------------------------------


def test_missing_aux_model_names_the_structure():
    batch = Batch.from_data_list([random_methane(0), _linear_co2()])
    _, sym = _wrap()
    with pytest.raises(ValueError, match=r"structure\(s\) \[1\] of the batch need the auxiliary model"):
        sym(batch)
    _, atom = _wrap(mode="atom")
    with pytest.raises(ValueError, match="atom 5 of structure 1, atom 6 of structure 1"):
        atom(batch)
    dimer = Data(z=torch.tensor([1, 1]), pos=torch.tensor([[0.0, 0, 0], [0.74, 0, 0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"structure\(s\) \[0\].*PET\(distance_only=True\)"):
        sym(dimer)


@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_aux_model_for_linear_and_nearly_linear_molecules(mode):
    toy = AngularToyModel(cutoff=3.0, per_atom=mode == "atom").double()
    aux = DistanceToyModel(cutoff=3.0, per_atom=mode == "atom").double()
    sym = ECSESymmetrizer(toy, mode=mode, receptive_field=3.0, aux_model=aux)
    linear = _linear_co2()
    frames = sym.frames(linear)
    assert frames.frames.shape[0] == 0 and bool((frames.aux_weight == 1).all())
    expected = aux(linear).sum(0, keepdim=True) if mode == "atom" else aux(linear)
    assert torch.allclose(sym(linear), expected, rtol=1e-13, atol=0)
    # Bent by 20 degrees (s = 0.12 at the carbon): weak frames blended with the auxiliary
    # model, still exact.
    bent = Data(z=torch.tensor([6, 8, 8]), pos=torch.tensor(
        [[0.0, 0.0, 0.0], [1.16, 0.0, 0.0], [-1.0884, 0.4019, 0.0]], dtype=torch.float64))
    frames = sym.frames(bent)
    assert frames.frames.shape[0] > 0 and 0.1 < float(frames.aux_weight[0]) < 0.9
    assert not torch.allclose(sym(bent), aux(bent).sum(0, keepdim=True), rtol=1e-3)
    assert_invariant(sym, bent, num_rotations=2)
    assert_equivariant(sym, bent, "forces", num_rotations=1)
    batch = Batch.from_data_list([random_methane(1), linear, bent])
    assert_equivariant(sym, batch, "forces", num_rotations=1)


# ---------------------------------------------------------------------------------------
# Errors and devices
# ---------------------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors():
    toy = AngularToyModel(cutoff=3.0).double()
    no_cutoff = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="output must be one of"):
        ECSESymmetrizer(toy, output="pseudovector")
    with pytest.raises(ValueError, match="mode must be 'structure' or 'atom'"):
        ECSESymmetrizer(toy, mode="local")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        ECSESymmetrizer(toy, chunk_size=0)
    with pytest.raises(ValueError, match="checkpoint must be True, False or 'auto'"):
        ECSESymmetrizer(toy, checkpoint="sometimes")
    with pytest.raises(ValueError, match=r"unknown frame_options \['gamma'\]"):
        ECSESymmetrizer(toy, frame_options={"gamma": 1.0})
    with pytest.raises(ValueError, match="no `cutoff` attribute; pass cutoff="):
        ECSESymmetrizer(no_cutoff)
    with pytest.raises(ValueError, match="cutoff must be positive"):
        ECSESymmetrizer(toy, cutoff=-1.0)
    with pytest.raises(ValueError, match="needs the backbone's receptive field"):
        ECSESymmetrizer(toy, mode="atom")
    assert ECSESymmetrizer(AngularToyModel(cutoff=12.0)).cutoff == 10.0  # R_out <= 10 Å
    data = _molecules()
    with pytest.raises(ValueError, match=r"expected \d+ rows \(one per structure\); set per_atom"):
        ECSESymmetrizer(AngularToyModel(cutoff=3.0, per_atom=True).double())(data)
    with pytest.raises(ValueError, match="atom mode needs per-atom outputs"):
        ECSESymmetrizer(toy, mode="atom", receptive_field=3.0)(data)
    with pytest.raises(ValueError, match=r"output='vector' needs the model's output to end with dims \(3,\)"):
        ECSESymmetrizer(toy, output="vector")(data)
    with pytest.raises(TypeError, match="must return a tensor"):
        ECSESymmetrizer(toy, adapter=lambda model, batch: {"energy": model(batch)})(data)
    bad = data.clone()
    bad.pos = data.pos.clone()
    bad.pos[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        ECSESymmetrizer(toy)(bad)
    with pytest.raises(ValueError, match="data.pbc is set but data.cell is missing"):
        ECSESymmetrizer(toy)(Data(z=torch.tensor([1, 1, 1]), pos=torch.rand(3, 3, dtype=torch.float64),
                                  pbc=torch.ones(1, 3, dtype=torch.bool)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["structure", "atom"])
def test_cuda_matches_cpu(mode):
    data = _molecules()
    _, sym = _wrap("vector", mode=mode)
    expected = sym(data)
    result = sym.to("cuda")(data.to("cuda"))
    assert torch.allclose(result.cpu(), expected, rtol=1e-10, atol=1e-12)
    assert_equivariant(sym, data.to("cuda"), "vector", num_rotations=1)
