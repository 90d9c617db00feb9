import pytest
import torch
from torch_geometric.data import Data

from torch_pet.training.self_energies import fit_self_energies, species_counts


def test_recovers_exact_self_energies_of_random_compositions():
    true = {1: -13.6, 6: -1029.9, 8: -2042.6}
    data = []
    for _ in range(20):
        z = torch.tensor([1, 6, 8])[torch.randint(0, 3, (int(torch.randint(1, 9, ())),))]
        energy = sum(true[int(s)] for s in z)
        data.append(Data(z=z, pos=torch.zeros(len(z), 3), energy=torch.tensor([energy], dtype=torch.float64)))
    fitted = fit_self_energies(data, species=[1, 6, 7, 8])
    assert fitted.shape == (4, 1) and fitted.dtype == torch.float64
    torch.testing.assert_close(fitted[:, 0], torch.tensor([-13.6, -1029.9, 0.0, -2042.6],
                                                          dtype=torch.float64))


def test_collinear_compositions_reproduce_the_mean_energy():
    energies = torch.tensor([-100.0, -98.0, -103.0], dtype=torch.float64)
    data = [Data(z=torch.tensor([6, 1, 1, 1, 1]), pos=torch.zeros(5, 3), energy=e.view(1))
            for e in energies]
    fitted = fit_self_energies(data, species=[1, 6])
    torch.testing.assert_close(fitted[1, 0] + 4 * fitted[0, 0], energies.mean())


def test_counts_and_unknown_species():
    counts = species_counts(torch.tensor([6, 1, 1, 8]), torch.tensor([0, 0, 1, 1]), 2, [1, 6, 8])
    assert counts.tolist() == [[1, 1, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match=r"atomic numbers \[9\] are not among the model"):
        species_counts(torch.tensor([9, 1]), torch.tensor([0, 0]), 1, [1, 6])


def test_negative_atomic_numbers_are_unknown_not_wrapped():
    """z = -1 must not index the lookup table from its end (which would count species 8)."""
    with pytest.raises(ValueError, match=r"atomic numbers \[-1\] are not among the model"):
        species_counts(torch.tensor([-1, 1]), torch.tensor([0, 0]), 1, [1, 6, 8])
