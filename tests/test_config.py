"""Typed configs: coercion and checks, YAML round trips, config -> CLI options -> config."""
import dataclasses
import inspect
import math

import pytest
import torch

from torch_pet.commands import EvaluateJob, MainJob, TrainJob
from torch_pet.config import OptionError, OptionTypeError, UnknownKeyError, resolve_device
from torch_pet.datasets import DataConfig
from torch_pet.ecse.options import FrameOptions
from torch_pet.nn.pet_config import PETConfig
from torch_pet.training.config import TrainingConfig, learning_rate_factor

yaml = pytest.importorskip("yaml")


@pytest.mark.parametrize("cls, changes, match", [
    (TrainingConfig, dict(epochs=0), r"epochs must be an integer >= 1, got 0"),
    (TrainingConfig, dict(epochs=-3), r"epochs must be an integer >= 1"),
    (TrainingConfig, dict(batch_size=0), r"batch_size must be an integer >= 1"),
    (TrainingConfig, dict(lr=0.0), r"lr must be positive and finite"),
    (TrainingConfig, dict(lr=math.nan), r"lr must be positive and finite"),
    (TrainingConfig, dict(lr=math.inf), r"lr must be positive and finite"),
    (TrainingConfig, dict(decay_factor=0.0), r"decay_factor must be in \(0, 1\]"),
    (TrainingConfig, dict(decay_factor=1.5), r"decay_factor must be in \(0, 1\]"),
    (TrainingConfig, dict(warmup_epochs=-1.0), r"warmup_epochs must be >= 0"),
    (TrainingConfig, dict(schedule="linear"), r"schedule must be one of"),
    (TrainingConfig, dict(device="gpu"), r"device must be auto, cpu, cuda or cuda:N"),
    (TrainingConfig, dict(budget_s=0.0), r"budget_s must be positive"),
    (DataConfig, dict(num_train=0), r"num_train must be an integer >= 1"),
    (DataConfig, dict(num_test=-1), r"num_test must be an integer >= 1"),
    (DataConfig, dict(dataset="mnist"), r"dataset must be one of"),
    (PETConfig, dict(num_blocks=0), r"num_blocks must be an integer >= 1"),
    (PETConfig, dict(cutoff=-1.0), r"cutoff must be positive and finite"),
    (PETConfig, dict(hidden_channels=30, num_heads=4), r"divisible by num_heads"),
    (FrameOptions, dict(prune_steps=-1), r"prune_steps must be an integer >= 0"),
    (FrameOptions, dict(omega=0.1, delta_omega=0.15), r"delta_omega <= omega"),
    (EvaluateJob, dict(checkpoint="x.pt", num_rotations=0), r"num_rotations must be"),
    (EvaluateJob, dict(), r"checkpoint is required"),
    (MainJob, dict(epochs=0), r"epochs must be an integer >= 1"),
])
def test_every_bad_value_raises_naming_the_field(cls, changes, match):
    with pytest.raises(OptionError, match=match):
        cls(**changes)


def test_types_are_checked_not_guessed():
    with pytest.raises(TypeError, match="epochs must be an integer, got 2.5"):
        TrainingConfig(epochs=2.5)
    with pytest.raises(OptionTypeError, match="augment must be true or false"):
        TrainingConfig(augment="yes")
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        TrainingConfig(epoch=3)
    # YAML 1.1 reads 1e-3 as a string: float fields accept numeric strings, ints widen
    config = TrainingConfig(lr="1e-3", warmup_epochs=2)
    assert config.lr == 1e-3 and isinstance(config.warmup_epochs, float)
    assert DataConfig(qm9_split=[3, 1]).qm9_split == (3, 1)
    with pytest.raises(OptionError, match="qm9_split must have 2 values"):
        DataConfig(qm9_split=[3, 1, 1])


def test_unknown_keys_raise_with_their_path():
    with pytest.raises(UnknownKeyError, match="epoch") as info:
        TrainJob.from_dict({"training": {"epoch": 3}})
    assert info.value.path == "training.epoch"
    with pytest.raises(UnknownKeyError) as info:
        TrainJob.from_dict({"outdir": "x"})
    assert info.value.path == "outdir"
    with pytest.raises(OptionError) as info:
        TrainJob.from_dict({"model": {"num_heads": 0}})
    assert info.value.path == "model.num_heads"


def test_yaml_round_trip(tmp_path):
    job = TrainJob(out=str(tmp_path / "run"), data=DataConfig(num_train=12, qm9_split=(5, 2)),
                   model=PETConfig(species=(1, 6), hidden_channels=16, num_heads=2),
                   training=TrainingConfig(epochs=3, lr=3e-4, grad_clip=None, budget_s=60.0))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(job.to_dict(), sort_keys=False))
    again = TrainJob.from_dict(yaml.safe_load(path.read_text()))
    assert again == job
    assert TrainJob.from_dict({}) == TrainJob()


def _argv(config, cls, flags):
    """Command-line options that set every CLI-exposed field of ``config``."""
    argv = []
    values = {}

    def walk(obj, prefix=()):
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            path = ".".join(prefix + (field.name,))
            if dataclasses.is_dataclass(value):
                walk(value, prefix + (field.name,))
            elif path in flags and value is not None:
                values[path] = value

    walk(config)
    for path, value in values.items():
        flag = flags[path]
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, repr(value) if isinstance(value, float) else str(value)]
    return argv


@pytest.mark.parametrize("command, job", [
    ("train", TrainJob(out="runs/x", resume=True,
                       data=DataConfig(dataset="extxyz", data="a.xyz", num_train=7, num_val=2,
                                       split_seed=3, qm9_split=(9, 4), dtype="float64"),
                       model=PETConfig(hidden_channels=16, num_heads=2, cutoff=3.5,
                                       distance_only=True, attention="explicit"),
                       training=TrainingConfig(epochs=4, lr=2e-3, schedule="cosine",
                                               warmup_fraction=0.1, decay_factor=0.25,
                                               augment=False, device="cpu", budget_s=30.0,
                                               budget_clock="cpu", progress=False))),
    ("evaluate", EvaluateJob(checkpoint="run/best.pt", out="o", ecse=False,
                             ecse_prune_steps=(0, 2, 4), num_rotations=3, batch_size=5)),
    ("main", MainJob(out="m", num_train=10, epochs=2, num_test=3, seed=4, progress=False)),
])
def test_config_to_cli_options_and_back(command, job):
    from torch_pet import cli

    flags = {}
    cli.add_config_options(cli._Parser(), type(job), flags)
    argv = _argv(job, type(job), flags)
    args = vars(cli.build_parser().parse_args([command, *argv]))
    args.pop("command"), args.pop("config", None)
    assert cli.resolve_job(type(job), args) == job


def test_command_line_overrides_the_run_file(tmp_path):
    from torch_pet import cli

    path = tmp_path / "run.yaml"
    path.write_text("out: from_file\ntraining:\n  epochs: 7\n  lr: 1e-3\nmodel:\n  cutoff: 4.0\n")
    job = cli.resolve_job(TrainJob, {"training.epochs": 2, "data.num_train": 5}, str(path))
    assert (job.out, job.training.epochs, job.training.lr) == ("from_file", 2, 1e-3)
    assert (job.model.cutoff, job.data.num_train) == (4.0, 5)


def test_pet_is_built_from_its_config():
    from torch_pet import PET

    config = PETConfig(species=(1, 6), hidden_channels=8, num_heads=2, num_layers=1,
                       num_blocks=1, ff_channels=16, head_channels=8)
    model = PET(config)
    assert model.config == config and model.cutoff == config.cutoff
    assert model.hyperparameters == config.to_dict()
    assert PET(**model.hyperparameters).config == config  # what checkpoints do
    assert PET(config, cutoff=4.0).cutoff == 4.0
    names = list(inspect.signature(PET).parameters)
    assert names == ["config"] + [f.name for f in dataclasses.fields(PETConfig)]
    for field in dataclasses.fields(PETConfig):
        assert field.name in repr(model) and f"{field.name}:" in PET.__doc__
    with pytest.raises(TypeError, match="unexpected keyword argument 'hidden'"):
        PET(hidden=3)


def test_frame_options_read_like_a_mapping():
    options = FrameOptions(prune_steps=0)
    assert options["prune_steps"] == 0 and dict(options)["beta"] == 5.0
    assert FrameOptions.coerce({"beta_w": 2.0}, prune_steps=1) == FrameOptions(beta_w=2.0,
                                                                               prune_steps=1)
    assert FrameOptions.coerce(options) == options == FrameOptions(**options)
    with pytest.raises(ValueError, match=r"unknown frame_options \['gamma'\]"):
        FrameOptions.coerce({"gamma": 1.0})


def test_learning_rate_schedules():
    step = TrainingConfig(warmup_epochs=1.0, decay_every_epochs=2.0, decay_factor=0.1)
    factors = [learning_rate_factor(step, s, 2, 0.0) for s in range(8)]
    assert factors == pytest.approx([0.5, 1, 1, 1, 1, 1, 0.1, 0.1])  # 2 warm-up steps, decay every 4
    cosine = TrainingConfig(schedule="cosine", warmup_fraction=0.2)
    assert learning_rate_factor(cosine, 0, 1, 0.1) == pytest.approx((0.1 + 1e-3) / 0.2)
    assert learning_rate_factor(cosine, 0, 1, 0.6) == pytest.approx(0.5)
    assert learning_rate_factor(cosine, 0, 1, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_devices_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(OptionError, match="device must be auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="CUDA is not available"):
            resolve_device("cuda")
