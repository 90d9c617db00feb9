import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from torch_pet import cli

TINY = ["--hidden-channels", "8", "--num-heads", "2", "--num-layers", "1", "--num-blocks", "1",
        "--ff-channels", "16", "--head-channels", "8", "--no-progress"]


def test_console_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "torch_pet.cli", "--help"],
                            capture_output=True, text=True, check=True)
    for command in ("train", "evaluate", "main"):
        assert command in result.stdout


def test_train_then_evaluate_y0_and_ys(tmp_path, capsys):
    out = str(tmp_path / "run")
    code = cli.main(["train", "--dataset", "methane", "--num-train", "16", "--num-val", "8",
                     "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--out", out, *TINY])
    assert code == 0
    for name in ("best.pt", "last.pt", "metrics.jsonl", "learning_curve.png"):
        assert os.path.exists(os.path.join(out, name))
    code = cli.main(["evaluate", "--checkpoint", os.path.join(out, "best.pt"), "--num-test",
                     "6", "--num-rotations", "2", "--num-rotation-structures", "3",
                     "--ecse-prune-steps", "0", "4", "--out", out])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("y0 (PET)", "yS (ECSE, all frames)", "yS (ECSE, pruned x4)"):
        assert f"| {name} |" in printed
    y0, *ys_rows = json.load(open(os.path.join(out, "results.json")))
    assert y0["num_structures"] == 6
    for ys in ys_rows:
        assert ys["forces_mae"] > 0
        # ECSE makes the barely trained backbone exact: float64 round-off
        assert ys["rotation_forces_max"] < 1e-9 and ys["rotation_energy_max"] < 1e-9
        assert y0["rotation_forces_max"] > 1e3 * ys["rotation_forces_max"]


def test_resume_through_the_cli(tmp_path):
    out = str(tmp_path / "run")
    args = ["train", "--num-train", "8", "--num-val", "4", "--batch-size", "4", "--out", out, *TINY]
    assert cli.main(args + ["--epochs", "1"]) == 0
    assert cli.main(args + ["--epochs", "2", "--resume"]) == 0
    lines = open(os.path.join(out, "metrics.jsonl")).read().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_train_on_a_periodic_extxyz_file(tmp_path):
    ase = pytest.importorskip("ase")
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT

    frames = []
    for seed in range(10):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.1, seed=seed)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    path = str(tmp_path / "cu.xyz")
    ase.io.write(path, frames, format="extxyz")
    out = str(tmp_path / "run")
    assert cli.main(["train", "--dataset", "extxyz", "--data", path, "--epochs", "1",
                     "--batch-size", "4", "--cutoff", "3.0", "--out", out, *TINY]) == 0
    record = json.loads(open(os.path.join(out, "metrics.jsonl")).read().splitlines()[0])
    assert record["val_forces_mae"] > 0 and record["val_energy_mae_per_atom"] >= 0


def test_bad_input_gives_an_error_message_and_exit_code(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "extxyz", "--out", str(tmp_path)]) == 2
    assert "--data is required: give the path of the extended-XYZ file" in capsys.readouterr().err
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "absent.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "mnist"])


def test_main_job_quick(tmp_path, capsys):
    out = str(tmp_path / "main")
    code = cli.main(["main", "--out", out, "--num-train", "16", "--num-val", "8", "--epochs", "1",
                     "--num-test", "4", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "force MAE of yS (ECSE, all frames) vs y0 (PET)" in printed
    assert "force MAE of yS (ECSE, pruned x4) vs y0 (PET)" in printed
    for name in ("results.md", "results.json", "results.png", "learning_curve.png", "best.pt",
                 os.path.join("aux", "best.pt")):
        assert os.path.exists(os.path.join(out, name)), name


# ----------------------------------------------------------------------------- validation
def _fails(capsys, argv, *needles):
    """The command exits with code 2 and one line on stderr containing every needle."""
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's own checks (types, choices)
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command, option, value", [
    ("train", "--epochs", "0"), ("train", "--epochs", "-2"), ("train", "--epochs", "1.5"),
    ("train", "--batch-size", "0"), ("train", "--num-train", "0"), ("train", "--num-train", "-5"),
    ("train", "--num-val", "0"), ("train", "--num-test", "-1"), ("train", "--lr", "0"),
    ("train", "--lr", "-1e-3"), ("train", "--lr", "nan"), ("train", "--lr", "inf"),
    ("train", "--decay-factor", "0"), ("train", "--decay-factor", "1.5"),
    ("train", "--warmup-epochs", "-1"), ("train", "--decay-every-epochs", "0"),
    ("train", "--grad-clip", "0"), ("train", "--budget-s", "-1"), ("train", "--seed", "-1"),
    ("train", "--hidden-channels", "0"), ("train", "--cutoff", "-1"),
    ("train", "--energy-weight", "-0.1"), ("train", "--num-train", "99999"),
    ("evaluate", "--num-test", "0"), ("evaluate", "--num-rotations", "0"),
    ("evaluate", "--num-rotation-structures", "-1"), ("evaluate", "--batch-size", "0"),
    ("evaluate", "--ecse-prune-steps", "-1"),
    ("main", "--epochs", "0"), ("main", "--num-train", "-1"), ("main", "--num-test", "0"),
])
def test_every_bad_numeric_option_exits_2_naming_it(tmp_path, capsys, command, option, value):
    argv = [command, option, value, "--out", str(tmp_path / "run")]
    if command == "evaluate":
        argv += ["--checkpoint", str(tmp_path / "absent.pt")]
    _fails(capsys, argv, option)
    assert not os.path.exists(tmp_path / "run" / "last.pt")


def test_bad_devices_files_and_out_dirs_exit_2(tmp_path, capsys):
    _fails(capsys, ["train", "--device", "gpu", "--out", str(tmp_path)], "--device", "cuda:N")
    if not torch.cuda.is_available():
        _fails(capsys, ["train", "--device", "cuda", "--out", str(tmp_path)],
               "--device", "CUDA is not available")
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a directory")
    _fails(capsys, ["train", "--out", str(a_file)], "--out", "is an existing file")
    _fails(capsys, ["main", "--out", str(a_file)], "--out", "is an existing file")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    _fails(capsys, ["evaluate", "--checkpoint", str(garbage)], str(garbage))
    _fails(capsys, ["evaluate", "--checkpoint", str(tmp_path)], "--checkpoint", "directory")
    _fails(capsys, ["evaluate"], "--checkpoint is required")
    _fails(capsys, ["train", "--dataset", "extxyz", "--data", str(tmp_path / "absent.xyz"),
                    "--out", str(tmp_path / "run")], "--data", "does not exist")
    bad_xyz = tmp_path / "bad.xyz"
    bad_xyz.write_text("3\nnot an extxyz comment line\nH 0 0\n")
    _fails(capsys, ["train", "--dataset", "extxyz", "--data", str(bad_xyz),
                    "--out", str(tmp_path / "run")], "--data", str(bad_xyz))


def test_every_option_has_a_help_text():
    parser = cli.build_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subparsers) == 1 and set(subparsers[0].choices) == {"train", "evaluate", "main",
                                                                   "preprocess"}
    for name, sub in subparsers[0].choices.items():
        options = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        assert len(options) > 5, name
        for action in options:
            assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 10, \
                (name, action.option_strings)


def test_train_from_a_run_file_with_overrides(tmp_path, capsys):
    yaml = pytest.importorskip("yaml")
    out = tmp_path / "run"
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "out": str(out),
        "data": {"dataset": "methane", "num_train": 8, "num_val": 4},
        "model": {"hidden_channels": 8, "num_heads": 2, "num_layers": 1, "num_blocks": 1,
                  "ff_channels": 16, "head_channels": 8},
        "training": {"epochs": 5, "batch_size": 4, "lr": "1e-3", "progress": False,
                     "plot": False}}))
    assert cli.main(["train", "--config", str(run_file), "--epochs", "2"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the command line overrides the file's 5 epochs
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["training"]["epochs"] == 2 and resolved["training"]["lr"] == 1e-3
    assert resolved["model"]["species"] == [1, 6] and resolved["data"]["num_train"] == 8
    from torch_pet.commands import TrainJob

    job = TrainJob.from_dict(resolved)  # the resolved file is itself a valid run file
    assert job.model.hidden_channels == 8 and job.training.forces_key == "forces"
    from torch_pet.checkpoint import load_model

    assert load_model(str(out / "best.pt")).hyperparameters == resolved["model"]

    run_file.write_text("training:\n  epoch: 3\n")
    _fails(capsys, ["train", "--config", str(run_file)], str(run_file), "training.epoch")
    run_file.write_text("training:\n  lr: -1.0\n")
    _fails(capsys, ["train", "--config", str(run_file)], "'training.lr' in", "positive")
    run_file.write_text("training: [1, 2\n")
    _fails(capsys, ["train", "--config", str(run_file)], "--config", "not valid YAML")
    _fails(capsys, ["train", "--config", str(tmp_path / "absent.yaml")], "--config")
