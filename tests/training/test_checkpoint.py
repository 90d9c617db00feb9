"""Checkpoints: round trips, the content hash, the model registry, format upgrades and the
stored fixtures (damaged and crafted files: test_checkpoint_integrity.py).
"""
import os

import pytest
import torch
from checkpoint_files import one_methane, rewrite, tiny_pet, toy
from toy_potential import ToyPotential
from torch_geometric.data import Batch, Data

import torch_pet.checkpoint as ckpt
from torch_pet import PET
from torch_pet.checkpoint import CheckpointError, CheckpointWarning
from torch_pet.nn.derivatives import energy_and_forces

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


# --------------------------------------------------------------------------- round trips
def test_round_trip_restores_model_hyperparameters_and_optimizer(tmp_path, methane_small):
    model = toy()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = Batch.from_data_list([methane_small[0][i] for i in range(3)])
    model(batch).sum().backward()
    optimizer.step()
    path = str(tmp_path / "model.pt")
    ckpt.save_checkpoint(path, model, optimizer=optimizer, metadata={"note": "x"})
    record = ckpt.load_checkpoint(path)
    assert record["format_version"] == ckpt.FORMAT_VERSION == 2
    assert record["model"]["class"] == "ToyPotential"
    assert record["model"]["hyperparameters"] == {"species": [1, 6], "hidden_channels": 5,
                                                  "out_channels": 1}
    torch.testing.assert_close(record["model"]["self_energies"], model.self_energies)
    assert record["optimizer"]["state"] and record["metadata"] == {"note": "x"}
    # a user's backbone loads only when the user passes (or registers) its class
    with pytest.raises(CheckpointError, match=r"model\.pt names the model class 'ToyPotential'"):
        ckpt.load_model(path)
    loaded = ckpt.load_model(path, extra_classes={"ToyPotential": ToyPotential})
    assert type(loaded) is ToyPotential and not loaded.training
    torch.testing.assert_close(loaded(batch), model(batch))
    double = ckpt.load_model(path, dtype=torch.float64,
                             extra_classes={"ToyPotential": ToyPotential})
    batch64 = batch.clone()
    batch64.pos = batch64.pos.double()
    assert double(batch64).dtype == torch.float64
    with pytest.raises(CheckpointError, match="holds no aux model"):
        ckpt.load_model(path, aux=True)


def test_registered_user_backbone(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt.registry, "_USER_MODELS", {})
    path = str(tmp_path / "toy.pt")
    ckpt.save_checkpoint(path, toy())
    assert ckpt.register_model(ToyPotential) is ToyPotential
    assert type(ckpt.load_model(path)) is ToyPotential
    ckpt.unregister_model("ToyPotential")
    with pytest.raises(CheckpointError, match="not one of torch_pet's models"):
        ckpt.load_model(path)
    with pytest.raises(ValueError, match="'PET' belongs to torch_pet's own"):
        ckpt.register_model(ToyPotential, name="PET")
    with pytest.raises(TypeError, match="must map to a torch.nn.Module subclass"):
        ckpt.load_model(path, extra_classes={"ToyPotential": os.system})
    with pytest.raises(TypeError, match="without dots"):
        ckpt.register_model(ToyPotential, name="os.system")

    class PET(ToyPotential):  # a user's class that shares the name of torch_pet's model
        pass

    with pytest.raises(ValueError, match="its name 'PET' is that of torch_pet's own model"):
        ckpt.save_checkpoint(str(tmp_path / "x.pt"), PET())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pet_round_trip_is_bit_exact(tmp_path, dtype):
    model, aux = tiny_pet(1, dtype), tiny_pet(2, dtype, distance_only=True)
    path = str(tmp_path / "pet.pt")
    ckpt.save_checkpoint(path, model, aux_model=aux)
    record = ckpt.load_checkpoint(path)
    assert record["model"]["class"] == "PET"
    assert record["content_sha256"] == ckpt.content_hash(record)
    for original, aux_flag in ((model, False), (aux, True)):
        loaded = ckpt.load_model(path, aux=aux_flag)
        assert type(loaded) is PET and next(loaded.parameters()).dtype == dtype
        state = loaded.state_dict()
        for key, value in original.state_dict().items():
            assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
        data = one_methane(dtype)
        assert torch.equal(loaded(data), original.eval()(data))
    # saving the same content again gives the same hash (deterministic serialisation)
    ckpt.save_checkpoint(str(tmp_path / "again.pt"), model, aux_model=aux)
    assert ckpt.load_checkpoint(str(tmp_path / "again.pt"))["content_sha256"] == \
        record["content_sha256"]


def test_content_hash_is_canonical():
    h = ckpt.content_hash
    assert h({"a": 1, "b": [2.0, None]}) == h({"b": [2.0, None], "a": 1})
    assert h({"a": 1}) != h({"a": 1.0}) != h({"a": True})
    assert h({"a": [1]}) != h({"a": (1,)})
    assert h({"a": 0.0}) != h({"a": -0.0})
    zeros = torch.zeros(2, dtype=torch.float32)
    assert h({"t": zeros}) != h({"t": torch.zeros(1, dtype=torch.float64)})  # same raw bytes
    assert h({"t": torch.zeros(2, 1)}) != h({"t": torch.zeros(1, 2)})
    assert h({"t": torch.arange(6.0).view(2, 3).t()}) == h({"t": torch.tensor(
        [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]])})  # strides do not matter, values do
    assert h({"x": 1, "content_sha256": "a"}) == h({"x": 1})
    with pytest.raises(TypeError, match=r"checkpoint\['f'\] is a builtin_function"):
        h({"f": os.system})


def test_hyperparameters_must_be_recoverable_plain_data(tmp_path):
    class Opaque(torch.nn.Module):
        def __init__(self, width=3):
            super().__init__()
            self.lin = torch.nn.Linear(width, 1)

    with pytest.raises(ValueError, match="argument 'width' is not stored as an attribute"):
        ckpt.save_checkpoint(str(tmp_path / "x.pt"), Opaque())

    class Callback(torch.nn.Module):
        def __init__(self, activation=torch.tanh):
            super().__init__()
            self.activation = activation
            self.lin = torch.nn.Linear(2, 1)

    with pytest.raises(TypeError, match=r"hyperparameters\['activation'\] is a builtin_f.*"
                                        "plain data"):
        ckpt.save_checkpoint(str(tmp_path / "x.pt"), Callback())
    with pytest.raises(TypeError, match=r"metadata'\]\['bad'\] is a bytes"):
        ckpt.save_checkpoint(str(tmp_path / "x.pt"), toy(), metadata={"bad": b"x"})
    assert not os.path.exists(tmp_path / "x.pt")


# --------------------------------------------------------------------------- formats
def test_newer_bare_and_foreign_files_fail_clearly(tmp_path):
    path = str(tmp_path / "model.pt")
    ckpt.save_checkpoint(path, toy())
    record = torch.load(path, weights_only=True)

    newer = rewrite(tmp_path / "newer.pt", dict(record, format_version=3))
    with pytest.raises(CheckpointError, match=r"newer.pt was written with checkpoint format 3, "
                                              r"newer than the format 2 .* upgrade torch_pet"):
        ckpt.load_checkpoint(newer)
    torch.save(toy().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="bare.pt holds a bare state_dict without"):
        ckpt.load_checkpoint(str(tmp_path / "bare.pt"))
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt is not a torch_pet checkpoint"):
        ckpt.load_checkpoint(str(tmp_path / "other.pt"))
    damaged = rewrite(tmp_path / "damaged.pt",
                       dict(record, model={"class": record["model"]["class"]}))
    with pytest.raises(CheckpointError, match="damaged.pt is damaged: its model record lacks"):
        ckpt.load_checkpoint(damaged)
    unhashed = dict(record)
    del unhashed["content_sha256"]
    torch.save(unhashed, tmp_path / "unhashed.pt")
    with pytest.raises(CheckpointError, match="unhashed.pt carries no valid content hash"):
        ckpt.load_checkpoint(str(tmp_path / "unhashed.pt"))
    edited = dict(record, metadata={"note": "edited after saving"})
    torch.save(edited, tmp_path / "edited.pt")  # the stored hash is the old one
    with pytest.raises(CheckpointError, match="edited.pt is corrupted: the sha256 of its"):
        ckpt.load_checkpoint(str(tmp_path / "edited.pt"))
    with pytest.raises(FileNotFoundError, match="absent.pt does not exist"):
        ckpt.load_checkpoint(str(tmp_path / "absent.pt"))
    with pytest.raises(CheckpointError, match="is not a regular file"):
        ckpt.load_checkpoint(str(tmp_path))


def test_older_format_is_upgraded_or_refused(tmp_path, monkeypatch):
    model = toy()
    path = str(tmp_path / "model.pt")
    ckpt.save_checkpoint(path, model)
    record = torch.load(path, weights_only=True)
    # a hypothetical format 0 that called the model record "network"
    old = dict(record, format_version=0, network=dict(record["model"],
                                                      **{"class": "toy_potential.ToyPotential"}))
    del old["model"], old["content_sha256"]
    torch.save(old, tmp_path / "old.pt")
    with pytest.warns(CheckpointWarning), \
            pytest.raises(CheckpointError, match="format 0, which this torch_pet cannot upgrade"):
        ckpt.load_checkpoint(str(tmp_path / "old.pt"))

    def upgrade_0_to_1(rec):
        rec["model"] = rec.pop("network")
        rec["format_version"] = 1
        return rec

    monkeypatch.setitem(ckpt.UPGRADES, 0, upgrade_0_to_1)
    with pytest.warns(CheckpointWarning, match="old.pt uses checkpoint format 0"):
        upgraded = ckpt.load_checkpoint(str(tmp_path / "old.pt"))
    assert upgraded["format_version"] == 2 and "content_sha256" not in upgraded
    # a format-1 import path of a user's class resolves to the class the user passes
    rebuilt = ckpt.build_model(upgraded["model"], extra_classes={"ToyPotential": ToyPotential})
    batch = Batch.from_data_list([one_methane()])
    torch.testing.assert_close(rebuilt(batch), model(batch))


def _check_reference(model, meta, dtype, **tolerance):
    data = Data(z=torch.tensor(meta["reference_z"]),
                pos=torch.tensor(meta["reference_pos"], dtype=dtype))
    out = energy_and_forces(model, data)
    assert out["energy"].item() == pytest.approx(meta["reference_energy"], **tolerance)
    torch.testing.assert_close(out["forces"], torch.tensor(meta["reference_forces"],
                                                           dtype=dtype))


def test_format_1_fixture_loads_with_a_warning_and_reproduces_its_reference():
    path = os.path.join(FIXTURES, "checkpoint_v1_pet.pt")
    with pytest.warns(CheckpointWarning, match="checkpoint_v1_pet.pt uses checkpoint format 1, "
                                               "which carries no content hash"):
        record = ckpt.load_checkpoint(path)
    assert record["format_version"] == 2 and record["model"]["class"] == "PET"
    assert record["model"]["species"] == [1, 6]
    assert record["model"]["hyperparameters"]["num_blocks"] == 2
    with pytest.warns(CheckpointWarning):
        model = ckpt.load_model(path)
    assert isinstance(model, PET) and next(model.parameters()).dtype == torch.float64
    torch.testing.assert_close(model.self_energies,
                               torch.tensor([[-13.25], [-60.5]], dtype=torch.float64))
    _check_reference(model, record["metadata"], torch.float64, abs=1e-9)


def test_format_2_fixture_verifies_its_hash_and_reproduces_its_reference(recwarn):
    path = os.path.join(FIXTURES, "checkpoint_v2_pet.pt")
    record = ckpt.load_checkpoint(path)  # verifies the stored sha256: pins the serialisation
    assert record["content_sha256"] == ckpt.content_hash(record)
    model, aux = ckpt.load_model(path), ckpt.load_model(path, aux=True)
    assert isinstance(model, PET) and aux.distance_only and model.num_blocks == 2
    _check_reference(model, record["metadata"], torch.float32, abs=1e-4)
    assert not [w for w in recwarn if issubclass(w.category, CheckpointWarning)]
