"""Versioned, verified checkpoints: a trained model (and its auxiliary model) plus training
state.

A checkpoint is a ``torch.save``d dict that loads with ``weights_only=True``::

    {
      "format": "torch_pet.checkpoint", "format_version": 2, "torch_pet_version": "0.1.0",
      "model":     {"class": "PET", "hyperparameters": {...plain data...},
                    "species": [...], "self_energies": Tensor[num_species, out],
                    "state_dict": {...}, "dtype": "float32"},
      "aux_model": same layout, or None,
      "optimizer": optimizer.state_dict() or None,   # for resuming
      "scheduler": scheduler.state_dict() or None,
      "trainer":   trainer state (epoch, config, sigma, history, ...) or None,
      "metadata":  free-form dict (dataset, metrics, ...),
      "content_sha256": sha256 of everything above (integrity.content_hash),
    }

Loading (:func:`load_checkpoint`) checks the layout and the content hash; any damaged,
truncated, empty or foreign file raises :class:`CheckpointError` naming the file. Models
are rebuilt (:func:`build_model`, :func:`load_model`) only from registered classes
(:mod:`torch_pet.checkpoint.registry`): a name in the file is never imported or called.
A file written by a newer format fails with a message asking for a newer torch_pet; an
older format is upgraded step by step by ``UPGRADES`` (1 -> 2: import paths become registry
names; format 1 has no hash and loads with a :class:`CheckpointWarning`). See
``docs/security.md`` for what is trusted and what is verified.
"""
from torch_pet.checkpoint.integrity import (CheckpointError, CheckpointWarning,
                                            check_plain_data, content_hash)
from torch_pet.checkpoint.registry import (build_model, builtin_models, model_class_name,
                                           register_model, unregister_model)
from torch_pet.checkpoint.storage import (FORMAT, FORMAT_VERSION, UPGRADES, load_checkpoint,
                                          load_model, model_hyperparameters,
                                          save_checkpoint, upgrade_checkpoint)

__all__ = ["CheckpointError", "CheckpointWarning", "FORMAT", "FORMAT_VERSION", "UPGRADES",
           "build_model", "builtin_models", "check_plain_data", "content_hash",
           "load_checkpoint", "load_model", "model_class_name", "model_hyperparameters",
           "register_model", "save_checkpoint", "unregister_model", "upgrade_checkpoint"]
