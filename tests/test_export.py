"""torch.compile and torch.export of PET and of ECSE-wrapped PET: eager vs compiled.

What works and what does not (torch 2.13, measured here):

* ``torch.compile(PET)``: agrees with eager (energies and forces, dynamic atom count), with
  graph breaks printed by ``test_compile_whole_pet``: host-side input validation
  (``bool``/``tolist`` of NaN, unknown-species and missing-reverse-edge checks in
  ``pet.py``, ``ops/radius_graph.py``, ``ops/reverse_edge_index.py``), the radius-graph op
  (a dynamic-output-shape op: dynamo breaks on it unless
  ``torch._dynamo.config.capture_dynamic_output_shape_ops = True``, which its fake kernel
  supports) and ``int(counts.max())`` for K in ``edge_layout.py`` (captured with
  ``capture_scalar_outputs = True``). With both flags only the validation breaks remain.
* ``PETGraphModel`` (PET after the graph build): ``fullgraph=True`` compiles and
  ``torch.export`` exports it with dynamic N, E, K, B; the exported program reproduces eager
  energies, forces and stress, and survives ``torch.export.save``/``load``.
* ECSE: ``torch.compile(ECSESymmetrizer(PET))`` agrees with eager (energies and forces,
  dynamic atom count, batches), with ~90 graph breaks printed by
  ``test_compile_whole_ecse_wrapper``: ``int``/``item`` reads of data-dependent sizes (frame
  and chunk bookkeeping, validation), dynamic-shape ops (radius graph, frame pairs, boolean
  pruning masks), and the PyG ``Batch`` of rotated copies, which is built outside the graph
  (``torch.compiler.disable``: dynamo cannot rebuild a Batch created inside a graph at the
  backbone's own breaks).
* ``ECSEGraphModel`` (ECSE-symmetrized PET after the integer structure is built: frames,
  weights, pruning, copies, PET on all copies, average) compiles with ``fullgraph=True`` and
  exports with every size dynamic; eager wrapper, graph model and exported program agree to
  round-off (energies, forces, stress; with and without pruning, o3, per-atom outputs,
  float32 and float64), and the exported program is exactly rotation invariant.
"""
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from torch_pet import PET, ECSESymmetrizer
from torch_pet.export import (GRAPH_INPUTS, ECSEGraphModel, ExportedECSE, ExportedPET,
                              PETGraphModel, ecse_graph_inputs, export_ecse, export_pet,
                              graph_inputs)
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.testing import (random_methane, random_molecule, random_periodic_box,
                               random_rotation, rotate_structure)

SPECIES = (1, 6, 7, 8)
OPTIONS = dict(species=SPECIES, hidden_channels=16, num_heads=2, num_layers=1, num_blocks=2,
               ff_channels=32, head_channels=16, cutoff=3.0, cutoff_width=0.5)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pet():
    torch.manual_seed(0)
    return PET(**OPTIONS).double().eval()


@pytest.fixture(scope="module")
def aux():
    torch.manual_seed(1)
    return PET(**OPTIONS, distance_only=True).double().eval()


@pytest.fixture(scope="module")
def exported(pet):
    example = Batch.from_data_list([random_molecule(6, generator=1),
                                    random_molecule(9, generator=2)])
    return export_pet(pet, example)


def structures():
    """Different N, E, K and B than the export example; molecules and periodic cells."""
    return [
        random_molecule(20, generator=3),
        Batch.from_data_list([random_molecule(n, generator=n, species=SPECIES)
                              for n in (3, 12, 7)]),
        random_periodic_box(10, box_length=5.0, species=(1, 8), generator=4),
    ]


def assert_same(a, b, atol=1e-12):
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0)


# --------------------------------------------------------------------------- graph model
def test_graph_model_matches_pet(pet):
    graph_model = PETGraphModel(pet)
    for data in structures():
        inputs = graph_inputs(pet, data)
        expected = pet(data)
        torch.testing.assert_close(graph_model(*(inputs[k] for k in GRAPH_INPUTS)), expected,
                                   atol=1e-12, rtol=0)


def test_export_with_dynamic_sizes(pet, exported):
    dims = {str(s) for s in exported.range_constraints}
    assert len(dims) == 4, exported.range_constraints  # N, E, K, B all symbolic
    model = ExportedPET(pet, exported.module())
    for data in structures():
        stress = "cell" in data
        assert_same(energy_and_forces(model, data, compute_stress=stress),
                    energy_and_forces(pet, data, compute_stress=stress))


def test_exported_program_saves_and_loads(pet, exported, tmp_path):
    path = tmp_path / "pet.pt2"
    torch.export.save(exported, str(path))
    loaded = ExportedPET(pet, torch.export.load(str(path)).module())
    data = structures()[1]
    assert_same(energy_and_forces(loaded, data), energy_and_forces(pet, data))


def test_exported_programs_name_a_dtype_mismatch(pet, exported, exported_ecse):
    data = random_molecule(7, generator=5, species=SPECIES, dtype=torch.float32)
    wrapper, program = exported_ecse
    for model in (ExportedPET(pet, exported.module()), ExportedECSE(wrapper, program.module())):
        with pytest.raises(TypeError, match="traced in torch.float64 but got torch.float32"):
            model(data)


def test_exported_programs_read_a_batch_without_batch_vector(pet, exported, exported_ecse):
    full = Batch.from_data_list([random_molecule(n, generator=n, species=SPECIES)
                                 for n in (5, 8, 4)])
    dropped = full.clone()
    del dropped.batch  # ptr is left: the structure of each atom comes from it
    wrapper, program = exported_ecse
    for model, eager in ((ExportedPET(pet, exported.module()), pet),
                         (ExportedECSE(wrapper, program.module()), wrapper)):
        expected = eager(full)
        assert expected.shape == (3, 1)
        torch.testing.assert_close(model(dropped), expected, atol=1e-10, rtol=0)
    bad = full.clone()
    bad.ptr = torch.tensor([0, 5, 12, 17])
    with pytest.raises(ValueError, match="data.batch and data.ptr disagree: atom 12"):
        ExportedPET(pet, exported.module())(bad)


def test_ecse_around_exported_backbone(pet, aux, exported):
    eager = ECSESymmetrizer(pet, aux_model=aux)
    symmetrized = ECSESymmetrizer(ExportedPET(pet, exported.module()), aux_model=aux)
    data = random_methane(5)
    result = energy_and_forces(symmetrized, data)
    assert_same(result, energy_and_forces(eager, data), atol=1e-10)
    rotation = random_rotation(6)
    rotated = energy_and_forces(symmetrized, rotate_structure(data, rotation))
    torch.testing.assert_close(rotated["energy"], result["energy"], atol=1e-10, rtol=0)
    torch.testing.assert_close(rotated["forces"], result["forces"] @ rotation.T, atol=1e-9,
                               rtol=0)


def test_compile_graph_model_in_one_graph(pet):
    compiled = torch.compile(PETGraphModel(pet), fullgraph=True, dynamic=True,
                             backend="aot_eager")  # fullgraph: any graph break raises
    model = ExportedPET(pet, compiled)
    for sizes in ((4, 9), (12, 7, 5)):  # new N, E, K, B: no recompilation
        data = Batch.from_data_list([random_molecule(n, generator=n) for n in sizes])
        assert_same(energy_and_forces(model, data), energy_and_forces(pet, data))


# --------------------------------------------------------------------------- whole models
@pytest.fixture(scope="module")
def compiled_pet(pet):
    """Dynamo capture with graph breaks (backend "eager": the captured pieces run as
    traced; AOTAutograd is covered by the single-graph test above)."""
    torch._dynamo.reset()
    return torch.compile(pet, backend="eager", dynamic=True)


def test_compile_whole_pet(pet, compiled_pet):
    from torch._dynamo.utils import counters

    counters.clear()
    for data in (random_molecule(8, generator=3), random_molecule(11, generator=4)):
        assert_same(energy_and_forces(compiled_pet, data), energy_and_forces(pet, data))
    breaks = counters["graph_break"]
    print(f"\ntorch.compile(PET): {sum(breaks.values())} graph breaks")
    for reason, count in breaks.items():
        print(f"  {count} x {reason.splitlines()[0][:120]}")


def test_ecse_around_compiled_backbone(pet, aux, compiled_pet):
    eager = ECSESymmetrizer(pet, aux_model=aux)
    symmetrized = ECSESymmetrizer(compiled_pet, aux_model=aux)
    data = random_methane(7)
    assert_same(energy_and_forces(symmetrized, data), energy_and_forces(eager, data),
                atol=1e-10)


def test_compile_whole_ecse_wrapper(pet, aux):
    """torch.compile of the whole wrapper, energies and forces, two atom counts and a batch."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = ECSESymmetrizer(pet, aux_model=aux)
    compiled = torch.compile(ECSESymmetrizer(pet, aux_model=aux), backend="aot_eager", dynamic=True)
    cases = (random_molecule(11, generator=5, species=SPECIES),
             Batch.from_data_list([random_methane(3), random_molecule(7, generator=6, species=SPECIES)]))
    for data in cases:
        assert_same(energy_and_forces(compiled, data), energy_and_forces(eager, data), atol=1e-10)
    breaks = counters["graph_break"]
    print(f"\ntorch.compile(ECSESymmetrizer(PET)): {sum(breaks.values())} graph breaks")
    for reason, count in breaks.items():
        print(f"  {count} x {reason.splitlines()[0][:120]}")


@pytest.fixture
def two_threads():
    """Inductor's failing CPU code is the multi-threaded (atomic) scatter: compile with 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("num_rows", [1, 3])
@pytest.mark.parametrize("columns", [(), (1,)])
def test_inductor_compiles_row_sums_into_one_element(num_rows, columns, two_threads):
    """Regression: torch 2.13's Inductor CPU codegen (2 threads) fails on an index_add into a
    single-element tensor of static size (one structure, one channel); add_rows/sum_rows
    sum the rows there."""
    from torch_pet.nn.rows import add_rows, sum_rows

    def fn(values, index):
        return add_rows(sum_rows(values.exp(), index, num_rows), index[:num_rows],
                        values[:num_rows])

    torch._dynamo.reset()
    compiled = torch.compile(fn, dynamic=True)
    for size in (200, 300):
        values = torch.randn(size, *columns, generator=torch.Generator().manual_seed(size))
        index = torch.arange(size) * num_rows // size
        torch.testing.assert_close(compiled(values, index), fn(values, index))


def test_inductor_compiles_whole_pet_on_one_periodic_structure(two_threads):
    """Regression: Inductor (CPU, 2 threads) on whole PET for one periodic water box,
    float32, energies and forces vs eager."""
    from torch_pet.testing import water_box

    torch._dynamo.reset()
    torch.manual_seed(0)
    pet = PET(**{**OPTIONS, "species": (1, 8), "num_blocks": 1}).eval()
    data = water_box(8, generator=0, dtype=torch.float32)
    assert_same(energy_and_forces(torch.compile(pet, dynamic=True), data),
                energy_and_forces(pet, data), atol=1e-4)


def test_inductor_compiles_ecse_pruning_of_one_structure(two_threads):
    """Regression: ECSE's smooth pruning and weight sums for one structure (one pool), with
    gradients, under Inductor (CPU, 2 threads): gathers from and sums into one row."""
    from torch_pet.ecse.frames import prune_weights
    from torch_pet.nn.rows import sum_rows

    def fn(weights, pool):
        _, pruned, aux_weight = prune_weights(weights, pool, 1, steps=2, drop=False)
        return aux_weight + sum_rows(pruned * weights, pool, 1)

    torch._dynamo.reset()
    compiled = torch.compile(fn, dynamic=True)
    for size in (30, 40):
        weights = torch.rand(size, generator=torch.Generator().manual_seed(size),
                             dtype=torch.float64) + 0.1  # steep switches: float64
        pool = torch.zeros(size, dtype=torch.long)
        expected = torch.func.grad(lambda w: fn(w, pool).sum())(weights)
        leaf = weights.clone().requires_grad_()
        value = compiled(leaf, pool)
        torch.testing.assert_close(value, fn(weights, pool))
        torch.testing.assert_close(torch.autograd.grad(value.sum(), leaf)[0], expected)


# --------------------------------------------------------------------------- whole ECSE graph
def ecse_structures(dtype=torch.float64):
    """Molecules, a batch and a periodic box, other sizes than the export example."""
    return [
        random_molecule(11, generator=3, species=SPECIES, dtype=dtype),
        Batch.from_data_list([random_methane(3, dtype=dtype),
                              random_molecule(7, generator=6, species=SPECIES, dtype=dtype)]),
        random_periodic_box(10, box_length=5.0, species=(1, 8), generator=4, dtype=dtype),
    ]


def ecse_results(model, data):
    return energy_and_forces(model, data, compute_stress="cell" in data)


@pytest.mark.parametrize("frame_options, o3", [({"prune_steps": 0}, False), ({}, False),
                                               ({}, True)])
def test_ecse_graph_model_matches_the_wrapper(pet, aux, frame_options, o3):
    wrapper = ECSESymmetrizer(pet, aux_model=aux, o3=o3, frame_options=frame_options)
    graph_model = ExportedECSE(wrapper, ECSEGraphModel(wrapper))
    for data in ecse_structures():
        assert_same(ecse_results(graph_model, data), ecse_results(wrapper, data), atol=1e-10)


def test_ecse_graph_model_float32_and_per_atom():
    torch.manual_seed(0)
    atomic = PET(**OPTIONS, per_atom=True).eval()
    wrapper = ECSESymmetrizer(atomic, per_atom=True, aux_model=None)
    graph_model = ExportedECSE(wrapper, ECSEGraphModel(wrapper))
    for data in ecse_structures(torch.float32)[1:]:
        expected = wrapper(data)
        assert expected.shape == (data.pos.shape[0], 1)
        torch.testing.assert_close(graph_model(data), expected, atol=1e-5, rtol=0)
        assert_same(ecse_results(_Summed(graph_model), data), ecse_results(_Summed(wrapper), data),
                    atol=1e-4)


class _Summed(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, data):
        atomic = self.model(data)
        batch = getattr(data, "batch", None)
        if batch is None:
            return atomic.sum(0, keepdim=True)
        return atomic.new_zeros(data.num_graphs, 1).index_add(0, batch, atomic)


@pytest.fixture(scope="module")
def exported_ecse(pet, aux):
    wrapper = ECSESymmetrizer(pet, aux_model=aux)
    example = Batch.from_data_list([random_molecule(6, generator=1, species=SPECIES),
                                    random_molecule(9, generator=2, species=SPECIES)])
    return wrapper, export_ecse(wrapper, example)


def test_export_whole_ecse_with_dynamic_sizes(exported_ecse):
    wrapper, program = exported_ecse
    # N, B, E_o, P, F, C, M, E_c, K (copies), E_a, K_a (auxiliary PET): all symbolic
    assert len(program.range_constraints) == 11, program.range_constraints
    model = ExportedECSE(wrapper, program.module())
    linear = Data(z=torch.tensor([8, 6, 8]), pos=torch.tensor(
        [[-1.16, 0.0, 0.0], [0.0, 0.0, 0.0], [1.16, 0.0, 0.0]], dtype=torch.float64))
    for data in ecse_structures() + [linear]:  # CO2: no frame at all, only the aux model
        assert_same(ecse_results(model, data), ecse_results(wrapper, data), atol=1e-10)
    data = ecse_structures()[0]
    rotation = random_rotation(7)
    result, rotated = ecse_results(model, data), ecse_results(model, rotate_structure(data, rotation))
    torch.testing.assert_close(rotated["energy"], result["energy"], atol=1e-12, rtol=0)
    torch.testing.assert_close(rotated["forces"], result["forces"] @ rotation.T, atol=1e-11, rtol=0)


def test_exported_ecse_saves_loads_and_runs_in_the_calculator(exported_ecse, tmp_path):
    from ase import Atoms

    from torch_pet.calculator import PETCalculator

    wrapper, program = exported_ecse
    path = tmp_path / "ecse_pet.pt2"
    torch.export.save(program, str(path))
    loaded = ExportedECSE(wrapper, torch.export.load(str(path)).module())
    data = ecse_structures()[2]
    assert_same(ecse_results(loaded, data), ecse_results(wrapper, data), atol=1e-10)

    atoms = Atoms(numbers=data.z.numpy(), positions=data.pos.numpy(),
                  cell=data.cell.reshape(3, 3).numpy(), pbc=data.pbc.reshape(3).numpy())
    atoms.calc = PETCalculator(loaded)
    expected = ecse_results(wrapper, data)
    np.testing.assert_allclose(atoms.get_potential_energy(), float(expected["energy"]), atol=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"].numpy(), atol=1e-10)


def test_compile_ecse_graph_model_in_one_graph(pet, aux):
    """Dynamo captures the whole ECSE graph model at once (fullgraph: any break raises), for
    new sizes without recompiling (AOT tracing is covered by the export tests). Many sizes
    enter, so duck sizing is off: it would tie sizes that happen to be equal (e.g. the
    copies C and the atoms N) and recompile when they differ."""
    from torch._dynamo.utils import counters
    from torch.fx.experimental import _config as fx_config

    torch._dynamo.reset()
    counters.clear()
    wrapper = ECSESymmetrizer(pet, aux_model=aux)
    compiled = torch.compile(ECSEGraphModel(wrapper), fullgraph=True, dynamic=True,
                             backend="eager")
    model = ExportedECSE(wrapper, compiled)
    batches = (ecse_structures()[1], Batch.from_data_list(
        [random_molecule(n, generator=n, species=SPECIES) for n in (5, 9, 12)]))
    with fx_config.patch(use_duck_shape=False):
        for data in batches:
            assert_same(ecse_results(model, data), ecse_results(wrapper, data), atol=1e-10)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


def test_ecse_graph_inputs_reject_what_it_cannot_export(pet, aux):
    with pytest.raises(ValueError, match="mode='structure' only"):
        ECSEGraphModel(ECSESymmetrizer(PET(**OPTIONS, per_atom=True), mode="atom"))
    with pytest.raises(TypeError, match="needs a PET backbone"):
        ECSEGraphModel(ECSESymmetrizer(torch.nn.Identity(), cutoff=3.0))
    dimer = random_molecule(2, generator=0, species=SPECIES)
    with pytest.raises(ValueError, match="need the auxiliary model"):
        ecse_graph_inputs(ECSESymmetrizer(pet), dimer)
