"""torch_pet.rotations: random rotations and rotating structures with their labels; and
the layering rule that production code never imports torch_pet.testing."""
import ast
import pathlib
import subprocess
import sys

import pytest
import torch
from torch_geometric.data import Batch, Data

from torch_pet.outputs import OutputKind
from torch_pet.rotations import (DEFAULT_LABELS, as_generator, random_rotation, random_rotations,
                                 rotate_structure, rotate_tensors, rotate_vectors)

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "torch_pet"


def _structure(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    return Data(z=torch.ones(n, dtype=torch.long), pos=rand(n, 3), forces=rand(n, 3),
                energy=rand(1), cell=rand(1, 3, 3), pbc=torch.ones(1, 3, dtype=torch.bool),
                stress=rand(1, 3, 3), dipole=rand(1, 2, 3), polar=rand(n, 3, 3))


def test_random_rotations_seeding_dtype_and_errors():
    a = random_rotations(4, generator=3, improper_probability=0.5, dtype=torch.float32)
    assert a.shape == (4, 3, 3) and a.dtype == torch.float32
    assert torch.equal(a, random_rotations(4, generator=torch.Generator().manual_seed(3),
                                           improper_probability=0.5, dtype=torch.float32))
    assert random_rotations(0).shape == (0, 3, 3)
    assert (torch.linalg.det(random_rotations(20, generator=0, improper_probability=1.0)) < 0).all()
    # one rotation drawn like random_rotation, from the same stream after the coin flips
    generator = torch.Generator().manual_seed(9)
    torch.rand(1, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(random_rotations(1, generator=9)[0], random_rotation(generator))
    with pytest.raises(ValueError, match="num must be an int >= 0"):
        random_rotations(-1)
    with pytest.raises(ValueError, match=r"improper_probability must be in \[0, 1\]"):
        random_rotations(2, improper_probability=2.0)
    with pytest.raises(TypeError, match="int seed or a torch.Generator"):
        as_generator(True)


def test_rotate_vectors_and_tensors():
    r = random_rotation(1)
    v, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(rotate_vectors(v, r), v @ r.T)
    torch.testing.assert_close(rotate_tensors(t, r), r @ t @ r.T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotate_structure_per_structure_rotations(dtype):
    structures = [_structure(3, 0, dtype), _structure(5, 1, dtype)]
    batch = Batch.from_data_list(structures)
    rotations = random_rotations(2, generator=2, improper_probability=0.5)
    labels = {**DEFAULT_LABELS, "dipole": "vector", "polar": OutputKind.TENSOR.with_per_atom()}
    out = rotate_structure(batch, rotations, labels)
    for b, data in enumerate(structures):
        r = rotations[b].to(dtype)
        alone = rotate_structure(data, r, labels)  # same as the structure on its own
        part = out.get_example(b)
        for key, expected in [("pos", data.pos @ r.T), ("forces", data.forces @ r.T),
                              ("cell", data.cell @ r.T), ("stress", r @ data.stress @ r.T),
                              ("dipole", data.dipole @ r.T), ("polar", r @ data.polar @ r.T),
                              ("energy", data.energy)]:
            torch.testing.assert_close(part[key], expected)
            torch.testing.assert_close(alone[key], expected)
    assert torch.equal(batch.pos, Batch.from_data_list(structures).pos)  # input untouched
    # only pos and cell with labels={}
    bare = rotate_structure(batch, rotations, labels={})
    assert torch.equal(bare.forces, batch.forces) and not torch.equal(bare.pos, batch.pos)


def test_rotate_structure_composes():
    data = _structure(4, 3)
    r1, r2 = random_rotation(4), random_rotation(5, improper=True)
    twice = rotate_structure(rotate_structure(data, r1), r2)
    once = rotate_structure(data, r2 @ r1)
    for key in ("pos", "forces", "cell", "stress"):
        torch.testing.assert_close(twice[key], once[key])


def test_rotate_structure_rejects_bad_input():
    batch = Batch.from_data_list([_structure(3, 0), _structure(2, 1)])
    with pytest.raises(ValueError, match=r"rotation has 3 matrices for 2 structure\(s\)"):
        rotate_structure(batch, random_rotations(3))
    with pytest.raises(ValueError, match=r"rotation must be a \[3, 3\] or \[B, 3, 3\]"):
        rotate_structure(batch, torch.eye(4))
    with pytest.raises(ValueError, match=r"labels\['dipole'\] must be one of"):
        rotate_structure(batch, torch.eye(3), {"dipole": "axial"})
    with pytest.raises(ValueError, match=r"data.pos must be a tensor of shape \[N, 3\]"):
        rotate_structure(Data(pos=torch.zeros(3, 2)), torch.eye(3))


# ---------------------------------------------------------------------------------------
# Layering: production modules never import the testing helpers
# ---------------------------------------------------------------------------------------


def _imported_modules(source: str, package: str) -> set:
    """Absolute names of the modules a file of ``package`` imports (anywhere in it: also
    inside functions; relative imports resolved), with ``module.name`` for from-imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _imports_of(path: pathlib.Path) -> set:
    package = ".".join(path.parent.relative_to(PACKAGE.parent).parts)
    return _imported_modules(path.read_text(), package)


def _production_files():
    testing = PACKAGE / "testing"
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if testing not in path.parents and path != PACKAGE / "testing.py"]


def test_production_code_never_imports_testing():
    files = _production_files()
    assert len(files) > 20 and PACKAGE / "ecse" / "symmetrizer.py" in files
    offenders = {str(path.relative_to(PACKAGE)): sorted(name for name in _imports_of(path)
                                                        if name.startswith("torch_pet.testing"))
                 for path in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_import_checker_sees_every_import_form():
    for code in ("import torch_pet.testing", "from torch_pet import testing",
                 "from torch_pet.testing import random_molecule",
                 "def f():\n    from ..testing import structures", "from .. import testing"):
        names = _imported_modules(code, "torch_pet.ecse")
        assert any(name.startswith("torch_pet.testing") for name in names), code
    assert not any(name.startswith("torch_pet.testing") for name in _imported_modules(
        "from torch_pet.rotations import random_rotation\nfrom . import frames", "torch_pet.ecse"))


def test_core_modules_import_nothing_above_them():
    # outputs.py depends on torch only; rotations.py on outputs.py and inputs.py only
    assert {n for n in _imports_of(PACKAGE / "outputs.py") if n.startswith("torch_pet")} == set()
    assert {n.rsplit(".", 1)[0] for n in _imports_of(PACKAGE / "rotations.py")
            if n.startswith("torch_pet.")} == {"torch_pet", "torch_pet.outputs", "torch_pet.inputs"}


def test_importing_production_code_does_not_load_testing():
    code = ("import sys, torch_pet.ecse.symmetrizer, torch_pet.training, torch_pet.evaluate, "
            "torch_pet.rotations, torch_pet.outputs\n"
            "loaded = [m for m in sys.modules if m.startswith('torch_pet.testing')]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_rotate_structure_reads_a_batch_without_its_batch_vector():
    """A Batch whose ``batch`` was dropped is rotated per structure from ``ptr``."""
    g = torch.Generator().manual_seed(3)
    batch = Batch.from_data_list([Data(pos=torch.randn(n, 3, generator=g, dtype=torch.float64))
                                  for n in (3, 5)])
    rotations = random_rotations(2, generator=g)
    expected = rotate_structure(batch, rotations).pos
    batch.batch = None
    assert torch.equal(rotate_structure(batch, rotations).pos, expected)
