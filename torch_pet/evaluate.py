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

from torch_pet.outputs import FORCES, KindLike, OutputKind
from torch_pet.rotations import random_rotations, rotate_structure


_INPUT_KEYS = ("z", "pos", "cell", "pbc", "batch", "ptr")


def _cast(batch, dtype, device):
    """Only the model inputs of ``batch`` (labels dropped), on ``device`` in ``dtype``."""
    inputs = batch.__class__()
    for key in _INPUT_KEYS:
        if key in batch:
            value = batch[key].to(device)
            inputs[key] = value.to(dtype) if value.is_floating_point() else value
    inputs._num_graphs = batch.num_graphs
    return inputs


def _energy_and_forces(model, batch):
    from torch_pet.nn.derivatives import energy_and_forces

    with torch.enable_grad():
        out = energy_and_forces(model, batch, create_graph=False)
    return out["energy"].detach().reshape(batch.num_graphs), out["forces"].detach()


def _outputs(model, batch, forces: bool):
    """(per-structure outputs [B, C], forces [N, 3] or None)."""
    if forces:
        energy, force = _energy_and_forces(model, batch)
        return energy.unsqueeze(-1), force
    with torch.no_grad():
        return model(batch).reshape(batch.num_graphs, -1), None


def _model_dtype(model) -> torch.dtype:
    return next(p for p in model.parameters()).dtype


def predict(model, dataset, *, forces: bool = True, batch_size: int = 64,
            device="cpu") -> Dict[str, object]:
    """Per-structure outputs [S, C] (energies: C = 1), forces [N, 3] and the time taken."""
    model.eval()
    dtype = _model_dtype(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    _outputs(model, _cast(next(iter(loader)), dtype, device), forces)  # warm-up
    outputs, all_forces = [], []
    start = time.perf_counter()
    for batch in loader:
        output, force = _outputs(model, _cast(batch, dtype, device), forces)
        outputs.append(output.cpu())
        if forces:
            all_forces.append(force.cpu())
    elapsed = time.perf_counter() - start
    return {"output": torch.cat(outputs), "forces": torch.cat(all_forces) if forces else None,
            "time_per_structure_s": elapsed / len(dataset)}


def error_metrics(prediction: dict, dataset, *, energy_key: Optional[str] = "energy",
                  forces_key: Optional[str] = "forces",
                  target_key: Optional[str] = None) -> Dict[str, float]:
    """Energy MAE/RMSE per atom (eV/atom), force MAE/RMSE (eV/A), or target MAE/RMSE."""
    refs, atoms = {"output": [], "forces": []}, []
    for batch in DataLoader(dataset, batch_size=1024, shuffle=False):
        key = target_key if target_key is not None else energy_key
        refs["output"].append(batch[key].double().reshape(batch.num_graphs, -1))
        if forces_key is not None:
            refs["forces"].append(batch[forces_key].double())
        atoms.append(torch.bincount(batch.batch, minlength=batch.num_graphs).double())
    error = prediction["output"].double() - torch.cat(refs["output"])
    out = {}
    if target_key is not None:
        out["target_mae"] = float(error.abs().mean())
        out["target_rmse"] = float(error.pow(2).mean().sqrt())
    else:
        per_atom = error[:, 0] / torch.cat(atoms)
        out["energy_mae_per_atom"] = float(per_atom.abs().mean())
        out["energy_rmse_per_atom"] = float(per_atom.pow(2).mean().sqrt())
    if forces_key is not None:
        forces_err = prediction["forces"].double() - torch.cat(refs["forces"])
        out["forces_mae"] = float(forces_err.abs().mean())
        out["forces_rmse"] = float(forces_err.pow(2).mean().sqrt())
    return out


def rotation_errors(model, dataset, *, forces: bool = True, num_rotations: int = 8,
                    num_structures: int = 50, dtype: torch.dtype = torch.float64,
                    seed: int = 0, batch_size: int = 64, device="cpu",
                    output_kind: KindLike = OutputKind.SCALAR) -> Dict[str, float]:
    """Mean and max rotation errors of the per-structure output (energies: eV) and of the
    forces (eV/A) under random proper rotations, on a copy of ``model`` cast to ``dtype``.

    The output's error is ``max|y(XRᵀ) - R·y(X)|`` over its components, R·y as its kind
    ``output_kind`` says (default invariant: energies, scalar targets); the forces' is
    the RMS over components of ``F(XRᵀ) - F(X)Rᵀ`` per structure.
    """
    output_kind = OutputKind.parse(output_kind, "output_kind")
    if output_kind.per_atom:
        raise ValueError("rotation_errors: output_kind must be a per-structure kind (the "
                         f"model's output is one row per structure), got {output_kind}")
    model = copy.deepcopy(model).to(dtype).eval()
    subset = dataset[:num_structures] if hasattr(dataset, "index_select") \
        else list(dataset)[:num_structures]
    generator = torch.Generator().manual_seed(seed)
    output_errors, force_errors = [], []
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False):
        batch = _cast(batch, dtype, device)
        output, force = _outputs(model, batch.clone(), forces)
        atoms = torch.bincount(batch.batch, minlength=batch.num_graphs)
        for _ in range(num_rotations):
            rotations = random_rotations(batch.num_graphs, generator=generator, dtype=dtype,
                                         device=device)
            rotated = rotate_structure(batch, rotations, labels={})  # inputs only
            output_rot, force_rot = _outputs(model, rotated, forces)
            expected_output = output_kind.rotate(output, rotations)
            output_errors.append((output_rot - expected_output).abs().amax(-1))
            if forces:
                expected = FORCES.rotate(force, rotations, batch.batch)
                sq = torch.zeros(batch.num_graphs, dtype=dtype, device=device).index_add(
                    0, batch.batch, (force_rot - expected).pow(2).sum(-1))
                force_errors.append((sq / (3 * atoms)).sqrt())
    output_errors = torch.cat(output_errors)
    out = {"rotation_energy_mean": float(output_errors.mean()),
           "rotation_energy_max": float(output_errors.max())}
    if forces:
        force_errors = torch.cat(force_errors)
        out["rotation_forces_mean"] = float(force_errors.mean())
        out["rotation_forces_max"] = float(force_errors.max())
    return out


def evaluate_model(model, dataset, *, name: str = "model", energy_key: Optional[str] = "energy",
                   forces_key: Optional[str] = "forces", target_key: Optional[str] = None,
                   batch_size: int = 64, num_rotations: int = 8,
                   num_rotation_structures: int = 50, seed: int = 0,
                   device="cpu", output_kind: KindLike = OutputKind.SCALAR) -> Dict[str, object]:
    """Errors, rotation errors and timing of ``model`` on ``dataset``; one dict.

    With ``forces_key`` the forces are -dE/dx of the model's energy; with ``target_key``
    the model's output is compared with that per-structure target instead of energies
    (``output_kind``: how it rotates, for the rotation errors; default invariant).
    """
    forces = forces_key is not None
    prediction = predict(model, dataset, forces=forces, batch_size=batch_size, device=device)
    out = {"name": name, "num_structures": len(dataset),
           "time_per_structure_s": prediction["time_per_structure_s"],
           "threads": torch.get_num_threads()}
    out.update(error_metrics(prediction, dataset, energy_key=energy_key, forces_key=forces_key,
                             target_key=target_key))
    out.update(rotation_errors(model, dataset, forces=forces, num_rotations=num_rotations,
                               num_structures=num_rotation_structures, seed=seed,
                               batch_size=batch_size, device=device,
                               output_kind=output_kind))
    out["prediction"] = prediction
    return out


def results_table(results: List[dict], reference: Optional[str] = None) -> str:
    """A Markdown table like the paper's: errors, rotation errors, time per structure.

    With ``reference`` (a result name, e.g. y0), a last line gives every other model's
    relative change of force MAE (or target MAE) with respect to it.
    """
    def fmt(r, key, scale, spec):
        return format(scale * r[key], spec) if key in r else "-"

    def pair(r, key):
        if f"{key}_mean" not in r:
            return "-"
        return f"{r[key + '_mean']:.1e} / {r[key + '_max']:.1e}"

    target = "target_mae" in results[0]
    header = ("| model | MAE | RMSE " if target else
              "| model | E MAE (meV/atom) | E RMSE (meV/atom) ")
    header += ("| F MAE (meV/A) | F RMSE (meV/A) | rot. err. E mean / max (eV) "
               "| rot. err. F mean / max (eV/A) | time / structure (ms) |")
    lines = [header, "|" + "---|" * 8]
    for r in results:
        first = (f"{fmt(r, 'target_mae', 1, '.4g')} | {fmt(r, 'target_rmse', 1, '.4g')}"
                 if target else f"{fmt(r, 'energy_mae_per_atom', 1e3, '.2f')} "
                 f"| {fmt(r, 'energy_rmse_per_atom', 1e3, '.2f')}")
        lines.append(
            f"| {r['name']} | {first} | {fmt(r, 'forces_mae', 1e3, '.1f')} "
            f"| {fmt(r, 'forces_rmse', 1e3, '.1f')} | {pair(r, 'rotation_energy')} "
            f"| {pair(r, 'rotation_forces')} | {fmt(r, 'time_per_structure_s', 1e3, '.2f')} |")
    if reference is not None:
        key, label, scale, unit = (
            ("target_mae", "MAE", 1.0, "") if target else
            ("forces_mae", "force MAE", 1e3, " meV/A") if "forces_mae" in results[0] else
            ("energy_mae_per_atom", "energy MAE", 1e3, " meV/atom"))
        base = next(r for r in results if r["name"] == reference)
        for r in results:
            if r is not base:
                change = 100 * (r[key] / base[key] - 1)
                lines.append(f"\n{label} of {r['name']} vs {reference}: {change:+.2f} % "
                             f"({scale * (r[key] - base[key]):+.3g}{unit})")
    return "\n".join(lines)


def summary(result: dict) -> dict:
    """A JSON-serialisable copy of an :func:`evaluate_model` result (no tensors)."""
    return {k: v for k, v in result.items() if k != "prediction"
            and (not isinstance(v, float) or math.isfinite(v))}
