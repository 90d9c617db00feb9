"""Device hygiene of the Python code that runs models (torch_pet/nn, ecse, export, training,
calculator): a lint over the source (no GPU needed) that keeps out

* ``factory``: tensors created without ``device=`` (``torch.zeros``, ``torch.arange``,
  ``torch.tensor``, ...), which land on the CPU whatever the input's device. Exempt: module
  constructors (``__init__``), whose buffers follow ``module.to(device)``; ``*_like`` and
  ``x.new_*`` inherit the device;
* ``host``: ``.cpu()``, ``.item()``, ``.tolist()``, ``.numpy()`` (a host transfer and a
  device sync);
* ``sync``: ``int(t)``, ``float(t)``, ``bool(t)`` inside ``forward`` (a sync per call).

Every use that is meant (host-side planning of chunks, error messages, results handed to
ASE, one-off set-up) is listed in ALLOWED with the reason; a new one fails the test until it
is fixed or listed, and a listed one that no longer occurs fails too (the list stays
exact)."""
import ast
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["torch_pet/nn", "torch_pet/ecse", "torch_pet/export", "torch_pet/training",
           "torch_pet/calculator.py"]
FACTORIES = {"zeros", "ones", "empty", "full", "arange", "range", "eye", "tensor", "as_tensor",
             "linspace", "logspace", "rand", "randn", "randint", "randperm", "empty_strided",
             "scalar_tensor", "tril_indices", "triu_indices", "zeros_like_", "from_numpy"}
HOST = {"cpu", "item", "tolist", "numpy"}

# (file, function, rule): why the CPU is meant there.
ALLOWED = {
    # model inputs checked with one host sync; the lists only name bad entries in errors
    ("torch_pet/nn/pet_graph.py", "species_of", "host"): "one sync for the input checks; error text",
    ("torch_pet/nn/edge_layout.py", "build_edge_layout", "host"): "one sync for the input checks",
    ("torch_pet/nn/derivatives.py", "_strain", "host"): "error message only (zero-volume cells)",
    ("torch_pet/ecse/symmetrizer.py", "ECSESymmetrizer.require_aux", "host"): "error message only",
    # host-side planning: chunk and block boundaries from [F] / [N] sizes, one transfer each
    ("torch_pet/ecse/chunks.py", "chunk_bounds", "host"): "chunk plan from [F] copy sizes",
    ("torch_pet/ecse/inner_cutoff.py", "_atom_blocks", "host"): "block plan from [N] counts",
    ("torch_pet/ecse/inner_cutoff.py", "_atom_blocks", "factory"): "block plan on the host",
    ("torch_pet/ecse/rotational_average.py", "RotationalAverage.forward", "sync"):
        "number of structures and the chunk plan (whole structures per backbone call)",
    # rotation grids: built once on the CPU in float64, moved to the input's device in forward
    ("torch_pet/ecse/rotational_average.py", "fibonacci_sphere", "factory"): "grid set-up",
    ("torch_pet/ecse/rotational_average.py", "sphere_grid_rotations", "factory"): "grid set-up",
    ("torch_pet/ecse/rotational_average.py", "gauss_grid_rotations", "factory"): "grid set-up",
    # training bookkeeping: data-set statistics and per-epoch orders are host-side by design
    ("torch_pet/training/sampling.py", "epoch_order", "factory"): "CPU generator, same on every device",
    ("torch_pet/training/sampling.py", "epoch_order", "host"): "an index list for the loader",
    ("torch_pet/training/sampling.py", "structure_sizes", "factory"): "data-set sizes (host)",
    ("torch_pet/training/self_energies.py", "species_counts", "host"): "error message only",
    ("torch_pet/training/self_energies.py", "fit_self_energies", "factory"):
        "least squares over the data set, on the CPU in float64",
    ("torch_pet/training/distributed.py", "all_reduce_sum", "host"): "metrics back to Python floats",
    # ASE wants numpy arrays
    ("torch_pet/calculator.py", "PETCalculator.calculate", "host"): "results handed to ASE",
}


class _Linter(ast.NodeVisitor):
    def __init__(self, path: str):
        self.path, self.scope, self.found = path, [], []

    def _visit_scope(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _visit_scope

    def visit_Call(self, node):
        func, name = node.func, ".".join(self.scope) or "<module>"
        in_init = bool(self.scope) and self.scope[-1] == "__init__"
        if isinstance(func, ast.Attribute):
            if (isinstance(func.value, ast.Name) and func.value.id == "torch" and func.attr in FACTORIES
                    and not any(k.arg == "device" for k in node.keywords) and not in_init):
                self.found.append((self.path, name, "factory", node.lineno, ast.unparse(node)))
            elif func.attr in HOST and not node.args:
                self.found.append((self.path, name, "host", node.lineno, ast.unparse(node)))
        elif (isinstance(func, ast.Name) and func.id in ("int", "float", "bool") and self.scope
              and self.scope[-1] == "forward" and node.args and not isinstance(node.args[0], ast.Constant)):
            self.found.append((self.path, name, "sync", node.lineno, ast.unparse(node)))
        self.generic_visit(node)


def lint(source: str, path: str) -> list:
    """[(path, function, rule, line, code)] of every factory / host / sync use in source."""
    linter = _Linter(path)
    linter.visit(ast.parse(source))
    return linter.found


def scanned_files():
    for entry in SCANNED:
        target = ROOT / entry
        for file in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            yield file.relative_to(ROOT).as_posix(), file.read_text()


def test_no_unlisted_cpu_tensors_or_syncs():
    found = [hit for path, source in scanned_files() for hit in lint(source, path)]
    unlisted = [f"{p}:{line} in {fn} ({rule}): {code[:90]}" for p, fn, rule, line, code in found
                if (p, fn, rule) not in ALLOWED]
    assert not unlisted, ("tensors created off the input's device or host syncs; pass "
                          "device=<input>.device (or use *_like / new_*), keep .cpu()/.item() "
                          "out of forward passes, or list the use in ALLOWED with the reason:\n"
                          + "\n".join(unlisted))
    used = {(p, fn, rule) for p, fn, rule, _, _ in found}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED lists uses that no longer occur; remove them: {stale}"


@pytest.mark.parametrize("code, rule", [
    ("def forward(self, x):\n    return x + torch.zeros(3)", "factory"),
    ("def forward(self, x):\n    return torch.tensor([1.0, 2.0]) * x", "factory"),
    ("def forward(self, x):\n    return x.sum().item()", "host"),
    ("def forward(self, x):\n    return x.cpu()", "host"),
    ("def forward(self, x):\n    return x[: int(x.sum())]", "sync"),
])
def test_lint_catches_planted_problems(code, rule):
    hits = lint(code, "planted.py")
    assert [(fn, r) for _, fn, r, _, _ in hits] == [("forward", rule)]


@pytest.mark.parametrize("code", [
    "def forward(self, x):\n    return x + torch.zeros(3, device=x.device)",
    "def forward(self, x):\n    return torch.zeros_like(x) + x.new_ones(3)",
    "class M:\n    def __init__(self):\n        self.b = torch.zeros(3)",
    "def forward(self, x):\n    return x[: int(3)]",
])
def test_lint_accepts_device_aware_code(code):
    assert lint(code, "fine.py") == []


def _pet_outputs(device) -> list:
    """PET energies, forces and stress of molecules and a periodic cell on `device`."""
    from torch_geometric.data import Batch, Data

    from torch_pet.nn import PET, energy_and_forces

    torch.manual_seed(0)
    model = PET(species=(1, 6, 8)).double().to(device)
    species = torch.tensor([1, 6, 8])
    molecules = Batch.from_data_list([
        Data(z=species[torch.randint(0, 3, (n,))], pos=torch.rand(n, 3, dtype=torch.float64) * 3.0)
        for n in (5, 9, 1)])
    cell = torch.tensor([[4.0, 0.0, 0.0], [0.7, 3.8, 0.0], [-0.4, 0.5, 4.2]], dtype=torch.float64)
    crystal = Batch.from_data_list([Data(z=species[torch.randint(0, 3, (12,))],
                                         pos=torch.rand(12, 3, dtype=torch.float64) @ cell,
                                         cell=cell[None], pbc=torch.ones(1, 3, dtype=torch.bool))])
    out = energy_and_forces(model, molecules.to(device))
    periodic = energy_and_forces(model, crystal.to(device), compute_stress=True)
    return [t.detach().cpu() for t in (out["energy"], out["forces"], periodic["energy"],
                                       periodic["forces"], periodic["stress"])]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pet_on_cuda_matches_cpu():
    """Forward and backward passes on the GPU (radius graph, reverse edges, attention,
    stress) give the CPU's energies, forces and stress: no tensor is left on the CPU."""
    for cpu, cuda in zip(_pet_outputs(torch.device("cpu")), _pet_outputs(torch.device("cuda"))):
        assert torch.allclose(cpu, cuda, rtol=1e-9, atol=1e-10)
