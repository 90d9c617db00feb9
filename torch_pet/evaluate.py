"""Evaluation of energy/force models on a test split: errors, rotation errors, timings.

Used for the paper's comparison of the raw backbone y0 with the ECSE-symmetrized yS
(same weights). Reported per model:

* energy MAE / RMSE per atom (|E_pred - E| / N per structure) and force MAE / RMSE over
  all Cartesian components;
* the rotation error: for random proper rotations R, ``|E(Rx) - E(x)|`` (eV) and the RMS
  over components of ``F(Rx) - F(x) R^T`` (eV/A), mean and max over all (structure,
  rotation) pairs, evaluated on a float64 copy of the model so that the exactness of yS is
  visible down to float64 round-off;
* the wall time per structure of energy + forces (batched, after one warm-up batch).
"""
import copy
import math
import time
from typing import Dict, List, Optional

import torch
from torch_geometric.loader import DataLoader

from torch_pet.training.augment import random_rotations, rotate_batch


def _cast(batch, dtype, device):
    batch = batch.to(device)
    for key, value in batch.items():
        if torch.is_tensor(value) and value.is_floating_point():
            batch[key] = value.to(dtype)
    return batch


def _energy_and_forces(model, batch):
    from torch_pet.nn.derivatives import energy_and_forces

    with torch.enable_grad():
        out = energy_and_forces(model, batch, create_graph=False)
    return out["energy"].detach().reshape(batch.num_graphs), out["forces"].detach()


def _model_dtype(model) -> torch.dtype:
    return next(p for p in model.parameters()).dtype


def predict(model, dataset, *, batch_size: int = 64, device="cpu") -> Dict[str, object]:
    """Energies [S] and forces [N, 3] of every structure, and the time they took."""
    model.eval()
    dtype = _model_dtype(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    warm = next(iter(loader))
    _energy_and_forces(model, _cast(warm, dtype, device))
    energies, forces = [], []
    start = time.perf_counter()
    for batch in loader:
        energy, force = _energy_and_forces(model, _cast(batch, dtype, device))
        energies.append(energy.cpu())
        forces.append(force.cpu())
    elapsed = time.perf_counter() - start
    return {"energy": torch.cat(energies), "forces": torch.cat(forces),
            "time_per_structure_s": elapsed / len(dataset)}


def error_metrics(prediction: dict, dataset, *, energy_key: str = "energy",
                  forces_key: str = "forces") -> Dict[str, float]:
    """Energy MAE/RMSE per atom (eV/atom) and force MAE/RMSE (eV/A)."""
    ref_energy, ref_forces, atoms = [], [], []
    for batch in DataLoader(dataset, batch_size=1024, shuffle=False):
        ref_energy.append(batch[energy_key].double())
        ref_forces.append(batch[forces_key].double())
        atoms.append(torch.bincount(batch.batch, minlength=batch.num_graphs).double())
    energy_err = (prediction["energy"].double() - torch.cat(ref_energy)) / torch.cat(atoms)
    forces_err = prediction["forces"].double() - torch.cat(ref_forces)
    return {
        "energy_mae_per_atom": float(energy_err.abs().mean()),
        "energy_rmse_per_atom": float(energy_err.pow(2).mean().sqrt()),
        "forces_mae": float(forces_err.abs().mean()),
        "forces_rmse": float(forces_err.pow(2).mean().sqrt()),
    }


def rotation_errors(model, dataset, *, num_rotations: int = 8, num_structures: int = 50,
                    dtype: torch.dtype = torch.float64, seed: int = 0, batch_size: int = 64,
                    device="cpu") -> Dict[str, float]:
    """Mean and max rotation errors of energies (eV) and forces (eV/A) under proper rotations.

    A copy of ``model`` is cast to ``dtype`` (float64 by default).
    """
    model = copy.deepcopy(model).to(dtype).eval()
    subset = dataset[:num_structures] if hasattr(dataset, "index_select") \
        else list(dataset)[:num_structures]
    generator = torch.Generator().manual_seed(seed)
    energy_errors, force_errors = [], []
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
        batch = _cast(batch, dtype, device)
        energy, forces = _energy_and_forces(model, batch.clone())
        for _ in range(num_rotations):
            rotations = random_rotations(batch.num_graphs, generator=generator, dtype=dtype,
                                         device=device)
            rotated = rotate_batch(batch, rotations, atom_vector_keys=("pos",),
                                   structure_tensor_keys=())
            energy_rot, forces_rot = _energy_and_forces(model, rotated)
            expected = torch.einsum("nij,nj->ni", rotations[batch.batch], forces)
            energy_errors.append((energy_rot - energy).abs())
            per_atom_sq = (forces_rot - expected).pow(2).sum(-1)
            sq = torch.zeros(batch.num_graphs, dtype=dtype, device=device).index_add(
                0, batch.batch, per_atom_sq)
            atoms = torch.bincount(batch.batch, minlength=batch.num_graphs)
            force_errors.append((sq / (3 * atoms)).sqrt())
    energy_errors, force_errors = torch.cat(energy_errors), torch.cat(force_errors)
    return {
        "rotation_energy_mean": float(energy_errors.mean()),
        "rotation_energy_max": float(energy_errors.max()),
        "rotation_forces_mean": float(force_errors.mean()),
        "rotation_forces_max": float(force_errors.max()),
    }


def evaluate_model(model, dataset, *, name: str = "model", batch_size: int = 64,
                   num_rotations: int = 8, num_rotation_structures: int = 50, seed: int = 0,
                   device="cpu") -> Dict[str, object]:
    """Errors, rotation errors and timing of ``model`` on ``dataset``; one dict."""
    prediction = predict(model, dataset, batch_size=batch_size, device=device)
    out = {"name": name, "num_structures": len(dataset),
           "time_per_structure_s": prediction["time_per_structure_s"],
           "threads": torch.get_num_threads()}
    out.update(error_metrics(prediction, dataset))
    out.update(rotation_errors(model, dataset, num_rotations=num_rotations,
                               num_structures=num_rotation_structures, seed=seed,
                               batch_size=batch_size, device=device))
    out["prediction"] = prediction
    return out


def results_table(results: List[dict], reference: Optional[str] = None) -> str:
    """A Markdown table like the paper's: errors, rotation errors, time per structure.

    With ``reference`` (a result name, e.g. y0), a last line gives every other model's
    relative change of force MAE with respect to it.
    """
    header = ("| model | E MAE (meV/atom) | E RMSE (meV/atom) | F MAE (meV/A) | F RMSE (meV/A) "
              "| rot. err. E mean / max (eV) | rot. err. F mean / max (eV/A) "
              "| time / structure (ms) |")
    lines = [header, "|" + "---|" * 8]
    for r in results:
        lines.append(
            f"| {r['name']} | {1e3 * r['energy_mae_per_atom']:.2f} "
            f"| {1e3 * r['energy_rmse_per_atom']:.2f} | {1e3 * r['forces_mae']:.1f} "
            f"| {1e3 * r['forces_rmse']:.1f} "
            f"| {r['rotation_energy_mean']:.1e} / {r['rotation_energy_max']:.1e} "
            f"| {r['rotation_forces_mean']:.1e} / {r['rotation_forces_max']:.1e} "
            f"| {1e3 * r['time_per_structure_s']:.2f} |")
    if reference is not None:
        base = next(r for r in results if r["name"] == reference)
        for r in results:
            if r is not base:
                change = 100 * (r["forces_mae"] / base["forces_mae"] - 1)
                lines.append(f"\nforce MAE of {r['name']} vs {reference}: {change:+.2f} % "
                             f"({1e3 * (r['forces_mae'] - base['forces_mae']):+.2f} meV/A)")
    return "\n".join(lines)


def summary(result: dict) -> dict:
    """A JSON-serialisable copy of an :func:`evaluate_model` result (no tensors)."""
    return {k: v for k, v in result.items() if k != "prediction"
            and (not isinstance(v, float) or math.isfinite(v))}
