"""The backbone contract (torch_pet.backbone) and a PyG SchNet taken through all of torch_pet:
trained, symmetrized, saved, loaded and run in ASE (a tiny budget of
examples/train_schnet.py)."""
import importlib.util
import pathlib

import pytest
import torch
from torch_geometric.data import Data

from torch_pet import PET
from torch_pet.backbone import Backbone, BackboneInfo, backbone_info
from torch_pet.nn.adapters import SchNetBackbone

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_pet_meets_the_whole_contract():
    pet = PET(species=(1, 6), hidden_channels=8, num_heads=2, num_layers=1, num_blocks=2,
              ff_channels=16, head_channels=8, cutoff=3.0, out_channels=2)
    info = backbone_info(pet)
    assert isinstance(pet, Backbone)
    assert (info.model_class, info.cutoff, info.receptive_field, info.species) == \
        ("PET", 3.0, 6.0, (1, 6))
    assert info.self_energies is pet.self_energies and tuple(info.self_energies.shape) == (2, 2)
    assert (info.per_atom, info.out_channels) == (False, 2)
    assert info.hyperparameters == pet.hyperparameters
    assert info.require("cutoff", "species", by="test") is info


def test_a_bare_module_provides_nothing_and_require_names_what_is_missing():
    info = backbone_info(torch.nn.Linear(3, 1))
    assert info == BackboneInfo("Linear")
    with pytest.raises(ValueError, match=r"Trainer \(energy targets\) needs the model's "
                                         r"`species`, `self_energies`, which Linear does not"):
        info.require("species", "self_energies", by="Trainer (energy targets)")


class _Attributes(torch.nn.Module):
    def __init__(self, **attributes):
        super().__init__()
        for key, value in attributes.items():
            setattr(self, key, value)


@pytest.mark.parametrize("attributes, error, match", [
    (dict(cutoff=-1.0), ValueError, r"_Attributes.cutoff must be positive"),
    (dict(cutoff="far"), TypeError, r"_Attributes.cutoff must be a number"),
    (dict(receptive_field=float("inf")), ValueError, r"receptive_field must be positive"),
    (dict(species=[1, "C"]), TypeError, r"species must be a sequence of atomic numbers"),
    (dict(species=(1, 6), self_energies=torch.zeros(3, 1)), ValueError,
     r"self_energies has 3 rows but the model has 2 species"),
    (dict(self_energies=torch.zeros(3)), TypeError, r"self_energies must be a tensor "
                                                    r"\[num_species, C\]"),
    (dict(per_atom="yes"), TypeError, r"per_atom must be a bool"),
    (dict(out_channels=0), TypeError, r"out_channels must be an int >= 1"),
])
def test_bad_attributes_raise_naming_them(attributes, error, match):
    with pytest.raises(error, match=match):
        backbone_info(_Attributes(**attributes))


def test_backbone_info_needs_a_module():
    with pytest.raises(TypeError, match="a backbone must be a torch.nn.Module, got function"):
        backbone_info(lambda data: data.pos)


def test_trainer_names_missing_self_energies(tmp_path):
    from torch_pet.testing import random_methane
    from torch_pet.training import Trainer, TrainingConfig

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, data):
            return self.weight * data.pos.sum()[None, None]

    data = [random_methane(i) for i in range(2)]
    for d in data:
        d.energy, d.forces = torch.zeros(1, dtype=torch.float64), torch.zeros_like(d.pos)
    with pytest.raises(ValueError, match=r"needs the model's `species`, `self_energies`"):
        Trainer(Plain(), data, None, TrainingConfig(epochs=1, device="cpu", progress=False,
                                                   plot=False), out_dir=str(tmp_path))


def test_schnet_backbone_checks_and_agrees_with_its_layers():
    with pytest.raises(ValueError, match=r"species must be distinct atomic numbers in 1..99"):
        SchNetBackbone([1, 1])
    torch.manual_seed(0)
    model = SchNetBackbone([1, 6], cutoff=3.0, hidden_channels=8, num_filters=8,
                           num_interactions=2).double()
    info = backbone_info(model)
    assert (info.species, info.cutoff, info.receptive_field, info.out_channels,
            info.per_atom) == ((1, 6), 3.0, 6.0, 1, False)
    assert info.hyperparameters["num_interactions"] == 2
    data = Data(z=torch.tensor([6, 1, 1, 9]), pos=torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"data.z: atomic number\(s\) \[9\] are not among"):
        model(data)
    data.z[3] = 1
    total = model(data)
    model.per_atom = True
    atomic = model(data)
    assert total.shape == (1, 1) and atomic.shape == (4, 1)
    torch.testing.assert_close(atomic.sum(0, keepdim=True), total)


def test_schnet_is_trained_symmetrized_saved_loaded_and_run_in_ase(tmp_path):
    spec = importlib.util.spec_from_file_location("train_schnet",
                                                  ROOT / "examples" / "train_schnet.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.run(num_train=16, num_val=8, num_test=4, epochs=1, out=str(tmp_path),
                         progress=False, hidden=8)
    # SchNet is invariant: ECSE's weighted average of identical outputs is the model itself.
    assert result["ecse_vs_raw_energy"] < 1e-9
    assert abs(result["test_energy_mae_ecse"] - result["test_energy_mae_raw"]) < 1e-9
    assert result["reload_max_difference"] == 0.0
    for name in ("raw", "ecse"):
        assert result[f"ase_{name}_energy_error"] < 1e-9
        assert result[f"ase_{name}_forces_error"] < 1e-8
        assert result[f"ase_{name}_atomic_sum_error"] < 1e-9
    assert (tmp_path / "schnet.pt").exists() and (tmp_path / "best.pt").exists()


def test_float64_checkpoints_load_without_rounding(tmp_path):
    """Weights are loaded in the stored dtype (not copied into a float32 model first)."""
    from torch_pet.checkpoint import load_model, save_checkpoint

    torch.manual_seed(0)
    pet = PET(species=(1, 6), hidden_channels=8, num_heads=2, num_layers=1, num_blocks=1,
              ff_channels=16, head_channels=8, cutoff=3.0).double()
    with torch.no_grad():
        pet.self_energies.copy_(torch.tensor([[0.1 + 1e-12], [-37.8 + 3e-11]]))
    save_checkpoint(str(tmp_path / "pet.pt"), pet)
    loaded = load_model(str(tmp_path / "pet.pt"))
    for key, value in pet.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
