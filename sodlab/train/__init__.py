"""Training: `fit` (crash-safe, resumable, single- or multi-process), `TrainConfig`,
shipped recipes (`load_recipe`) and BN-scale regularisers (`sodlab.train.regularizers`).

Modules: ``config`` (TrainConfig), ``recipes``, ``data`` (datasets, loaders), ``rng``
(seeds and RNG states), ``loss``, ``optim``, ``validation``, ``rundir`` (the run folder and
its files), ``trainer`` (`fit`: restore, epochs, save), ``regularizers``, ``distributed``."""
from __future__ import annotations

from .regularizers import DynamicWeightDecay, L1Gamma, L2Gamma, NoRegularizer, Regularizer, build_regularizer, find_bn_units
from ..metrics import SaliencyStats  # its home is sodlab.metrics; kept here for old imports
from .config import TrainConfig
from .data import folder_dataset
from .recipes import list_recipes, load_recipe, read_recipe
from .trainer import NonFiniteLossError, fit

__all__ = [
    "fit",
    "TrainConfig",
    "folder_dataset",
    "load_recipe",
    "read_recipe",
    "list_recipes",
    "NonFiniteLossError",
    "SaliencyStats",
    "Regularizer",
    "DynamicWeightDecay",
    "L2Gamma",
    "L1Gamma",
    "NoRegularizer",
    "build_regularizer",
    "find_bn_units",
]
