import json
import os
import subprocess
import sys

import pytest

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
