"""A registry of training datasets with one split API: ``load_splits(DataConfig) -> Splits``.

Built in: ``methane`` (the bundled distorted-CH4 set, fixed split), ``qm9`` (PyG's QM9 under
``data``, the standard random split), ``extxyz`` (an extended-XYZ file, split at random:
10% validation, 10% test unless ``num_val``/``num_test`` say otherwise) and ``ondisk`` (a
folder written by ``torch-pet preprocess``, read lazily, split as its extxyz file). Add others with
:func:`register_dataset`. ``num_train``/``num_val``/``num_test`` keep the first structures of
each split; asking for more than a split holds raises (nothing is silently truncated).
"""
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from torch_pet.config import NON_NEGATIVE_INT, POSITIVE_INT, Config, OptionError, option

__all__ = ["DataConfig", "Splits", "DATASETS", "register_dataset", "dataset_names",
           "load_splits", "readable_path"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def dataset_names() -> Tuple[str, ...]:
    return tuple(sorted(DATASETS))


@dataclass
class DataConfig(Config):
    """Which dataset, and how much of each split, a run uses."""

    dataset: str = option("methane", "registered dataset", choices=dataset_names)
    data: Optional[str] = option(None, "QM9 root folder, the extended-XYZ file, or the "
                                 "on-disk dataset folder (torch-pet preprocess)")
    target: str = option("U0", "QM9 target (U0, mu, gap, ...; see torch_pet.datasets.qm9)")
    num_train: Optional[int] = option(None, "keep the first N training structures (default: "
                                      "all)", check=POSITIVE_INT, metavar="N")
    num_val: Optional[int] = option(None, "keep the first N validation structures (default: "
                                    "all; extxyz: 10%)", check=POSITIVE_INT, metavar="N")
    num_test: Optional[int] = option(None, "keep the first N test structures (default: all; "
                                     "extxyz: 10%)", check=POSITIVE_INT, metavar="N")
    split_seed: int = option(0, "seed of the random split (qm9, extxyz)",
                             check=NON_NEGATIVE_INT)
    qm9_split: Tuple[int, int] = option((110_000, 10_000), "sizes (train, val) of the random "
                                        "QM9 split; the rest is the test set",
                                        check=POSITIVE_INT, metavar=("TRAIN", "VAL"))
    dtype: str = option("float32", "floating dtype of the data and the model",
                        choices=tuple(DTYPES))

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass
class Splits:
    """Train/validation/test datasets and what their structures carry.

    ``species``: the atomic numbers of the whole dataset (sorted); ``energy_key`` /
    ``forces_key`` / ``target_key``: the data keys to train on (None: absent).
    """

    train: object
    val: object
    test: object
    species: List[int]
    energy_key: Optional[str] = "energy"
    forces_key: Optional[str] = "forces"
    target_key: Optional[str] = None

    @property
    def out_channels(self) -> int:
        """Width of the trained output: 1 for energies, the target's size otherwise."""
        if self.target_key is None:
            return 1
        return self.train[0][self.target_key].numel()


Loader = Callable[[DataConfig], Splits]
DATASETS: Dict[str, Loader] = {}


def register_dataset(name: str, loader: Optional[Loader] = None):
    """Register ``loader(config) -> Splits`` under ``name`` (usable as a decorator)."""
    def add(fn: Loader) -> Loader:
        if not isinstance(name, str) or not name:
            raise ValueError(f"register_dataset: name must be a non-empty string, got {name!r}")
        DATASETS[name] = fn
        return fn

    return add if loader is None else add(loader)


def load_splits(config: DataConfig) -> Splits:
    """The splits of ``config.dataset``, cut to ``num_train``/``num_val``/``num_test``."""
    if not isinstance(config, DataConfig):
        raise TypeError(f"load_splits: config must be a DataConfig, got {type(config).__name__}")
    return DATASETS[config.dataset](config)


def _first(dataset, count: Optional[int], option_name: str, where: str):
    """The first ``count`` structures of ``dataset`` (all with None); more raises."""
    if count is None:
        return dataset
    if count > len(dataset):
        raise OptionError(option_name, f"must be <= {len(dataset)} (the size of the {where}), "
                          f"got {count}")
    return dataset[:count]


def readable_path(path: Optional[str], what: str, *, directory: bool = False) -> str:
    """``path`` when it names a readable file (or, with ``directory``, no non-directory);
    else an :class:`OptionError` on ``data`` saying what to give."""
    if path is None:
        raise OptionError("data", f"is required: give the path of the {what}")
    if directory:
        if os.path.exists(path) and not os.path.isdir(path):
            raise OptionError("data", f"{path} is not a directory; give the {what}")
        return path
    if not os.path.exists(path):
        raise OptionError("data", f"{path} does not exist; give the path of the {what}")
    if not os.path.isfile(path):
        raise OptionError("data", f"{path} is not a file; give the path of the {what}")
    if not os.access(path, os.R_OK):
        raise OptionError("data", f"{path} is not readable (permissions)")
    return path


@register_dataset("methane")
def _methane(config: DataConfig) -> Splits:
    from torch_pet.datasets.methane import DistortedMethane

    sizes = {name: len(index) for name, index in DistortedMethane.split_indices().items()}
    splits = {}
    for split, option_name in (("train", "num_train"), ("val", "num_val"), ("test", "num_test")):
        count = getattr(config, option_name)
        if count is not None and count > sizes[split]:
            raise OptionError(option_name, f"must be <= {sizes[split]} (the size of the methane "
                              f"{split} split), got {count}")
        splits[split] = DistortedMethane(split, num_structures=count, dtype=config.torch_dtype)
    return Splits(**splits, species=[1, 6])


@register_dataset("qm9")
def _qm9(config: DataConfig) -> Splits:
    from torch_geometric.datasets import QM9

    from torch_pet.datasets.qm9 import QM9ToPET, qm9_split

    root = readable_path(config.data or os.path.join("data", "QM9"), "QM9 root folder",
                     directory=True)
    transform = QM9ToPET(config.target, config.torch_dtype)
    dataset = QM9(root, transform=transform)  # downloads only when root holds no QM9
    species = sorted(set(torch.unique(dataset.z).tolist()))  # all molecules, no transform
    num_train, num_val = config.qm9_split
    index = qm9_split(len(dataset), num_train=num_train, num_val=num_val,
                      seed=config.split_seed)
    splits = {name: dataset[i] for name, i in index.items()}
    key = transform.key
    cut = {name: _first(splits[name], getattr(config, f"num_{name}"), f"num_{name}",
                        f"QM9 {name} split") for name in ("train", "val", "test")}
    energy = key == "energy"
    return Splits(**cut, species=species, energy_key="energy" if energy else None,
                  forces_key=None, target_key=None if energy else key)


@register_dataset("extxyz")
def _extxyz(config: DataConfig) -> Splits:
    from torch_pet.datasets.extxyz import ExtXYZDataset

    path = readable_path(config.data, "extended-XYZ file")
    try:
        full = ExtXYZDataset(path, dtype=config.torch_dtype)
    except ValueError as err:  # the reader names the file and the structure
        raise OptionError("data", f"is not a usable extended-XYZ file: {err}") from None
    except Exception as err:  # ASE's parsers raise many kinds of errors on a bad file
        raise OptionError("data", f"{path} cannot be read as extended XYZ ({type(err).__name__}: "
                          f"{err})") from None
    return _random_split(full, config, path, sorted(set(full.z.tolist())))


@register_dataset("ondisk")
def _ondisk(config: DataConfig) -> Splits:
    from torch_pet.datasets.ondisk import OnDiskStructures

    path = readable_path(config.data, "on-disk dataset folder (torch-pet preprocess)",
                     directory=True)
    try:
        full = OnDiskStructures(path, dtype=config.torch_dtype)
    except ValueError as err:
        raise OptionError("data", f"is not a usable on-disk dataset: {err}") from None
    return _random_split(full, config, path, full.species)


def _random_split(full, config: DataConfig, path: str, species: List[int]) -> Splits:
    """The random split of the extxyz and ondisk datasets (the same for both, so that a
    file and its preprocessed folder give the same splits)."""
    n_val = config.num_val if config.num_val is not None else max(1, len(full) // 10)
    n_test = config.num_test if config.num_test is not None else max(1, len(full) // 10)
    if n_val + n_test >= len(full):
        raise OptionError("data", f"{path} has {len(full)} structures: too few for a "
                          f"{n_val}-structure validation and a {n_test}-structure test set "
                          "(lower num_val/num_test)")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(config.split_seed))
    train = _first(full[perm[n_val + n_test:]], config.num_train, "num_train",
                   f"training split of {path}")
    first = full[0]
    return Splits(train=train, val=full[perm[:n_val]], test=full[perm[n_val:n_val + n_test]],
                  species=species, energy_key="energy" if "energy" in first else None,
                  forces_key="forces" if "forces" in first else None)
