"""Figures of training runs and evaluations (matplotlib with the Agg backend, imported
lazily so that nothing else needs matplotlib)."""
from typing import List

import torch

__all__ = ["plot_learning_curve", "plot_results"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(history: List[dict], path: str) -> None:
    """Validation errors (when validated) and training loss per epoch, log scale."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    panels = [(k, label) for k, label in [
        ("val_energy_mae_per_atom", "val energy MAE / atom"),
        ("val_forces_mae", "val force MAE"), ("val_target_mae", "val target MAE"),
        ("train_loss", "train loss")] if k in history[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, label) in zip(list(axes) if len(panels) > 1 else [axes], panels):
        ax.plot(epochs, [r[key] for r in history], marker="o", markersize=3)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_results(results: List[dict], history: List[dict], reference_forces: torch.Tensor,
                 path: str) -> None:
    """The main job's figure: validation learning curve, test-set force parity of y0 and
    yS against the reference, and the float64 rotation errors of each model.

    ``results``: :func:`torch_pet.evaluate.evaluate_model` outputs (with predictions);
    ``reference_forces`` [N, 3]: the reference forces of the evaluated test structures.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    epochs = [r["epoch"] for r in history]
    axes[0].plot(epochs, [1e3 * r["val_forces_mae"] for r in history], marker="o", ms=3,
                 label="force MAE (meV/A)")
    axes[0].plot(epochs, [1e3 * r["val_energy_mae_per_atom"] for r in history], marker="s",
                 ms=3, label="energy MAE (meV/atom)")
    axes[0].set(yscale="log", xlabel="epoch", title="validation learning curve")
    reference = reference_forces.flatten()
    for r, marker in zip(results, "o^sv"):
        axes[1].scatter(reference, r["prediction"]["forces"].flatten(), s=3, alpha=0.4,
                        marker=marker, label=r["name"])
    low, high = float(reference.min()), float(reference.max())
    axes[1].plot([low, high], [low, high], color="black", lw=0.8)
    axes[1].set(xlabel="GFN2-xTB force component (eV/A)", ylabel="predicted (eV/A)",
                title="test-set force parity")
    names = [r["name"].replace(" (", "\n(") for r in results]
    for offset, key in ((-0.2, "rotation_energy_max"), (0.2, "rotation_forces_max")):
        axes[2].bar([i + offset for i in range(len(results))],
                    [max(r[key], 1e-17) for r in results], width=0.4,
                    label="energy (eV)" if "energy" in key else "forces (eV/A)")
    axes[2].set(yscale="log", xticks=range(len(results)), title="max rotation error (float64)")
    axes[2].set_xticklabels(names, fontsize=8)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
