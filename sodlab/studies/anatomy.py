"""Study 2, anatomy: parameters and MACs per model, and the learned channel allocation."""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import pandas as pd
from torch import nn

from ..models.csnet import CSNetConfig
from ..models.registry import create_model, list_models
from ..profiling import profile
from ..prune import allocation_table as _alloc

log = logging.getLogger(__name__)


def anatomy_table(models: Sequence[str | tuple[str, Mapping[str, Any]]] = ("csnet", "csnet-L-x1", "csnet-L-x2", "csf-res2net50"), sizes: Sequence[int] = (224,)) -> pd.DataFrame:
    """Parameters and MACs per model and input size; entries are registry names or
    ``(name, kwargs)``; names that are not registered are skipped (logged)."""
    known = set(list_models())
    rows = []
    for entry in models:
        name, kw = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        if name not in known:
            log.info("anatomy_table: %s is not registered, skipped", name)
            continue
        model = create_model(name, **kw).eval()
        label = name + "".join(f" {k}={v}" for k, v in kw.items())
        for size in sizes:
            p = profile(model, size)
            rows.append({"model": label, "size": size, "params": int(p["params"]), "macs": int(p["macs"]), "gmacs": p["macs"] / 1e9})
    return pd.DataFrame(rows, columns=["model", "size", "params", "macs", "gmacs"])


def allocation_table(config: CSNetConfig | nn.Module | str, reference: Optional[CSNetConfig | nn.Module | str] = None) -> pd.DataFrame:
    """Channel allocation of a CSNet configuration (a config, a model or a registry name),
    per block, scale and dilation, optionally against a ``reference`` configuration
    (`sodlab.prune.allocation_table`)."""
    if isinstance(config, str):
        config = create_model(config).config
    if isinstance(reference, str):
        reference = create_model(reference).config
    return _alloc(config, reference)
