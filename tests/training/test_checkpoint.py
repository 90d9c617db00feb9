import os

import pytest
import torch
from toy_potential import ToyPotential
from torch_geometric.data import Batch

import torch_pet.checkpoint as ckpt


def _toy(seed=0):
    torch.manual_seed(seed)
    model = ToyPotential(species=(1, 6), hidden_channels=5)
    with torch.no_grad():
        model.self_energies.copy_(torch.tensor([[-13.0], [-40.0]]))
    return model


def test_round_trip_restores_model_hyperparameters_and_optimizer(tmp_path, methane_small):
    model = _toy()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = Batch.from_data_list([methane_small[0][i] for i in range(3)])
    model(batch).sum().backward()
    optimizer.step()
    path = str(tmp_path / "model.pt")
    ckpt.save_checkpoint(path, model, optimizer=optimizer, metadata={"note": "x"})
    record = ckpt.load_checkpoint(path)
    assert record["format_version"] == ckpt.FORMAT_VERSION
    assert record["model"]["hyperparameters"] == {"species": [1, 6], "hidden_channels": 5,
                                                  "out_channels": 1}
    assert record["model"]["species"] == [1, 6]
    torch.testing.assert_close(record["model"]["self_energies"], model.self_energies)
    assert record["optimizer"]["state"] and record["metadata"] == {"note": "x"}
    loaded = ckpt.load_model(path)
    assert type(loaded) is ToyPotential and not loaded.training
    torch.testing.assert_close(loaded(batch), model(batch))
    assert ckpt.load_model(path, dtype=torch.float64)(_double(batch)).dtype == torch.float64
    with pytest.raises(ValueError, match="holds no aux model"):
        ckpt.load_model(path, aux=True)


def _double(batch):
    batch = batch.clone()
    batch.pos = batch.pos.double()
    return batch


def test_newer_bare_and_foreign_files_fail_clearly(tmp_path):
    model = _toy()
    path = str(tmp_path / "model.pt")
    ckpt.save_checkpoint(path, model)
    record = torch.load(path, weights_only=True)

    newer = dict(record, format_version=ckpt.FORMAT_VERSION + 1)
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match=r"newer than the format 1 .* upgrade torch_pet"):
        ckpt.load_checkpoint(str(tmp_path / "newer.pt"))

    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare state_dict without a format version"):
        ckpt.load_checkpoint(str(tmp_path / "bare.pt"))

    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a torch_pet checkpoint"):
        ckpt.load_checkpoint(str(tmp_path / "other.pt"))

    damaged = dict(record, model={"class": record["model"]["class"]})
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match="damaged: its model record lacks"):
        ckpt.load_checkpoint(str(tmp_path / "damaged.pt"))

    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.load_checkpoint(str(tmp_path / "absent.pt"))


def test_older_format_is_upgraded_or_refused(tmp_path, monkeypatch):
    model = _toy()
    path = str(tmp_path / "model.pt")
    ckpt.save_checkpoint(path, model)
    record = torch.load(path, weights_only=True)
    # a hypothetical format 0 that called the model record "network"
    old = dict(record, format_version=0, network=record["model"])
    del old["model"]
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format 0, which this torch_pet cannot upgrade"):
        ckpt.load_checkpoint(str(tmp_path / "old.pt"))

    def upgrade_0_to_1(rec):
        rec["model"] = rec.pop("network")
        rec["format_version"] = 1
        return rec

    monkeypatch.setitem(ckpt.UPGRADES, 0, upgrade_0_to_1)
    upgraded = ckpt.load_checkpoint(str(tmp_path / "old.pt"))
    assert upgraded["format_version"] == 1
    batch = Batch.from_data_list([_one_methane()])
    torch.testing.assert_close(ckpt.build_model(upgraded["model"])(batch), model(batch))


def _one_methane():
    from torch_pet.datasets import DistortedMethane
    return DistortedMethane("test", num_structures=1)[0]


def test_hyperparameters_must_be_recoverable(tmp_path):
    class Opaque(torch.nn.Module):
        def __init__(self, width=3):
            super().__init__()
            self.lin = torch.nn.Linear(width, 1)

    with pytest.raises(ValueError, match="argument 'width' is not stored as an attribute"):
        ckpt.save_checkpoint(str(tmp_path / "x.pt"), Opaque())


FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                       "checkpoint_v1_pet.pt")


def test_format_1_fixture_still_loads_and_reproduces_its_reference():
    from torch_geometric.data import Data

    from torch_pet import PET
    from torch_pet.nn.derivatives import energy_and_forces

    record = ckpt.load_checkpoint(FIXTURE)
    assert record["format_version"] == 1 and record["model"]["species"] == [1, 6]
    assert record["model"]["hyperparameters"]["num_blocks"] == 2
    model = ckpt.load_model(FIXTURE)
    assert isinstance(model, PET) and next(model.parameters()).dtype == torch.float64
    torch.testing.assert_close(model.self_energies,
                               torch.tensor([[-13.25], [-60.5]], dtype=torch.float64))
    meta = record["metadata"]
    data = Data(z=torch.tensor(meta["reference_z"]),
                pos=torch.tensor(meta["reference_pos"], dtype=torch.float64))
    out = energy_and_forces(model, data)
    assert out["energy"].item() == pytest.approx(meta["reference_energy"], abs=1e-9)
    torch.testing.assert_close(out["forces"], torch.tensor(meta["reference_forces"],
                                                           dtype=torch.float64))
