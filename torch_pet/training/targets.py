"""What the Trainer compares and how it scores it: the trained outputs of a config, their
loss weights, and the one-line summary of an epoch."""
from torch_pet.outputs import ENERGY, FORCES, OutputKind
from torch_pet.training.config import TrainingConfig

__all__ = ["trained_outputs", "loss_weight", "summary_line"]


def trained_outputs(cfg: TrainingConfig) -> dict:
    """``{name: (data key, OutputKind)}`` of what the loss compares: the energy (and the
    forces), or the per-structure target (a vector if ``target_is_vector``)."""
    if cfg.target_key is not None:
        kind = OutputKind.VECTOR if cfg.target_is_vector else OutputKind.SCALAR
        return {"target": (cfg.target_key, kind)}
    outputs = {"energy": (cfg.energy_key, ENERGY)}
    if cfg.forces_key is not None:
        outputs["forces"] = (cfg.forces_key, FORCES)
    return outputs


def loss_weight(cfg: TrainingConfig, name: str) -> float:
    """w_E, w_F, or 1 for a generic target."""
    return {"energy": cfg.energy_weight, "forces": cfg.forces_weight}.get(name, 1.0)


def summary_line(record: dict) -> str:
    """One line per epoch (the progress output of rank 0)."""
    parts = [f"epoch {record['epoch']:4d}", f"lr {record['lr']:.2e}",
             f"loss {record['train_loss']:.4g}"]
    if "val_energy_mae_per_atom" in record:
        parts.append(f"val E MAE {1000 * record['val_energy_mae_per_atom']:.2f} meV/atom")
    if "val_forces_mae" in record:
        parts.append(f"val F MAE {1000 * record['val_forces_mae']:.1f} meV/A")
    if "val_target_mae" in record:
        parts.append(f"val MAE {record['val_target_mae']:.4g}")
    parts.append(f"{record['time_s']:.1f} s")
    return " | ".join(parts)
