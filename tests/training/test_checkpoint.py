"""Checkpoints: round trips, format upgrades, stored fixtures, integrity and the registry.

The files crafted here play an attacker (a record naming ``os.system``) or a bad disk
(flipped bytes); docs/security.md says what is trusted and what is verified.
"""
import contextlib
import importlib.util
import os
import pickle
import re
import struct
import time
import zipfile

import pytest
import torch
from toy_potential import ToyPotential
from torch_geometric.data import Batch, Data

import torch_pet.checkpoint as ckpt
from torch_pet import PET
from torch_pet.checkpoint import CheckpointError, CheckpointWarning
from torch_pet.nn.derivatives import energy_and_forces

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


def _toy(seed=0):
    torch.manual_seed(seed)
    model = ToyPotential(species=(1, 6), hidden_channels=5)
    with torch.no_grad():
        model.self_energies.copy_(torch.tensor([[-13.0], [-40.0]]))
    return model


def _tiny_pet(seed=0, dtype=torch.float32, **kwargs):
    torch.manual_seed(seed)
    options = dict(species=[1, 6], hidden_channels=8, num_heads=2, num_layers=1, num_blocks=1,
                   ff_channels=16, head_channels=8, cutoff=4.0)
    return PET(**{**options, **kwargs}).to(dtype)


def _one_methane(dtype=torch.float32):
    from torch_pet.datasets import DistortedMethane
    return DistortedMethane("test", num_structures=1, dtype=dtype)[0]


def _rewrite(path, record, rehash=True):
    """torch.save ``record``, with a freshly computed content hash as an attacker would."""
    record = dict(record)
    if rehash:
        record["content_sha256"] = ckpt.content_hash(record)
    torch.save(record, path)
    return str(path)


# --------------------------------------------------------------------------- round trips
def test_round_trip_restores_model_hyperparameters_and_optimizer(tmp_path, methane_small):
    model = _toy()
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
    ckpt.save_checkpoint(path, _toy())
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
    model, aux = _tiny_pet(1, dtype), _tiny_pet(2, dtype, distance_only=True)
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
        data = _one_methane(dtype)
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
        ckpt.save_checkpoint(str(tmp_path / "x.pt"), _toy(), metadata={"bad": b"x"})
    assert not os.path.exists(tmp_path / "x.pt")


# --------------------------------------------------------------------------- formats
def test_newer_bare_and_foreign_files_fail_clearly(tmp_path):
    path = str(tmp_path / "model.pt")
    ckpt.save_checkpoint(path, _toy())
    record = torch.load(path, weights_only=True)

    newer = _rewrite(tmp_path / "newer.pt", dict(record, format_version=3))
    with pytest.raises(CheckpointError, match=r"newer.pt was written with checkpoint format 3, "
                                              r"newer than the format 2 .* upgrade torch_pet"):
        ckpt.load_checkpoint(newer)
    torch.save(_toy().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="bare.pt holds a bare state_dict without"):
        ckpt.load_checkpoint(str(tmp_path / "bare.pt"))
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt is not a torch_pet checkpoint"):
        ckpt.load_checkpoint(str(tmp_path / "other.pt"))
    damaged = _rewrite(tmp_path / "damaged.pt",
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
    model = _toy()
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
    batch = Batch.from_data_list([_one_methane()])
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


# --------------------------------------------------------------------------- attacks
ATTACKS = [("os.system", lambda s: {"command": f"touch {s}"}),
           ("builtins.eval", lambda s: {"source": f"open({str(s)!r}, 'w')"}),
           ("subprocess.Popen", lambda s: {"args": ["touch", str(s)]})]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("target,make_hyperparameters", ATTACKS)
def test_a_record_naming_a_callable_runs_nothing(tmp_path, capsys, version, target,
                                                 make_hyperparameters):
    """Through load_model, PETCalculator(path) and ``torch-pet evaluate``; format 1 (the
    old loader imported and called the named class) and format 2 with a valid hash."""
    from torch_pet import cli

    sentinel = tmp_path / "pwned"
    path = str(tmp_path / "evil.pt")
    ckpt.save_checkpoint(path, _tiny_pet())
    record = torch.load(path, weights_only=True)
    record["model"] = dict(record["model"], **{"class": target},
                           hyperparameters=make_hyperparameters(sentinel))
    if version == 1:
        record["format_version"] = 1
        del record["content_sha256"]
    _rewrite(path, record, rehash=version == 2)
    warns = (lambda: pytest.warns(CheckpointWarning)) if version == 1 else contextlib.nullcontext
    message = (rf"evil\.pt names the model class '{re.escape(target)}', which is not one of "
               "torch_pet's models")
    with warns(), pytest.raises(CheckpointError, match=message):
        ckpt.load_model(path)
    with warns():
        assert cli.main(["evaluate", "--checkpoint", path, "--no-ecse"]) == 2
    printed = capsys.readouterr().err
    assert re.search(message, printed) and printed.count("\n") == 1, printed  # no traceback
    if importlib.util.find_spec("ase") is not None:
        from torch_pet.calculator import PETCalculator
        with warns(), pytest.raises(CheckpointError, match=message):
            PETCalculator(path)
    time.sleep(0.2 if target == "subprocess.Popen" else 0.0)  # a started process would run
    assert not sentinel.exists()


class _Boom:
    def __reduce__(self):
        return os.system, ("touch " + os.environ["TORCH_PET_SENTINEL"],)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_calls_a_function_is_refused(tmp_path, monkeypatch):
    sentinel = tmp_path / "pwned"
    monkeypatch.setenv("TORCH_PET_SENTINEL", str(sentinel))
    torch.save({"format": ckpt.FORMAT, "boom": _Boom()}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Boom(), f)
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(CheckpointError, match=rf"{name} cannot be read"):
            ckpt.load_checkpoint(str(tmp_path / name))
    assert not sentinel.exists()


def test_hyperparameters_that_are_not_plain_data_or_do_not_fit_are_refused(tmp_path):
    path = str(tmp_path / "pet.pt")
    ckpt.save_checkpoint(path, _tiny_pet())
    record = torch.load(path, weights_only=True)
    cases = {
        "tensor": ({"species": torch.tensor([1, 6])}, r"species'\] is a Tensor; hyperpar"),
        "unknown": ({"bogus": 1}, "PET rejects the stored hyperparameters"),
        "shape": ({"hidden_channels": 16}, "has shape .* but PET with the stored"),
    }
    for name, (change, match) in cases.items():
        bad = dict(record, model=dict(record["model"], hyperparameters=dict(
            record["model"]["hyperparameters"], **change)))
        with pytest.raises(CheckpointError, match=rf"{name}\.pt: .*{match}"):
            ckpt.load_model(_rewrite(tmp_path / f"{name}.pt", bad))
    # a user's class: the same weights, but hyperparameters that claim 4 GB of buffers
    ckpt.save_checkpoint(path, _Table())
    record = torch.load(path, weights_only=True)
    bad = dict(record, model=dict(record["model"], hyperparameters={"size": 10 ** 9}))
    with pytest.raises(CheckpointError, match=r"memory.pt: _Table with the stored hyperparam"
                                              r"eters would hold 4000000\d+ bytes, far more"):
        ckpt.load_model(_rewrite(tmp_path / "memory.pt", bad), extra_classes={"_Table": _Table})
    bad = dict(record, model=dict(record["model"], dtype="load"))
    with pytest.raises(CheckpointError, match="dtype.pt is damaged: its model dtype 'load'"):
        ckpt.load_model(_rewrite(tmp_path / "dtype.pt", bad))


class _Table(torch.nn.Module):
    def __init__(self, size=4):
        super().__init__()
        self.size = size
        self.lin = torch.nn.Linear(2, 1)
        self.register_buffer("table", torch.zeros(size), persistent=False)


# --------------------------------------------------------------------------- damaged files
def _payloads(raw: bytes, path: str):
    """(name, start, end) of every member of the zip file ``path`` (raw bytes ``raw``)."""
    with zipfile.ZipFile(path) as z:
        out = []
        for info in z.infolist():
            names, extra = struct.unpack("<HH", raw[info.header_offset + 26:
                                                    info.header_offset + 30])
            start = info.header_offset + 30 + names + extra
            out.append((info.filename, start, start + info.compress_size))
    return out


def test_flipped_bytes_never_load_silently(tmp_path):
    model = _tiny_pet(dtype=torch.float64)
    path = str(tmp_path / "good.pt")
    ckpt.save_checkpoint(path, model, metadata={"note": "x" * 50})
    good = ckpt.load_checkpoint(path)["content_sha256"]
    raw = open(path, "rb").read()
    payloads = _payloads(raw, path)
    must_fail = [0, len(raw) - 22]  # signatures: first local header, end of central dir.
    for name, start, end in payloads:
        if name.rsplit("/", 1)[-1].isdigit():  # tensor data: first, middle and last byte
            must_fail += [start, (start + end) // 2, end - 1]
    pickle_start = next(start for name, start, _ in payloads if name.endswith("data.pkl"))
    must_fail.append(pickle_start)
    sweep = list(range(0, len(raw), 97))
    failed = 0
    for position in sorted(set(must_fail + sweep)):
        damaged = bytearray(raw)
        damaged[position] ^= 0x5A
        bad = str(tmp_path / f"flip{position}.pt")
        with open(bad, "wb") as f:
            f.write(damaged)
        try:
            record = ckpt.load_checkpoint(bad)
        except CheckpointError as err:
            assert f"flip{position}.pt" in str(err)
            failed += 1
            continue
        # a flip in bytes the reader ignores (zip timestamps, padding) changes no content
        assert position not in must_fail, position
        assert record["content_sha256"] == good == ckpt.content_hash(record)
        loaded = ckpt.build_model(record["model"])
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                      model.state_dict().values()))
        os.remove(bad)
    assert failed >= len(set(must_fail))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_truncated_empty_and_foreign_files_raise_one_error_naming_the_file(tmp_path):
    from torch_pet import cli

    path = str(tmp_path / "good.pt")
    ckpt.save_checkpoint(path, _tiny_pet())
    raw = open(path, "rb").read()
    files = {f"cut{n}.pt": raw[:n] for n in (1, 100, len(raw) // 2, len(raw) - 1)}
    files["empty.pt"] = b""
    files["notes.pt"] = b"these are my notes, not a checkpoint\n"
    files["random.pt"] = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes()
    files["plain.pkl"] = pickle.dumps({"format": ckpt.FORMAT, "format_version": 2})
    for name, content in files.items():
        with open(tmp_path / name, "wb") as f:
            f.write(content)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "a zip of something else")
    files["other.zip"] = None
    torch.save(_tiny_pet().state_dict(), tmp_path / "bare.pt")
    files["bare.pt"] = None
    for name in files:
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            ckpt.load_checkpoint(str(tmp_path / name))
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        ckpt.load_checkpoint(str(tmp_path / "empty.pt"))
    with pytest.raises(CheckpointError, match=r"cut100\.pt cannot be read: it is truncated"):
        ckpt.load_checkpoint(str(tmp_path / "cut100.pt"))
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "random.pt")]) == 2
