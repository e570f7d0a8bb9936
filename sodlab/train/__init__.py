"""Training: `fit` (crash-safe, resumable, single- or multi-process), `TrainConfig`,
shipped recipes (`load_recipe`) and BN-scale regularisers (`sodlab.train.regularizers`)."""
from __future__ import annotations

from .regularizers import DynamicWeightDecay, L1Gamma, L2Gamma, NoRegularizer, Regularizer, build_regularizer, find_bn_units
from ..metrics import SaliencyStats  # its home is sodlab.metrics; kept here for old imports
from .trainer import NonFiniteLossError, TrainConfig, fit, list_recipes, load_recipe, read_recipe

__all__ = [
    "fit",
    "TrainConfig",
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
