"""Training: the Trainer, per-species self energies and O(3) rotational augmentation."""
from torch_pet.training.augment import augment_batch
from torch_pet.training.self_energies import fit_self_energies, species_counts
from torch_pet.training.trainer import Trainer, TrainingConfig, plot_learning_curve

__all__ = ["Trainer", "TrainingConfig", "augment_batch", "fit_self_energies",
           "plot_learning_curve", "species_counts"]
