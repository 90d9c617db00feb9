"""Data-parallel training over several processes: the process group from torchrun's or
SLURM's environment, DistributedDataParallel, collectives and rank-0-only I/O.

* ``torchrun --nproc_per_node=N -m torch_pet.cli train ...`` sets ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
* ``srun torch-pet train ...`` sets ``SLURM_PROCID``, ``SLURM_NTASKS`` (or
  ``SLURM_STEP_NUM_TASKS``) and ``SLURM_LOCALID``; the master is ``MASTER_ADDR`` or the first
  host of ``SLURM_STEP_NODELIST``/``SLURM_JOB_NODELIST``/``SLURM_NODELIST``, the port
  ``MASTER_PORT`` or ``20000 + SLURM_JOB_ID % 20000``.

NCCL on CUDA (process ``LOCAL_RANK`` on ``cuda:LOCAL_RANK``), gloo on CPU. A world that
cannot work (``WORLD_SIZE`` without ``RANK``, ``RANK >= WORLD_SIZE``, more local ranks than
GPUs, ...) raises :class:`DistributedSetupError` (a ``ValueError``) before any connection.
"""
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import List, Mapping, Optional, Sequence

import torch
import torch.distributed as dist

__all__ = ["World", "SINGLE", "LAUNCHERS", "DistributedSetupError", "world_from_env",
           "first_host", "device_for", "process_group", "current_world", "wrap_model",
           "all_reduce_sum", "broadcast_", "agree"]

LAUNCHERS = ("auto", "torchrun", "slurm", "none")
_TIMEOUT = timedelta(minutes=30)


class DistributedSetupError(ValueError):
    """The environment describes a world of processes that cannot work."""


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on
    its node, how they were started and where rank 0 listens."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"
    master_addr: Optional[str] = None
    master_port: Optional[int] = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, plots, progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = World()


def _int(env: Mapping[str, str], name: str, launcher: str, minimum: int = 0) -> int:
    text = env.get(name)
    if text is None or text.strip() == "":
        raise DistributedSetupError(f"{launcher}: environment variable {name} is not set")
    try:
        value = int(text)
    except ValueError:
        raise DistributedSetupError(f"{launcher}: environment variable {name}={text!r} is not "
                                    "an integer") from None
    if value < minimum:
        raise DistributedSetupError(f"{launcher}: environment variable {name}={value} must be "
                                    f">= {minimum}")
    return value


def _check_ranks(rank: int, world_size: int, names: Sequence[str], launcher: str) -> None:
    if rank >= world_size:
        raise DistributedSetupError(f"{launcher}: {names[0]}={rank} must be < {names[1]}="
                                    f"{world_size} (ranks count from 0)")


def _port(text: str, name: str, launcher: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise DistributedSetupError(f"{launcher}: {name}={text!r} is not a port number") \
            from None
    if not 1 <= port <= 65535:
        raise DistributedSetupError(f"{launcher}: {name}={port} must be in [1, 65535]")
    return port


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``"gpu[003-008,011],cpu01"`` -> ``"gpu003"``."""
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    first = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0],
                   nodelist[:end].strip())
    if not first or "[" in first or "]" in first:
        raise DistributedSetupError(f"slurm: cannot read a host name from the node list "
                                    f"{nodelist!r}; set MASTER_ADDR")
    return first


def _torchrun(env: Mapping[str, str]) -> World:
    launcher = "torchrun environment"
    given = [k for k in ("RANK", "WORLD_SIZE") if env.get(k, "").strip()]
    if len(given) == 1:
        missing = "RANK" if given[0] == "WORLD_SIZE" else "WORLD_SIZE"
        raise DistributedSetupError(
            f"{launcher}: {given[0]}={env[given[0]]} is set but {missing} is not; start the "
            "processes with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and "
            "MASTER_PORT), or unset {0} to train in one process".format(given[0]))
    world_size = _int(env, "WORLD_SIZE", launcher, minimum=1)
    rank = _int(env, "RANK", launcher)
    local_rank = _int(env, "LOCAL_RANK", launcher)
    _check_ranks(rank, world_size, ("RANK", "WORLD_SIZE"), launcher)
    if world_size == 1:
        return World(launcher="torchrun")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name, "").strip():
            raise DistributedSetupError(f"{launcher}: {name} is not set (torchrun sets it; by "
                                        "hand: the host and a free port of rank 0)")
    return World(rank, world_size, local_rank, "torchrun", env["MASTER_ADDR"].strip(),
                 _port(env["MASTER_PORT"], "MASTER_PORT", launcher))


def _slurm_tasks(env: Mapping[str, str]) -> Optional[str]:
    return env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS")


def _slurm(env: Mapping[str, str]) -> World:
    launcher = "slurm environment"
    tasks = _slurm_tasks(env)
    if tasks is None:
        raise DistributedSetupError(f"{launcher}: SLURM_NTASKS is not set; start the "
                                    "processes with srun inside an allocation")
    world_size = _int({"SLURM_NTASKS": tasks}, "SLURM_NTASKS", launcher, minimum=1)
    rank = _int(env, "SLURM_PROCID", launcher)
    local_rank = _int(env, "SLURM_LOCALID", launcher)
    _check_ranks(rank, world_size, ("SLURM_PROCID", "SLURM_NTASKS"), launcher)
    if world_size == 1:
        return World(launcher="slurm")
    addr = env.get("MASTER_ADDR", "").strip()
    if not addr:
        nodelist = next((env[k] for k in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST",
                                          "SLURM_NODELIST") if env.get(k)), None)
        if nodelist is None:
            raise DistributedSetupError(f"{launcher}: neither MASTER_ADDR nor a SLURM node "
                                        "list (SLURM_JOB_NODELIST) is set")
        addr = first_host(nodelist)
    if env.get("MASTER_PORT", "").strip():
        port = _port(env["MASTER_PORT"], "MASTER_PORT", launcher)
    else:
        job = env.get("SLURM_JOB_ID", "").strip()
        port = 20000 + int(job) % 20000 if job.isdigit() else 29500
    return World(rank, world_size, local_rank, "slurm", addr, port)


def world_from_env(launcher: str = "auto", env: Optional[Mapping[str, str]] = None) -> World:
    """The :class:`World` described by the environment.

    Args:
        launcher: ``"auto"`` (torchrun's variables when ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
            is set, else SLURM's when ``SLURM_PROCID`` is set with more than one task, else
            one process), ``"torchrun"``, ``"slurm"`` or ``"none"`` (one process, the
            environment ignored).
        env: the variables (default ``os.environ``).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"world_from_env: launcher must be one of {LAUNCHERS}, got "
                         f"{launcher!r}")
    env = os.environ if env is None else env
    if launcher == "auto":
        if any(env.get(k, "").strip() for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
            launcher = "torchrun"
        elif env.get("SLURM_PROCID", "").strip() and (_slurm_tasks(env) or "1").strip() != "1":
            launcher = "slurm"
        else:
            return SINGLE
    if launcher == "none":
        return SINGLE
    return _torchrun(env) if launcher == "torchrun" else _slurm(env)


def device_for(world: World, device: str = "auto",
               env: Optional[Mapping[str, str]] = None) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` (NCCL) or the CPU (gloo).

    ``"auto"`` picks CUDA when available. Under more than one process a GPU index may not be
    given (each process takes its local rank's GPU); a local rank without its own GPU raises.
    Under SLURM with one visible GPU per task (``--gpus-per-task=1``) that GPU is used.
    """
    from torch_pet.config import resolve_device

    resolved = resolve_device(device)
    if not world.distributed or resolved.type != "cuda":
        return resolved
    if device not in ("auto", "cuda"):
        raise DistributedSetupError(f"device is {device!r}, but with {world.world_size} "
                                    "processes each process uses the GPU of its local rank; "
                                    "give --device cuda (or auto)")
    env = os.environ if env is None else env
    count = torch.cuda.device_count()
    visible = [v for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if world.launcher == "slurm" and count == 1 and len(visible) == 1:
        return torch.device("cuda", 0)
    if world.local_rank >= count:
        raise DistributedSetupError(
            f"CUDA requested, but local rank {world.local_rank} has no GPU: {count} visible "
            "on this node; start at most that many processes per node (torchrun "
            "--nproc_per_node, srun --ntasks-per-node) or train on --device cpu")
    return torch.device("cuda", world.local_rank)


@contextmanager
def process_group(world: World, device: torch.device):
    """Join the process group of ``world`` for the ``with`` block (nothing for one
    process); NCCL for CUDA devices, gloo otherwise."""
    if not world.distributed:
        yield
        return
    if dist.is_initialized():
        raise DistributedSetupError("a torch.distributed process group is already "
                                    "initialised in this process")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    host = f"[{world.master_addr}]" if ":" in world.master_addr else world.master_addr
    dist.init_process_group(backend, init_method=f"tcp://{host}:{world.master_port}",
                            rank=world.rank, world_size=world.world_size, timeout=_TIMEOUT)
    try:
        yield
        # every rank reaches the end before any tears down: rank 0 hosts the rendezvous
        # store, and a peer still shutting down after it exited could wait on it forever
        dist.barrier()
    finally:
        dist.destroy_process_group()


def current_world() -> World:
    """The world of the initialised process group, or :data:`SINGLE`."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    rank, size = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
    return World(rank, size, local, "initialised") if size > 1 else SINGLE


def _comm_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(values: Sequence[float], device: torch.device) -> List[float]:
    """Sum ``values`` over the processes (float64); the same list on every rank."""
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_comm_device(device))
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def agree(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is True on any rank (stop decisions taken together)."""
    return all_reduce_sum([float(flag)], device)[0] > 0


def broadcast_(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank 0's (in place; returns it)."""
    comm = tensor.detach().to(_comm_device(device)).contiguous()
    dist.broadcast(comm, src=0)
    with torch.no_grad():
        tensor.copy_(comm.to(tensor.device))
    return tensor


def wrap_model(model: torch.nn.Module, device: torch.device,
               unused_parameters: bool) -> torch.nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (parameters and
    buffers are broadcast from rank 0 at construction).

    Force training differentiates twice (forces = -dE/dpos with ``create_graph=True``
    inside the loss): the first derivative is taken with ``torch.autograd.grad`` on the
    positions only, which runs no gradient-accumulation hook of a parameter, so DDP's
    reducer all-reduces each parameter gradient exactly once, in ``loss.backward()``,
    with both the energy and the force contributions summed (tests/training/
    test_distributed.py checks this against one process). ``find_unused_parameters`` is set
    only when a parameter takes no part in the loss (``unused_parameters``, probed by the
    Trainer), which DDP would otherwise report as an error at the next step.
    """
    import inspect

    ids = [device.index] if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel
    # buffers (self energies) are equal on every rank: synchronised at construction only
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers"
               in inspect.signature(ddp.__init__).parameters else "broadcast_buffers")
    # a [1, C] parameter may get a gradient with another (equivalent) stride on its size-1
    # dimension; DDP copies it into its bucket correctly but warns on every step
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return ddp(model, device_ids=ids, output_device=device.index if ids else None,
               find_unused_parameters=unused_parameters, **{no_sync: False})
