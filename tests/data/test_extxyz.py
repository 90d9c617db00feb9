import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from torch_pet.datasets.extxyz import ExtXYZDataset, read_extxyz

ase = pytest.importorskip("ase")
import ase.io  # noqa: E402
from ase.build import bulk, molecule  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402


def _labelled(atoms):
    atoms.calc = EMT()
    atoms.get_potential_energy(), atoms.get_forces()
    if atoms.pbc.any():
        atoms.get_stress()
    return atoms


def test_round_trip_of_periodic_and_molecular_structures(tmp_path):
    cu = _labelled(bulk("Cu", cubic=True) * (1, 1, 2))
    cu.rattle(0.05, seed=1)
    cu = _labelled(cu)
    path = tmp_path / "cu.xyz"
    ase.io.write(path, [cu, cu], format="extxyz")
    data = read_extxyz(str(path), dtype=torch.float64)
    assert len(data) == 2
    first = data[0]
    torch.testing.assert_close(first.pos, torch.tensor(cu.positions))
    torch.testing.assert_close(first.forces, torch.tensor(cu.get_forces()))
    assert first.energy.item() == pytest.approx(cu.get_potential_energy())
    torch.testing.assert_close(first.stress[0], torch.tensor(cu.get_stress(voigt=False)))
    torch.testing.assert_close(first.cell[0], torch.tensor(cu.cell.array))
    assert first.pbc.tolist() == [[True, True, True]]

    mol = tmp_path / "mol.xyz"
    ase.io.write(mol, [_labelled(molecule("CH4")), _labelled(molecule("H2O"))], format="extxyz")
    dataset = ExtXYZDataset(str(mol))
    assert len(dataset) == 2 and "cell" not in dataset[0]
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch.energy.shape == (2,) and batch.forces.shape == (8, 3)


def _write(path, text):
    path.write_text(text)
    return str(path)


HEADER = 'Properties=species:S:1:pos:R:3:forces:R:3 energy={energy}\n'


def test_missing_property_names_file_and_structure(tmp_path):
    path = _write(tmp_path / "missing.xyz",
                  "1\n" + HEADER.format(energy=-1.0) + "H 0 0 0 0 0 0\n"
                  "1\nProperties=species:S:1:pos:R:3:forces:R:3\nH 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"missing.xyz: structure 1: property 'energy'.*missing"):
        read_extxyz(path)
    with pytest.raises(ValueError, match=r"structure 0: property 'stress'"):
        read_extxyz(path, properties=["stress"])


def test_mismatched_length_names_file_and_structure(tmp_path):
    path = _write(tmp_path / "short.xyz",
                  "1\n" + HEADER.format(energy=-1.0) + "H 0 0 0 0 0 0\n"
                  "3\n" + HEADER.format(energy=-2.0) + "H 0 0 0 0 0 0\nH 0 0 1 0 0 0\n")
    with pytest.raises(ValueError, match=r"short.xyz: structure 1 could not be parsed"):
        read_extxyz(path)
    bad_energy = _write(tmp_path / "vec.xyz", '1\nProperties=species:S:1:pos:R:3 '
                        'REF_energy="1.0 2.0"\nH 0 0 0\n')
    with pytest.raises(ValueError, match=r"vec.xyz: structure 0: energy .* must be one number"):
        read_extxyz(bad_energy, energy_key="REF_energy", properties=["energy"])


@pytest.mark.parametrize("line,field", [("H 0 0 0 0 0 nan", "forces"),
                                        ("H 0 0 inf 0 0 0", "positions")])
def test_non_finite_values_name_file_and_structure(tmp_path, line, field):
    path = _write(tmp_path / "nan.xyz", "1\n" + HEADER.format(energy=-1.0) + "H 0 0 0 0 0 0\n"
                  "1\n" + HEADER.format(energy=-1.0) + line + "\n")
    with pytest.raises(ValueError, match=rf"nan.xyz: structure 1: .*{field}.*NaN or Inf"):
        read_extxyz(path)
    path = _write(tmp_path / "nan_e.xyz", "1\n" + HEADER.format(energy="nan") + "H 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"structure 0: property 'energy'.*NaN or Inf"):
        read_extxyz(path)


def test_custom_keys_voigt_stress_and_empty_lattice_errors(tmp_path):
    path = _write(tmp_path / "ref.xyz",
                  '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3:REF_f:R:3 '
                  'REF_e=-3.5 REF_s="1 2 3 4 5 6" pbc="T T T"\nH 0 0 0 0.5 0 0\n')
    data = read_extxyz(path, energy_key="REF_e", forces_key="REF_f", stress_key="REF_s",
                       properties=["energy", "forces", "stress"])[0]
    assert data.energy.item() == -3.5 and data.forces[0, 0].item() == 0.5
    xx, yy, zz, yz, xz, xy = range(1, 7)
    expected = torch.tensor([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]], dtype=torch.float32)
    assert torch.equal(data.stress[0], expected)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_extxyz(str(tmp_path / "absent.xyz"))
    with pytest.raises(ValueError, match="unknown properties"):
        read_extxyz(path, properties=["charges"])
