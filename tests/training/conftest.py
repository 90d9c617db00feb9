"""Fixtures of the training tests."""
import pytest

from torch_pet.datasets import DistortedMethane


@pytest.fixture
def methane_small():
    """(train, val) subsets of the bundled methane set: 24 and 8 structures."""
    return (DistortedMethane("train", num_structures=24),
            DistortedMethane("val", num_structures=8))
