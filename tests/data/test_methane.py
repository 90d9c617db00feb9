import numpy as np
import pytest
import torch

from torch_pet.datasets import DistortedMethane


def test_bundled_file_is_a_real_10k_set_with_the_paper_geometry():
    full = DistortedMethane()
    assert len(full) == 9954 and full.info["num_requested"] == 10000
    assert full.info["num_failed"] == 10000 - 9954
    pos = full._data.pos.view(-1, 5, 3).double()
    assert (full._data.z.view(-1, 5) == torch.tensor([6, 1, 1, 1, 1])).all()
    assert torch.all(pos[:, 0] == 0)  # carbon at the origin
    assert pos[:, 1:].norm(dim=-1).max() <= 3.0 + 1e-6  # hydrogens in a 3 A ball
    dist = torch.cdist(pos, pos) + 10 * torch.eye(5)
    assert dist.min() >= 0.5 - 1e-6  # every distance >= 0.5 A
    # forces of an isolated molecule sum to zero (translation invariance of the energy)
    assert full._data.forces.view(-1, 5, 3).sum(1).abs().max() < 1e-4
    # GFN2-xTB total energies of CH4 in eV (about -113 eV at equilibrium, higher distorted)
    assert -115 < full._data.energy.min() and full._data.energy.max() < -40


def test_fixed_disjoint_split():
    split = DistortedMethane.split_indices()
    assert [len(split[k]) for k in ("train", "val", "test")] == [8454, 500, 1000]
    assert len(np.unique(np.concatenate(list(split.values())))) == 9954
    test = DistortedMethane("test")
    assert test.idx.tolist() == split["test"].tolist()
    assert torch.equal(test[0].pos, DistortedMethane()[int(split["test"][0])].pos)


def test_options_and_errors():
    small = DistortedMethane("train", num_structures=7, dtype=torch.float64)
    assert len(small) == 7 and small[0].pos.dtype == torch.float64
    assert small[6].energy.shape == (1,) and small[6].forces.shape == (5, 3)
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        DistortedMethane("valid")
    with pytest.raises(ValueError, match="num_structures=600 must be in"):
        DistortedMethane("val", num_structures=600)
    with pytest.raises(FileNotFoundError, match="regenerate it"):
        DistortedMethane(path="/nonexistent/methane.npz")
