"""Where a CSNet configuration puts its channels: one row per (layer, scale[, dilation]),
optionally next to the configuration it was learned from. (The figure of it is
`sodlab.viz.plot_allocation`.)"""
from __future__ import annotations

from typing import Optional

import pandas as pd
from torch import nn

from ..errors import ConfigError
from ..models.csnet import CSNetConfig

__all__ = ["allocation_table"]


def allocation_table(config: CSNetConfig | nn.Module, reference: Optional[CSNetConfig | nn.Module] = None) -> pd.DataFrame:
    """Channels of a CSNet configuration, one row per (layer, scale[, dilation]).

    Columns: ``kind`` (``"block"``: an ILBlock output; ``"csf_fuse"``, ``"dilation"`` (a
    multi-dilation group of the CSF head), ``"csf_merge"``), ``block`` (block name or CSF
    layer), ``index`` (block number, -1 in the head), ``stage`` (0 for the stem, 5 for the
    head), ``scale`` (0 = full resolution), ``dilation`` (0 unless ``kind == "dilation"``),
    ``channels``. With ``reference`` (e.g. the unpruned configuration it was learned from),
    also ``reference_channels`` and ``kept`` (their ratio; NaN where the reference is 0).
    """
    cfg = _as_config(config)
    rows = _allocation_rows(cfg)
    df = pd.DataFrame(rows, columns=["kind", "block", "index", "stage", "scale", "dilation", "channels"])
    if reference is not None:
        ref = pd.DataFrame(_allocation_rows(_as_config(reference)), columns=df.columns)
        keys = ["kind", "block", "index", "stage", "scale", "dilation"]
        if len(ref) != len(df) or not (ref[keys].values == df[keys].values).all():
            raise ConfigError("allocation_table: the reference configuration has a different structure")
        df["reference_channels"] = ref["channels"].values
        df["kept"] = df["channels"] / df["reference_channels"].where(df["reference_channels"] > 0)
    return df


def _as_config(config: CSNetConfig | nn.Module) -> CSNetConfig:
    if isinstance(config, CSNetConfig):
        return config
    cfg = getattr(getattr(config, "module", config), "config", None)
    if not isinstance(cfg, CSNetConfig):
        raise ConfigError(f"expected a CSNetConfig or a CSNet, got {type(config).__name__}")
    return cfg


def _allocation_rows(cfg: CSNetConfig) -> list[tuple]:
    rows = []
    starts = [1 + sum(cfg.stages[:k]) for k in range(4)]
    for b, (_, outs) in enumerate(cfg.blocks):
        stage = 0 if b == 0 else max(k + 1 for k, s in enumerate(starts) if b >= s)
        for s, c in enumerate(outs):
            rows.append(("block", cfg.block_name(b), b, stage, s, 0, int(c)))
    for s, c in enumerate(cfg.csf_mid):
        rows.append(("csf_fuse", "csf.fuse", -1, 5, s, 0, int(c)))
    for s, dil in enumerate(cfg.csf_dilation_channels):
        for d, c in zip(cfg.dilations, dil):
            rows.append(("dilation", "csf.ms", -1, 5, s, int(d), int(c)))
    rows.append(("csf_merge", "csf.merge", -1, 5, 0, 0, int(cfg.csf_out)))
    return rows

