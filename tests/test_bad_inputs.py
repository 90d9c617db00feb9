"""Bad and ambiguous inputs to PET, ECSESymmetrizer, the calculator and the exported programs.

Batches read from ``ptr`` when ``batch`` was dropped (same results); ambiguous structure
indices, absurd ones and bad user neighbour lists raise ``ValueError`` naming the argument
(and the offending atom or edge); and a property-based sweep (hypothesis, seeded, bounded)
of malformed inputs checks that each raises ``ValueError``/``TypeError`` naming it.
"""
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch_geometric.data import Batch, Data

from torch_pet import PET, ECSESymmetrizer
from torch_pet.inputs import MAX_EMPTY_STRUCTURES, check_graph, structure_index
from torch_pet.nn.derivatives import energy_and_forces
from torch_pet.ops import radius_graph

pytestmark = pytest.mark.usefixtures("one_thread")

SPECIES = (1, 6, 8)
OPTIONS = dict(species=SPECIES, hidden_channels=8, num_heads=2, num_layers=1, num_blocks=2,
               ff_channels=16, head_channels=8, cutoff=3.0, cutoff_width=0.5)


def molecule(n, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    z = torch.tensor(SPECIES)[torch.randint(len(SPECIES), (n,), generator=gen)]
    return Data(z=z, pos=2.0 * torch.rand(n, 3, generator=gen, dtype=dtype))


def box(n, seed, dtype=torch.float64, length=4.0):
    """n atoms in a triclinic cell, periodic along x and y."""
    data = molecule(n, seed, dtype)
    data.cell = torch.tensor([[length, 0, 0], [0.3, length, 0], [0, -0.2, 4.0]], dtype=dtype)[None]
    data.pbc = torch.tensor([[True, True, False]])
    data.pos = data.pos * length / 2
    return data


def empty(dtype=torch.float64):
    return Data(z=torch.zeros(0, dtype=torch.long), pos=torch.zeros(0, 3, dtype=dtype))


@pytest.fixture(scope="module")
def pet():
    torch.manual_seed(0)
    return PET(**OPTIONS).double().eval()


@pytest.fixture(scope="module")
def aux():
    torch.manual_seed(1)
    return PET(**OPTIONS, distance_only=True).double().eval()


def without_batch(data, how):
    data = data.clone()
    if how == "del":
        del data.batch
    else:
        data.batch = None
    return data


# ------------------------------------------------------------------ batch derived from ptr
@pytest.mark.parametrize("how", ["del", "none"])
def test_batch_without_batch_vector_is_read_from_ptr(pet, aux, how):
    from torch_pet.calculator import _AtomicSum

    full = Batch.from_data_list([molecule(5, 1), molecule(4, 2), empty()])  # trailing empty
    dropped = without_batch(full, how)
    assert getattr(dropped, "batch", None) is None and dropped.ptr is not None
    expected = pet(full)
    assert expected.shape == (3, 1) and expected[2, 0] == 0
    torch.testing.assert_close(pet(dropped), expected, atol=0, rtol=0)
    atomic = PET(**OPTIONS, per_atom=True).double().eval()
    atomic.load_state_dict(pet.state_dict())
    torch.testing.assert_close(_AtomicSum(atomic)(dropped), expected, atol=1e-12, rtol=0)
    for mode in ("structure", "atom"):
        model = atomic if mode == "atom" else pet
        wrapper = ECSESymmetrizer(model, mode=mode, aux_model=aux if mode == "structure" else
                                  PET(**OPTIONS, distance_only=True, per_atom=True).double())
        torch.testing.assert_close(wrapper(dropped), wrapper(full), atol=1e-12, rtol=0)
    result, reference = energy_and_forces(pet, dropped), energy_and_forces(pet, full)
    for key in reference:
        torch.testing.assert_close(result[key], reference[key], atol=1e-12, rtol=0)
    boxes = Batch.from_data_list([box(6, 3), box(5, 4)])
    stress = energy_and_forces(pet, without_batch(boxes, how), compute_stress=True)["stress"]
    torch.testing.assert_close(stress, energy_and_forces(pet, boxes, compute_stress=True)["stress"],
                               atol=1e-12, rtol=0)


def test_batch_vector_alone_and_int32(pet):
    full = Batch.from_data_list([molecule(5, 1), molecule(4, 2)])
    alone = Data(z=full.z, pos=full.pos, batch=full.batch.int())  # no ptr, int32
    torch.testing.assert_close(pet(alone), pet(full), atol=0, rtol=0)
    gap = Data(z=full.z, pos=full.pos, batch=torch.where(full.batch == 1, 2, 0))
    out = pet(gap)  # structure 1 is empty
    assert out.shape == (3, 1) and out[1, 0] == 0
    torch.testing.assert_close(out[[0, 2]], pet(full), atol=0, rtol=0)


# ------------------------------------------------------------------ ambiguous structure index
def test_ambiguous_or_absurd_structure_indices_raise(pet, aux):
    full = Batch.from_data_list([molecule(5, 1), molecule(4, 2)])
    cases = []

    def case(match, exception=ValueError, **change):
        data = full.clone()
        for key, value in change.items():
            if value is None:
                delattr(data, key)
            else:
                setattr(data, key, value)
        cases.append((data, exception, match))

    case(r"batch and data.ptr disagree: atom 4 is in structure 0 by batch but 1 by ptr",
         ptr=torch.tensor([0, 4, 9]))
    case(r"ptr must start at 0, end at N = 9", batch=None, ptr=torch.tensor([1, 5, 9]))
    case(r"ptr must start at 0, end at N = 9", batch=None, ptr=torch.tensor([0, 5, 8]))
    case(r"ptr must start at 0.*never decrease", batch=None, ptr=torch.tensor([0, 6, 5, 9]))
    case(r"ptr must be an integer tensor", TypeError, batch=None, ptr=torch.tensor([0.0, 5, 9]))
    case(r"batch must be sorted ascending.*decreases at atom 5", ptr=None,
         batch=torch.tensor([0, 0, 0, 0, 1, 0, 1, 1, 1]))
    case(r"batch has a negative structure index at atom 0", ptr=None,
         batch=torch.tensor([-1, 0, 0, 0, 0, 1, 1, 1, 1]))
    case(r"batch must have shape \[N\] = \[9\]", ptr=None, batch=torch.zeros(8, dtype=torch.long))
    case(r"batch must be an integer tensor, got torch.float32", TypeError, ptr=None,
         batch=torch.zeros(9))
    case(r"batch and data.ptr are both missing from a Batch of 2 structures", batch=None,
         ptr=None)
    case(r"batch refers to structure 2 but the input has num_graphs = 2", ptr=None,
         batch=torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2]))
    huge = torch.tensor([0] * 8 + [10 ** 12])
    case(r"batch refers to structure 1000000000000 but the input has num_graphs = 2", ptr=None,
         batch=huge)  # a Batch knows its size
    plain = Data(z=full.z, pos=full.pos, batch=huge)  # a Data: nothing else to go by
    cases.append((plain, ValueError, r"batch implies 1000000000001 structures"))
    wrapper = ECSESymmetrizer(pet, aux_model=aux)
    for data, exception, match in cases:
        for model in (pet, wrapper, lambda d: energy_and_forces(pet, d)):
            start = time.perf_counter()
            with pytest.raises(exception, match=match):
                model(data)
            assert time.perf_counter() - start < 1.0  # no huge allocation first
    with pytest.raises(ValueError, match=r"^ECSESymmetrizer: data.batch and data.ptr disagree"):
        wrapper(cases[0][0])


def test_structure_index_helper():
    batch = torch.tensor([0, 0, 1, 3])
    index = structure_index(batch, None, 4, batch.device)
    assert index.num_structures == 4 and index.ptr.tolist() == [0, 2, 3, 3, 4]
    index = structure_index(None, torch.tensor([0, 2, 2, 4]), 4, batch.device)
    assert index.batch.tolist() == [0, 0, 2, 2] and index.num_structures == 3
    assert structure_index(None, None, 3, batch.device).ptr.tolist() == [0, 3]
    many = structure_index(torch.tensor([MAX_EMPTY_STRUCTURES]), None, 1, batch.device)
    assert many.num_structures == MAX_EMPTY_STRUCTURES + 1  # the limit itself is accepted
    with pytest.raises(ValueError, match=f"implies {MAX_EMPTY_STRUCTURES + 2} structures"):
        structure_index(torch.tensor([MAX_EMPTY_STRUCTURES + 1]), None, 1, batch.device)
    with pytest.raises(ValueError, match="ptr describes 3 structures but num_graphs is 2"):
        structure_index(None, torch.tensor([0, 2, 2, 4]), 4, batch.device, num_structures=2)
    with pytest.raises(ValueError, match="batch is missing but num_graphs is 2"):
        structure_index(None, None, 4, batch.device, num_structures=2)
    with pytest.raises(ValueError, match=r"num_graphs must be a non-negative integer"):
        structure_index(batch, None, 4, batch.device, num_structures=1.5)
    with pytest.raises(TypeError, match="batch must be a torch.Tensor of integers, got list"):
        structure_index([0, 0, 1, 1], None, 4, batch.device)
    with pytest.raises(ValueError, match=r"batch must be 1-D"):
        structure_index(batch[None], None, 4, batch.device)


# ------------------------------------------------------------------ user neighbour lists
def test_user_graph_checks(pet):
    data = Batch.from_data_list([molecule(5, 1), molecule(4, 2)])
    edge_index, shifts = radius_graph(data.pos, pet.cutoff, data.batch)
    reference = pet(data)

    def run(edges, edge_shifts=None, **extra):
        d = data.clone()
        d.pet_edge_index = edges
        if edge_shifts is not None:
            d.pet_shifts = edge_shifts
        for key, value in extra.items():
            setattr(d, key, value)
        return pet(d)

    torch.testing.assert_close(run(edge_index), reference, atol=1e-12, rtol=0)
    perm = torch.randperm(edge_index.shape[1])
    torch.testing.assert_close(run(edge_index[:, perm], shifts[perm]), reference, atol=1e-12,
                               rtol=0)
    e = 3
    with pytest.raises(ValueError, match=rf"data.pet_edge_index: edge {edge_index.shape[1]} "
                                         rf"\(.*\) duplicates edge {e}"):
        run(torch.cat([edge_index, edge_index[:, e:e + 1]], 1))
    with pytest.raises(ValueError, match=r"edge 2 \(1 -> 1, shift \[0, 0, 0\]\) is a self-loop"):
        run(torch.cat([edge_index[:, :2], torch.tensor([[1], [1]]), edge_index[:, 2:]], 1))
    cross = torch.tensor([[0, 6], [6, 0]])
    with pytest.raises(ValueError, match=r"edge 0 \(0 -> 6.*joins atoms of different structures"):
        run(cross)
    far = data.clone()
    far.pos = data.pos.clone()
    far.pos[1] = far.pos[0] + torch.tensor([3.5, 0, 0], dtype=torch.float64)
    near = radius_graph(far.pos, pet.cutoff, far.batch)[0]
    with pytest.raises(ValueError, match=rf"edge_index: edge {near.shape[1]} \(0 -> 1, shift "
                                         r"\[0, 0, 0\]\) is 3.5 long, beyond the model's "
                                         r"cutoff 3.0"):
        pet.forward_tensors(far.z, far.pos, far.batch,
                            edge_index=torch.cat([near, torch.tensor([[0], [1]])], 1))
    with pytest.raises(ValueError, match=r"data.pet_shifts: edge 0 .* shifted along an axis, but "
                                         r"no cell is given"):
        run(torch.tensor([[0, 1], [1, 0]]), torch.tensor([[1, 0, 0], [-1, 0, 0]]))
    with pytest.raises(TypeError, match="data.pet_shifts must be an integer tensor"):
        run(edge_index, shifts.double())
    with pytest.raises(TypeError, match="data.pet_edge_index must be an integer tensor"):
        run(edge_index.double())
    with pytest.raises(ValueError, match=r"outside \[0, 9\) \(first at edge 1"):
        run(torch.tensor([[0, 9], [1, 0]]))
    with pytest.raises(ValueError, match="data.pet_shifts is given without data.pet_edge_index"):
        run(None, shifts)
    # periodic: self-images are edges (i -> i with a shift); shifts along pbc=False raise
    periodic = box(3, 5, length=2.5)
    edges, cell_shifts = radius_graph(periodic.pos, pet.cutoff, cell=periodic.cell,
                                      pbc=periodic.pbc)
    assert bool((edges[0] == edges[1]).any())
    d = periodic.clone()
    d.pet_edge_index, d.pet_shifts = edges, cell_shifts
    torch.testing.assert_close(pet(d), pet(periodic), atol=1e-12, rtol=0)
    d.pet_edge_index = torch.tensor([[0, 0], [0, 0]])
    d.pet_shifts = torch.tensor([[0, 0, 1], [0, 0, -1]])
    with pytest.raises(ValueError, match=r"edge 0 \(0 -> 0, shift \[0, 0, 1\]\) is shifted along "
                                         r"an axis, but that axis is not periodic"):
        pet(d)


def test_check_graph_validates_cell():
    pos = torch.rand(3, 3, dtype=torch.float64)
    index = structure_index(None, None, 3, pos.device)
    edges = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(TypeError, match="cell must have the dtype of pos"):
        check_graph(edges, None, pos, index, torch.eye(3, dtype=torch.float32) * 5, None, 3.0)
    with pytest.raises(ValueError, match="cell must have shape"):
        check_graph(edges, None, pos, index, torch.eye(2, dtype=torch.float64), None, 3.0)


# ------------------------------------------------------------------ clear messages
def test_clear_messages_for_bad_model_inputs(pet, aux):
    data = molecule(4, 1)
    with pytest.raises(ValueError, match=r"species .*at most 118.*\(1, 119\)"):
        PET(**{**OPTIONS, "species": (1, 119)})
    with pytest.raises(ValueError, match=r"species .*>= 1"):
        PET(**{**OPTIONS, "species": (0, 1)})
    bad = data.clone()
    bad.z = torch.tensor([1, 6, 26, 6])
    with pytest.raises(ValueError, match=r"data.z: atomic number\(s\) \[26\] are not among the "
                                         r"model's species \[1, 6, 8\]"):
        pet(bad)
    bad.z = data.z.double()
    with pytest.raises(TypeError, match="data.z must be an integer tensor"):
        pet(bad)
    with pytest.raises(TypeError, match=r"data.pos is torch.float32 but the model is "
                                        r"torch.float64; convert one \(model.double\(\)"):
        pet(molecule(4, 1, dtype=torch.float32))
    with pytest.raises(TypeError, match="data.pos must be floating point"):
        pet(Data(z=data.z, pos=data.pos.long()))
    with pytest.raises(TypeError, match="data.pos must be a torch.Tensor"):
        pet(Data(z=data.z, pos=data.pos.numpy()))
    with pytest.raises(ValueError, match=r"pos must have shape \[N, 3\] with N = len\(z\) = 3"):
        pet.forward_tensors(data.z[:3], data.pos)
    with pytest.raises(ValueError, match=r"data.pos contains NaN or Inf \(first at atom 2\)"):
        pet(Data(z=data.z, pos=data.pos.index_fill(0, torch.tensor([2]), float("inf"))))


class WrongShape(torch.nn.Module):
    """An auxiliary model returning one row too many."""

    cutoff = 3.0

    def forward(self, data):
        return data.pos.new_zeros(data.pos.shape[0] + 1)


def test_auxiliary_model_of_wrong_shape_is_named_on_a_plain_data(pet):
    dimer = Data(z=torch.tensor([6, 8]), pos=torch.tensor([[0.0, 0, 0], [1.1, 0, 0]],
                                                           dtype=torch.float64))
    for data in (dimer, Batch.from_data_list([dimer, dimer])):
        with pytest.raises(ValueError, match=r"the aux_model returned shape \(\d\,\) for \d "
                                             r"structures of \d atoms, expected \d rows"):
            ECSESymmetrizer(pet, aux_model=WrongShape())(data)


def test_forces_only_extxyz_loads_and_training_names_the_missing_energy(tmp_path):
    from torch_pet.datasets.extxyz import read_extxyz
    from torch_pet.datasets.registry import DataConfig, load_splits
    from torch_pet.training.config import TrainingConfig

    path = tmp_path / "forces.xyz"
    path.write_text("".join(f"2\nProperties=species:S:1:pos:R:3:forces:R:3\n"
                            f"H 0 0 0 0.{k} 0 0\nH 0.7{k} 0 0 -0.{k} 0 0\n" for k in range(5)))
    data = read_extxyz(str(path))
    assert len(data) == 5 and "energy" not in data[0] and data[0].forces.shape == (2, 3)
    with pytest.raises(ValueError, match=r"structure 0: property 'energy' \(key 'energy'\) is "
                                         r"missing"):
        read_extxyz(str(path), properties=("energy", "forces"))
    splits = load_splits(DataConfig(dataset="extxyz", data=str(path)))
    assert splits.energy_key is None and splits.forces_key == "forces"
    with pytest.raises(ValueError, match="energy_key is null but forces_key is set: the data "
                                         "carries forces but no energies"):
        TrainingConfig(energy_key=splits.energy_key, forces_key=splits.forces_key)


# ------------------------------------------------------------------ calculator
@pytest.fixture(scope="module")
def calculator(pet):
    from torch_pet.calculator import PETCalculator

    return PETCalculator(pet)


def test_calculator_names_bad_atoms(calculator):
    from ase import Atoms

    atoms = Atoms("CHO", positions=[[0, 0, 0], [1.0, 0, 0], [0, 1.2, 0]])
    assert np.isfinite(calculator.get_potential_energy(atoms))
    nan = atoms.copy()
    nan.positions[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"atoms.positions contains NaN or Inf \(first at atom 1"):
        calculator.get_potential_energy(nan)
    iron = atoms.copy()
    iron.numbers[0] = 26
    with pytest.raises(ValueError, match=r"atoms.numbers contains Fe \(Z=26\)"):
        calculator.get_potential_energy(iron)
    with pytest.raises(TypeError, match="atoms must be an ase.Atoms, got str"):
        calculator.calculate("CH4")


# ------------------------------------------------------------------ property-based sweep
KINDS = ("nan_pos", "pos_shape", "pos_dtype", "pos_type", "z_dtype", "z_shape", "species",
         "batch_unsorted", "batch_negative", "batch_huge", "batch_length", "batch_dtype",
         "ptr_bad", "ptr_disagree")
ARGUMENT = {"nan_pos": "pos", "pos_shape": "pos|z", "pos_dtype": "pos", "pos_type": "pos",
            "z_dtype": "z", "z_shape": "z", "species": "z", "batch_unsorted": "batch",
            "batch_negative": "batch", "batch_huge": "batch", "batch_length": "batch",
            "batch_dtype": "batch", "ptr_bad": "ptr", "ptr_disagree": "ptr"}


def corrupt(draw, kind: str, data: Batch) -> Batch:
    """A copy of ``data`` with one malformed input of the given kind."""
    data = data.clone()
    n = data.pos.shape[0]
    atom = draw(st.integers(0, n - 1))
    if kind == "nan_pos":
        data.pos[atom, draw(st.integers(0, 2))] = draw(st.sampled_from(
            [float("nan"), float("inf"), -float("inf")]))
    elif kind == "pos_shape":
        rows, cols = draw(st.sampled_from([(n, 2), (n, 4), (n + 1, 3), (n - 1, 3), (n, 1)]))
        data.pos = torch.rand(rows, cols, dtype=torch.float64)
    elif kind == "pos_dtype":
        data.pos = data.pos.to(draw(st.sampled_from([torch.float32, torch.float16,
                                                     torch.int64, torch.bool])))
    elif kind == "pos_type":
        data.pos = draw(st.sampled_from([data.pos.numpy(), data.pos.tolist()]))
    elif kind == "z_dtype":
        data.z = data.z.to(draw(st.sampled_from([torch.float32, torch.float64, torch.bool])))
    elif kind == "z_shape":
        data.z = data.z[:, None].expand(n, draw(st.integers(2, 3))).clone()
    elif kind == "species":
        data.z[atom] = draw(st.sampled_from([0, -3, 2, 7, 26, 118, 119, 10 ** 6]))
    elif kind.startswith("batch"):
        del data.ptr
        batch = data.batch.clone()
        if kind == "batch_unsorted":
            batch = torch.cat([batch[-1:], batch[:-1]])  # the last atom (structure 1) first
        elif kind == "batch_negative":
            batch[0] = -draw(st.integers(1, 10 ** 6))
        elif kind == "batch_huge":
            batch[-1] = draw(st.integers(n + MAX_EMPTY_STRUCTURES, 10 ** 15))
        elif kind == "batch_length":
            batch = torch.cat([batch, batch[-1:]]) if draw(st.booleans()) else batch[:-1]
        else:
            batch = batch.to(draw(st.sampled_from([torch.float32, torch.float64, torch.bool])))
        data.batch = batch
    elif kind == "ptr_bad":
        del data.batch
        ptr = data.ptr.clone()
        which = draw(st.sampled_from(["start", "end", "decrease"]))
        if which == "start":
            ptr[0] = draw(st.integers(1, n))
        elif which == "end":
            ptr[-1] = n + draw(st.sampled_from([-1, 1, 10 ** 9]))
        else:
            ptr[1] = n + 1
        data.ptr = ptr
    else:  # ptr_disagree: a valid ptr of other structure sizes, batch kept
        cut = draw(st.integers(0, n).filter(lambda c: c != int(data.ptr[1])))
        data.ptr = torch.tensor([0, cut, n])
    return data


@pytest.fixture(scope="module")
def sweep_models(pet, aux, calculator):
    return {"pet": pet, "ecse": ECSESymmetrizer(pet, aux_model=aux), "calculator": calculator}


SWEEP = dict(deadline=None, derandomize=True, database=None,
             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["pet", "ecse"])
@settings(max_examples=8, **SWEEP)
@given(st.data())
def test_malformed_inputs_raise_errors_naming_the_argument(sweep_models, target, kind, data):
    base = Batch.from_data_list([molecule(4, 1), molecule(3, 2)])
    bad = corrupt(data.draw, kind, base)
    with pytest.raises((ValueError, TypeError)) as error:
        sweep_models[target](bad)
    message = str(error.value)
    assert any(f"data.{name}" in message for name in ARGUMENT[kind].split("|")), message


@pytest.mark.parametrize("kind", ["positions", "numbers", "cell", "type"])
@settings(max_examples=10, **SWEEP)
@given(st.data())
def test_malformed_atoms_raise_calculator_errors_naming_them(sweep_models, kind, data):
    from ase import Atoms

    atoms = Atoms("CHOH", positions=[[0, 0, 0], [1.0, 0, 0], [0, 1.2, 0], [0.1, 0.2, 1.1]])
    atom = data.draw(st.integers(0, 3))
    if kind == "positions":
        atoms.positions[atom, data.draw(st.integers(0, 2))] = data.draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "numbers":
        atoms.numbers[atom] = data.draw(st.sampled_from([2, 7, 26, 92, 118]))
    elif kind == "cell":
        atoms.cell = np.eye(3) * 5.0
        atoms.pbc = True
        atoms.cell[data.draw(st.integers(0, 2)), atom % 3] = data.draw(
            st.sampled_from([np.nan, np.inf]))
    else:
        atoms = data.draw(st.sampled_from(["CH4", atoms.positions, {"numbers": [6]}]))
    with pytest.raises((ValueError, TypeError)) as error:
        sweep_models["calculator"].calculate(atoms, ["energy"])
    name = "atoms" if kind == "type" else f"atoms.{kind}"
    assert name in str(error.value) and "PETCalculator" in str(error.value), str(error.value)


def test_testing_helpers_read_a_batch_without_batch_vector():
    from torch_pet.testing.structures import batch_vector

    full = Batch.from_data_list([molecule(3, 1), molecule(4, 2)])
    assert batch_vector(without_batch(full, "del")).tolist() == full.batch.tolist()
    with pytest.raises(ValueError, match="data.batch and data.ptr disagree"):
        batch_vector(Data(pos=full.pos, batch=full.batch, ptr=torch.tensor([0, 4, 7])))
