"""Read-outs on frozen features: how much category information a representation carries.

Both are closed-form (no training loop), so a probe measures the features, not an optimiser:
scikit-learn's `NearestCentroid` and `Ridge` (Cholesky solver) on features standardised with
the training statistics (`StandardScaler`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.neighbors import NearestCentroid
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from ..errors import ConfigError


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().double().numpy() if isinstance(x, Tensor) else x, dtype=np.float64)


def ncm_predict(train_x, train_y, test_x) -> np.ndarray:
    """Nearest-class-mean labels for ``test_x`` (N, D) from class means of ``train_x``;
    features are standardised with the training statistics first."""
    tx, ty, qx = _np(train_x), np.asarray(train_y, dtype=int), _np(test_x)
    scaler = StandardScaler().fit(tx)
    return NearestCentroid().fit(scaler.transform(tx), ty).predict(scaler.transform(qx))


def ncm_accuracy(train_x, train_y, test_x, test_y) -> float:
    """Accuracy of `ncm_predict` on ``(test_x, test_y)``."""
    return float((ncm_predict(train_x, train_y, test_x) == np.asarray(test_y)).mean())


def chance_normalised(accuracy: float, n_classes: int) -> float:
    """(accuracy - 1/K) / (1 - 1/K): 0 at chance, 1 when perfect, comparable across K."""
    if n_classes < 2:
        raise ConfigError(f"need at least 2 classes, got {n_classes}")
    return (accuracy - 1.0 / n_classes) / (1.0 - 1.0 / n_classes)


def ridge_head(features, labels: Sequence[int], num_classes: int, alpha: float = 1e-2) -> nn.Linear:
    """A linear layer (D -> K) fitted in closed form to one-hot ``labels``: ridge regression on
    standardised features with penalty ``alpha`` per training row (scikit-learn's ``alpha`` is
    ``alpha * N``), folded back into the layer's weights so that it reads raw features."""
    x, y = _np(features), np.asarray(labels, dtype=int)
    if len(x) != len(y):
        raise ConfigError(f"{len(x)} feature rows for {len(y)} labels")
    scaler = StandardScaler().fit(x)
    ridge = Ridge(alpha=alpha * len(x), fit_intercept=True, solver="cholesky").fit(scaler.transform(x), np.eye(num_classes)[y])
    w = ridge.coef_ / scaler.scale_  # (K, D) on raw features
    lin = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(ridge.intercept_ - w @ scaler.mean_))
    return lin
