"""Forces and stress of any energy model by automatic differentiation.

For a model with ``model(data) -> [B]`` or ``[B, 1]`` energies,

.. math::
    F_i = -\\frac{\\partial E}{\\partial x_i}, \\qquad
    \\sigma_b = \\frac{1}{V_b} \\frac{\\partial E_b}{\\partial \\varepsilon_b}
    \\Big|_{\\varepsilon = 0},

where a symmetric strain :math:`\\varepsilon_b` deforms positions and cell of structure b
together (:math:`x \\to x (I + \\varepsilon)`, rows of the cell likewise), so the model must
compute its geometry differentiably from ``pos`` and ``cell`` (PET does, through
``torch_pet.ops.edge_vectors``). Signs follow ASE (stress = (1/V) dE/d strain).
"""
import copy
from typing import Dict

import torch

from torch_pet.nn.attention import double_backward


def energy_and_forces(model, data, *, compute_stress: bool = False,
                      create_graph: bool = False) -> Dict[str, torch.Tensor]:
    """Energies, forces (and stress) of ``data`` under ``model``.

    Args:
        model: any module with ``model(data) -> [B]`` or ``[B, 1]`` energies.
        data: PyG ``Data``/``Batch`` with ``pos`` (and ``cell`` [B, 3, 3] for the stress);
            not modified.
        compute_stress: also return the stress of every structure (needs a cell with
            nonzero volume per structure).
        create_graph: keep the graph of the derivatives (training on forces); PET then
            uses its double-differentiable attention path.

    Shapes:
        returns ``{"energy": [B], "forces": [N, 3], "stress": [B, 3, 3]}``
    """
    from torch_pet.inputs import read_structure_index

    data = copy.copy(data)  # a shallow copy: the caller's data keeps its tensors
    pos = getattr(data, "pos", None)
    if not isinstance(pos, torch.Tensor):
        raise TypeError(f"energy_and_forces: data.pos must be a torch.Tensor [N, 3], got "
                        f"{type(pos).__name__}")
    batch, _, num_graphs = read_structure_index(data, pos, owner="energy_and_forces: ")

    with torch.enable_grad():
        if not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        inputs = [pos]
        data.pos = pos
        if compute_stress:
            strain = _strain(data, num_graphs, pos)
            inputs.append(strain)
            symmetric = 0.5 * (strain + strain.transpose(1, 2))  # [B, 3, 3]
            data.pos = pos + torch.bmm(pos[:, None, :], symmetric[batch])[:, 0]
            data.cell = data.cell.reshape(-1, 3, 3) + torch.bmm(data.cell.reshape(-1, 3, 3),
                                                                 symmetric)
        if create_graph:
            with double_backward():
                out = model(data)
        else:
            out = model(data)
        energy = _as_energies(out, num_graphs)
        grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph,
                                    allow_unused=True, materialize_grads=True)
    if not create_graph:  # the graph is freed: hand back plain tensors
        energy, grads = energy.detach(), [g.detach() for g in grads]
    result = {"energy": energy, "forces": -grads[0]}
    if compute_stress:
        volume = torch.linalg.det(data.cell.detach()).abs()  # the strain is zero: same cell
        result["stress"] = grads[1] / volume.to(grads[1].dtype)[:, None, None]
    return result


def _strain(data, num_graphs: int, pos: torch.Tensor) -> torch.Tensor:
    cell = getattr(data, "cell", None)
    if cell is None:
        raise ValueError("compute_stress=True needs a periodic cell in data.cell [B, 3, 3]; "
                         "the stress of a non-periodic structure is undefined")
    cell = cell.reshape(-1, 3, 3)
    if cell.shape[0] != num_graphs:
        raise ValueError(f"data.cell has {cell.shape[0]} cells for {num_graphs} structures; "
                         "give one [3, 3] cell per structure")
    volume = torch.linalg.det(cell.detach().double()).abs()
    if bool((volume <= 1e-12).any()):
        bad = torch.nonzero(volume <= 1e-12).flatten().tolist()
        raise ValueError(f"structures {bad} have a cell of zero volume; the stress needs a "
                         "3-D periodic cell (set cell and pbc for every structure)")
    return torch.zeros(num_graphs, 3, 3, dtype=pos.dtype, device=pos.device, requires_grad=True)


def _as_energies(out: torch.Tensor, num_graphs: int) -> torch.Tensor:
    if not (out.shape == (num_graphs,) or out.shape == (num_graphs, 1)):
        raise ValueError(f"energy_and_forces needs a model returning [B] or [B, 1] energies "
                         f"(B = {num_graphs}), got shape {tuple(out.shape)}; per-atom or "
                         "multi-channel models have no forces")
    return out.reshape(num_graphs)
