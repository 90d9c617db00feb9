"""Checkpoints from strangers and from bad disks: crafted records that name callables,
pickles that call functions, hyperparameters that are not plain data or claim memory,
flipped bytes, truncated, empty and foreign files (see docs/security.md).
"""
import contextlib
import importlib.util
import os
import pickle
import re
import time
import zipfile

import pytest
import torch
from checkpoint_files import payloads, rewrite, tiny_pet, toy

import torch_pet.checkpoint as ckpt
from torch_pet.checkpoint import CheckpointError, CheckpointWarning


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
    ckpt.save_checkpoint(path, tiny_pet())
    record = torch.load(path, weights_only=True)
    record["model"] = dict(record["model"], **{"class": target},
                           hyperparameters=make_hyperparameters(sentinel))
    if version == 1:
        record["format_version"] = 1
        del record["content_sha256"]
    rewrite(path, record, rehash=version == 2)
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
    ckpt.save_checkpoint(path, tiny_pet())
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
            ckpt.load_model(rewrite(tmp_path / f"{name}.pt", bad))
    # a user's class: the same weights, but hyperparameters that claim 4 GB of buffers
    ckpt.save_checkpoint(path, _Table())
    record = torch.load(path, weights_only=True)
    bad = dict(record, model=dict(record["model"], hyperparameters={"size": 10 ** 9}))
    with pytest.raises(CheckpointError, match=r"memory.pt: _Table with the stored hyperparam"
                                              r"eters would hold 4000000\d+ bytes, far more"):
        ckpt.load_model(rewrite(tmp_path / "memory.pt", bad), extra_classes={"_Table": _Table})
    bad = dict(record, model=dict(record["model"], dtype="load"))
    with pytest.raises(CheckpointError, match="dtype.pt is damaged: its model dtype 'load'"):
        ckpt.load_model(rewrite(tmp_path / "dtype.pt", bad))


class _Table(torch.nn.Module):
    def __init__(self, size=4):
        super().__init__()
        self.size = size
        self.lin = torch.nn.Linear(2, 1)
        self.register_buffer("table", torch.zeros(size), persistent=False)


# --------------------------------------------------------------------------- damaged files
def test_flipped_bytes_never_load_silently(tmp_path):
    model = tiny_pet(dtype=torch.float64)
    path = str(tmp_path / "good.pt")
    ckpt.save_checkpoint(path, model, metadata={"note": "x" * 50})
    good = ckpt.load_checkpoint(path)["content_sha256"]
    raw = open(path, "rb").read()
    members = payloads(raw, path)
    must_fail = [0, len(raw) - 22]  # signatures: first local header, end of central dir.
    for name, start, end in members:
        if name.rsplit("/", 1)[-1].isdigit():  # tensor data: first, middle and last byte
            must_fail += [start, (start + end) // 2, end - 1]
    pickle_start = next(start for name, start, _ in members if name.endswith("data.pkl"))
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
    ckpt.save_checkpoint(path, tiny_pet())
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
    torch.save(tiny_pet().state_dict(), tmp_path / "bare.pt")
    files["bare.pt"] = None
    for name in files:
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            ckpt.load_checkpoint(str(tmp_path / name))
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        ckpt.load_checkpoint(str(tmp_path / "empty.pt"))
    with pytest.raises(CheckpointError, match=r"cut100\.pt cannot be read: it is truncated"):
        ckpt.load_checkpoint(str(tmp_path / "cut100.pt"))
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "random.pt")]) == 2


def test_resuming_from_a_damaged_last_checkpoint_fails_clearly(tmp_path, methane_small):
    from torch_pet.training import Trainer, TrainingConfig

    config = TrainingConfig(epochs=1, batch_size=8, progress=False, plot=False)
    train, val = methane_small
    Trainer(toy(), train, val, config, str(tmp_path)).fit()
    last = str(tmp_path / "last.pt")
    raw = bytearray(open(last, "rb").read())
    name, start, end = next(p for p in payloads(bytes(raw), last)
                            if p[0].rsplit("/", 1)[-1].isdigit() and p[2] - p[1] >= 16)
    raw[(start + end) // 2] ^= 0x01  # one bit of one weight
    with open(last, "wb") as f:
        f.write(raw)
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupted: the sha256"):
        Trainer(toy(), train, val, TrainingConfig(epochs=2, batch_size=8, progress=False,
                                                   plot=False), str(tmp_path), resume=True)


def test_an_unreadable_file_says_so(tmp_path, monkeypatch):
    path = str(tmp_path / "locked.pt")
    ckpt.save_checkpoint(path, tiny_pet())

    def refuse(*args, **kwargs):  # what a file without read permission gives (tests run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(CheckpointError, match=r"locked\.pt cannot be opened \(PermissionError: "
                                              "Permission denied\\); check its permissions"):
        ckpt.load_checkpoint(path)
