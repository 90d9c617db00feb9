"""Data-parallel training on CPU (gloo): environment parsing, misconfigured worlds, DDP with
the double backward of force training, and two processes training like one.

The multi-process tests start their ranks as subprocesses with the environment torchrun
gives them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and OMP_NUM_THREADS=1.
"""
import os
import socket
import subprocess
import tempfile
import time
import sys

import pytest
import torch

from torch_pet import cli
from torch_pet.checkpoint import load_checkpoint
from torch_pet.commands import TrainJob, train
from torch_pet.training import distributed as ddp
from torch_pet.training.distributed import DistributedSetupError, World

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TINY = ["--dataset", "methane", "--num-train", "16", "--num-val", "8", "--dtype", "float64",
        "--hidden-channels", "8", "--num-heads", "2", "--num-layers", "1", "--num-blocks",
        "1", "--ff-channels", "16", "--head-channels", "8", "--cutoff", "3.0", "--device",
        "cpu", "--no-progress", "--no-plot", "--lr", "1e-2", "--warmup-epochs", "0.5"]


# ----------------------------------------------------------------------------- environment
def test_torchrun_and_slurm_environments():
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node7",
           "MASTER_PORT": "29400"}
    assert ddp.world_from_env("auto", env) == World(1, 4, 1, "torchrun", "node7", 29400)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
             "SLURM_JOB_NODELIST": "gpu[003-006,011],cpu01", "SLURM_JOB_ID": "123456"}
    world = ddp.world_from_env("auto", slurm)
    assert world == World(5, 8, 1, "slurm", "gpu003", 20000 + 123456 % 20000)
    given = ddp.world_from_env("auto", {**slurm, "MASTER_ADDR": "h", "MASTER_PORT": "1234"})
    assert (given.master_addr, given.master_port) == ("h", 1234)
    assert ddp.world_from_env("auto", {}) == ddp.SINGLE
    assert ddp.world_from_env("auto", {"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == ddp.SINGLE
    assert ddp.world_from_env("none", env) == ddp.SINGLE
    assert ddp.first_host("a01") == "a01" and ddp.first_host("r[2-3]n[07,09]") == "r2n07"


@pytest.mark.parametrize("env, match", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
    ({"RANK": "0"}, "RANK=0 is set but WORLD_SIZE is not"),
    ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK=2 must be < WORLD_SIZE=2"),
    ({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK='x' is not an integer"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK is not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_PORT": "1"},
     "MASTER_ADDR is not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h",
      "MASTER_PORT": "99999"}, r"MASTER_PORT=99999 must be in \[1, 65535\]"),
])
def test_misconfigured_torchrun_world_is_named(env, match):
    with pytest.raises(DistributedSetupError, match=match):
        ddp.world_from_env("auto", env)


def test_misconfigured_slurm_world_is_named():
    with pytest.raises(DistributedSetupError, match="SLURM_PROCID=4 must be < SLURM_NTASKS=4"):
        ddp.world_from_env("slurm", {"SLURM_PROCID": "4", "SLURM_NTASKS": "4",
                                     "SLURM_LOCALID": "0", "SLURM_NODELIST": "n1"})
    with pytest.raises(DistributedSetupError, match="neither MASTER_ADDR nor a SLURM node"):
        ddp.world_from_env("slurm", {"SLURM_PROCID": "0", "SLURM_NTASKS": "2",
                                     "SLURM_LOCALID": "0"})
    with pytest.raises(DistributedSetupError, match="SLURM_NTASKS is not set"):
        ddp.world_from_env("slurm", {"SLURM_PROCID": "0"})
    with pytest.raises(ValueError, match="launcher must be one of"):
        ddp.world_from_env("mpi", {})


def test_cuda_with_fewer_gpus_than_local_ranks_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    world = World(3, 4, 2, "torchrun", "h", 1)
    with pytest.raises(DistributedSetupError, match="local rank 2 has no GPU: 2 visible"):
        ddp.device_for(world, "cuda", env={})
    with pytest.raises(DistributedSetupError, match="each process uses the GPU of its local"):
        ddp.device_for(world, "cuda:1", env={})
    assert ddp.device_for(World(1, 4, 1, "torchrun", "h", 1), "auto", env={}) == \
        torch.device("cuda", 1)
    # SLURM with one GPU per task (--gpus-per-task=1): that GPU is cuda:0
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ddp.device_for(World(3, 4, 1, "slurm", "h", 1), "cuda",
                          env={"CUDA_VISIBLE_DEVICES": "1"}) == torch.device("cuda", 0)
    assert ddp.device_for(world, "cpu", env={}) == torch.device("cpu")


def test_cli_names_a_misconfigured_world(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    assert cli.main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "WORLD_SIZE=2 is set but RANK is not" in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "config.yaml")


def test_trainer_needs_the_process_group_of_its_world(methane_small):
    from toy_potential import ToyPotential

    from torch_pet.training import Trainer

    train_set, val = methane_small
    with pytest.raises(ValueError, match="no matching process group is initialised"):
        Trainer(ToyPotential(), train_set, val, world=World(0, 2, 0, "torchrun", "h", 1))


# ----------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args, nproc: int = 2, timeout: float = 120.0):
    """Run ``python args...`` as ``nproc`` ranks with torchrun's environment.

    Output goes to files (a full pipe cannot block a rank), every rank is watched at once,
    and as soon as one rank fails the others are stopped and every rank's output is shown.
    """
    port = _free_port()
    procs, logs = [], []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
        log = tempfile.TemporaryFile(mode="w+")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT, text=True))
    deadline = time.monotonic() + timeout
    try:
        while any(proc.poll() is None for proc in procs):
            if any(proc.poll() not in (None, 0) for proc in procs) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    report = "\n".join(f"--- rank {rank} (exit {proc.returncode}):\n{out[-3000:]}"
                       for rank, (proc, out) in enumerate(zip(procs, outputs)))
    assert all(proc.returncode == 0 for proc in procs), f"a rank failed:\n{report}"
    return outputs


@pytest.mark.parametrize("find_unused", [False, True])
def test_ddp_synchronises_force_training_gradients(tmp_path, find_unused):
    """forces = -dE/dpos with create_graph=True inside the loss: DDP's all-reduced gradients
    equal those of one process on the whole batch (float64, round-off)."""
    out = tmp_path / "grads.pt"
    _launch([os.path.join(HERE, "ddp_grad_worker.py"), str(out), str(int(find_unused))])
    grads = torch.load(out, weights_only=True)
    reference, local, synced = grads["reference"], grads["local"], grads["synced"]
    assert reference.keys() == synced.keys()
    worst = max(float((synced[k] - reference[k]).abs().max()) for k in reference)
    print(f"DDP vs one process, force-training gradients: max |dgrad| = {worst:.3g}")
    assert worst < 1e-12, worst
    # rank 0's own gradients differ: the test would see missing synchronisation
    assert max(float((local[k] - reference[k]).abs().max()) for k in reference) > 1e-6


def _params(path):
    return load_checkpoint(str(path))["model"]["state_dict"]


def _max_diff(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max())
               for k in a if a[k].is_floating_point())


def test_two_processes_train_like_one_and_resume(tmp_path):
    """Two ranks of batch 4 == one process of batch 8 (float64, augmentation on); resuming
    the two-rank run from its last.pt continues like the single run."""
    two = tmp_path / "two"
    _launch(["-m", "torch_pet.cli", "train", *TINY, "--batch-size", "4", "--epochs", "2",
             "--out", str(two)])
    args = vars(cli.build_parser().parse_args(["train", *TINY, "--batch-size", "8",
                                               "--epochs", "2", "--out", str(tmp_path / "one"),
                                               "--launcher", "none"]))
    args.pop("command"), args.pop("config", None)
    one_job = cli.resolve_job(TrainJob, args)
    train(one_job)
    diff = _max_diff(_params(two / "last.pt"), _params(tmp_path / "one" / "last.pt"))
    print(f"two ranks vs one process after 2 epochs: max |dparam| = {diff:.3g}")
    assert diff < 1e-10
    history = load_checkpoint(str(two / "last.pt"))["trainer"]["history"]
    assert [r["train_structures"] for r in history] == [16, 16]
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 2
    assert sorted(os.listdir(two)) == ["best.pt", "config.yaml", "last.pt", "metrics.jsonl"]

    _launch(["-m", "torch_pet.cli", "train", *TINY, "--batch-size", "4", "--epochs", "3",
             "--resume", "--out", str(two)])
    train(one_job.replace(training=one_job.training.replace(epochs=3), resume=True))
    diff = _max_diff(_params(two / "last.pt"), _params(tmp_path / "one" / "last.pt"))
    print(f"after resuming to 3 epochs: max |dparam| = {diff:.3g}")
    assert diff < 1e-10
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 3
