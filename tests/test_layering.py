"""Layering rules of the package, checked on its source with ``ast``.

A private name (``_x``, a function, class or module) belongs to the package that defines it
and its subpackages: ``torch_pet.ops.radius_graph._helper`` may be imported inside
``torch_pet.ops`` only, ``torch_pet._extension`` anywhere in ``torch_pet``. Another package
that needs it gets a public name instead (STYLE 13/14: one body, reused through its
interface).
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "torch_pet"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _owner(module: str, is_package: bool) -> str:
    """The package a module's private names belong to."""
    return module if is_package else module.rpartition(".")[0]


def private_imports(source: str, module: str, is_package: bool = False, packages=()) -> list:
    """``(line, imported name)`` of each private name that ``module`` imports from outside
    its own package tree. ``packages``: the names of torch_pet's packages (a private module
    such as ``torch_pet._extension`` belongs to its parent package)."""
    here = _owner(module, is_package)
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:  # relative import
            parts = here.split(".")
            parts = parts[:len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        if not base.startswith("torch_pet"):
            continue
        for alias in node.names:
            if not alias.name.startswith("_") or alias.name.startswith("__"):
                continue
            owner = _owner(base, base in packages)
            if here != owner and not here.startswith(owner + "."):
                found.append((node.lineno, f"{base}.{alias.name}"))
    return found


def test_no_module_imports_another_packages_private_names():
    files = sorted(PACKAGE.rglob("*.py"))
    packages = {_module_name(p) for p in files if p.name == "__init__.py"}
    offences = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
                for path in files
                for line, name in private_imports(path.read_text(), _module_name(path),
                                                  path.name == "__init__.py", packages)]
    assert not offences, "\n".join(offences)


@pytest.mark.parametrize("module, source, offending", [
    ("torch_pet.export.ecse", "from torch_pet.ecse.symmetrizer import _accumulate, call_model",
     ["torch_pet.ecse.symmetrizer._accumulate"]),
    ("torch_pet.inputs", "def f():\n    from torch_pet.ops.radius_graph import _cell\n",
     ["torch_pet.ops.radius_graph._cell"]),
    ("torch_pet.export.pet", "from ..ecse.frames import _helper", ["torch_pet.ecse.frames._helper"]),
    ("torch_pet.ecse.frame_structure", "from torch_pet.ecse.frames import _helper", []),
    ("torch_pet.ops.radius_graph", "from torch_pet import _extension", []),
    ("torch_pet.ecse.average", "from torch_pet.nn.rows import add_rows, __all__", []),
])
def test_the_rule_finds_what_it_should(module, source, offending):
    packages = {"torch_pet", "torch_pet.ecse", "torch_pet.ops", "torch_pet.export",
                "torch_pet.nn"}
    assert [name for _, name in private_imports(source, module, packages=packages)] == offending
