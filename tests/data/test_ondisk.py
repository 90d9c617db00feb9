"""On-disk datasets: torch-pet preprocess, lazy reading equal to the in-memory path, checks."""
import json
import os
import pickle

import pytest
import torch

from torch_pet import cli
from torch_pet.datasets import DistortedMethane, ExtXYZDataset
from torch_pet.datasets.ondisk import OnDiskStructures, read_index, write_structures

ase = pytest.importorskip("ase")


def _write_methane(path, num=30):
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for data in DistortedMethane("val", num_structures=num, dtype=torch.float64):
        atoms = Atoms(numbers=data.z.numpy(), positions=data.pos.numpy())
        atoms.calc = SinglePointCalculator(atoms, energy=float(data.energy),
                                           forces=data.forces.numpy())
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def _write_periodic(path):
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT

    frames = []
    for i, size in enumerate([(1, 1, 1), (2, 1, 1), (1, 1, 1)]):
        atoms = bulk("Cu", "fcc", a=3.6).repeat(size)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


@pytest.mark.parametrize("writer", [_write_methane, _write_periodic])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_preprocess_reads_back_what_the_in_memory_reader_reads(tmp_path, writer, dtype):
    path, out = str(tmp_path / "data.xyz"), str(tmp_path / "disk")
    writer(path)
    assert cli.main(["preprocess", path, out]) == 0
    memory = ExtXYZDataset(path, dtype=dtype)
    disk = OnDiskStructures(out, dtype=dtype, verify=True)
    assert len(disk) == len(memory)
    assert disk.species == sorted(set(memory.z.tolist()))
    assert disk.structure_sizes().tolist() == [d.num_nodes for d in memory]
    for a, b in zip(memory, disk):
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_training_on_disk_equals_training_in_memory(tmp_path):
    path = str(tmp_path / "m.xyz")
    _write_methane(path)
    assert cli.main(["preprocess", "--data", path, "--out", str(tmp_path / "disk")]) == 0
    common = ["--num-val", "4", "--num-test", "4", "--dtype", "float64", "--hidden-channels",
              "8", "--num-heads", "2", "--num-layers", "1", "--num-blocks", "1",
              "--ff-channels", "16", "--head-channels", "8", "--cutoff", "3.0", "--epochs", "1",
              "--batch-size", "8", "--device", "cpu", "--no-progress", "--no-plot"]
    assert cli.main(["train", "--dataset", "extxyz", "--data", path, *common,
                     "--out", str(tmp_path / "memory")]) == 0
    assert cli.main(["train", "--dataset", "ondisk", "--data", str(tmp_path / "disk"), *common,
                     "--num-workers", "2", "--out", str(tmp_path / "lazy")]) == 0
    from torch_pet.checkpoint import load_checkpoint

    a, b = (load_checkpoint(str(tmp_path / run / "last.pt")) for run in ("memory", "lazy"))
    for key, value in a["model"]["state_dict"].items():
        assert torch.equal(value, b["model"]["state_dict"][key]), key
    assert a["trainer"]["history"][0]["val_forces_mae"] == \
        b["trainer"]["history"][0]["val_forces_mae"]


def test_loading_runs_no_pickle(tmp_path, monkeypatch):
    write_structures(DistortedMethane("val", num_structures=4), str(tmp_path))

    def forbidden(*args, **kwargs):
        raise AssertionError("an on-disk dataset must load without unpickling")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    data = OnDiskStructures(str(tmp_path), verify=True)[3]
    assert data.pos.shape == (5, 3) and data.idx.tolist() == [8457]


def test_damaged_or_foreign_folders_are_named(tmp_path):
    root = str(tmp_path / "d")
    write_structures(DistortedMethane("val", num_structures=4), root)
    with pytest.raises(ValueError, match="already holds a dataset; pass overwrite=True"):
        write_structures(DistortedMethane("val", num_structures=4), root)
    with pytest.raises(ValueError, match="holds no index.json"):
        OnDiskStructures(str(tmp_path))
    with open(os.path.join(root, "pos.bin"), "r+b") as f:  # flip one byte: same size
        f.seek(7)
        byte = f.read(1)
        f.seek(7)
        f.write(bytes([byte[0] ^ 1]))
    OnDiskStructures(root)  # sizes still match
    with pytest.raises(ValueError, match="pos.bin does not match the sha256"):
        OnDiskStructures(root, verify=True)
    with open(os.path.join(root, "forces.bin"), "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match="forces.bin has 10 bytes, expected 240"):
        OnDiskStructures(root)
    index = read_index.__globals__["INDEX"]
    with open(os.path.join(root, index)) as f:
        tree = json.load(f)
    with open(os.path.join(root, index), "w") as f:
        json.dump({**tree, "version": 99}, f)
    with pytest.raises(ValueError, match="version 99 is not 1"):
        OnDiskStructures(root)
    with open(os.path.join(root, index), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        OnDiskStructures(root)


def test_structures_must_agree(tmp_path):
    from torch_geometric.data import Data

    one = Data(z=torch.tensor([1, 1]), pos=torch.zeros(2, 3), energy=torch.zeros(1))
    other = Data(z=torch.tensor([1]), pos=torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"structure 1: carries \['pos', 'z'\]"):
        write_structures([one, other], str(tmp_path / "a"))
    bad = Data(z=torch.tensor([1]), pos=torch.zeros(1, 3), energy=torch.zeros(2))
    with pytest.raises(ValueError, match=r"structure 1: field energy is torch.float32 \[2\]"):
        write_structures([one, bad], str(tmp_path / "b"))
    with pytest.raises(ValueError, match="no structure to write"):
        write_structures([], str(tmp_path / "c"))


def test_cli_preprocess_errors(tmp_path, capsys):
    assert cli.main(["preprocess", str(tmp_path / "missing.xyz"), str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.main(["preprocess", "--out", str(tmp_path / "o")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "ondisk", "--data", str(tmp_path)]) == 2
    assert "not a usable on-disk dataset" in capsys.readouterr().err
