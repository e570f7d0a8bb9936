"""The study model: one Res2Net backbone, two heads (classification and saliency).

The TPAMI study compares what CSF+Res2Net learns for salient object detection with what its
backbone learns for classification. Both models here hold the backbone as ``backbone``, so
its weights move between them by plain state-dict keys (`sodlab.models.transfer`):

* ``res2net-mini`` / ``res2net50``: backbone -> global average pool -> linear (class logits);
* ``csf-res2net-mini`` / ``csf-res2net50``: backbone -> CSF head -> saliency logits.

The mini preset (`res2net_mini_config`) is sized by measurement to train at CPU speed on
64 px images; the README section "The study model" gives the numbers and the reasons.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from torch import Tensor, nn

from ..errors import ConfigError
from ._registry import register_family, register_model
from .csf_res2net import CSFHeadConfig, CSFNet
from .res2net import Res2Net, Res2NetConfig, load_imagenet_weights

DEFAULT_NUM_CLASSES = 12

# The CPU-sized preset (see the README, "The study model"): the 50-layer model's structure
# and strides (4/8/16/32: stem stride 2 + max-pool) at a quarter of its width and one or two
# blocks per stage. Measured on 2 cores, dropping the max-pool (strides 2/4/8/16, 4x4 at
# 64 px) made the classifier 1.8-4.9x slower to train for the same parameters.
MINI = {
    "layers": [1, 1, 2, 1],
    "planes": [16, 32, 64, 128],
    "expansion": 4,
    "base_width": 26,
    "scale": 4,
    "stem_width": 16,
    "stem_stride": 2,
    "max_pool": True,
}
# CSF head on the mini stages: GroupNorm(8) (32 groups would exceed the narrow fused
# widths), fused widths at most 64 and a 32-channel merge (the authors' merge keeps the
# fused total, which at the finest scale costs more than the whole mini backbone).
MINI_HEAD = {"max_mid": 64, "gn_groups": 8, "out_channels": 32}


def res2net_mini_config(**overrides: Any) -> Res2NetConfig:
    """The ``res2net-mini`` backbone configuration, with any field overridden."""
    return Res2NetConfig.from_dict({**MINI, **overrides})


def mini_head(stage_channels: list[int], **overrides: Any) -> CSFHeadConfig:
    """The CSF head of ``csf-res2net-mini`` for the given stage widths (``overrides``: any
    `CSFHeadConfig.for_stages` argument)."""
    return CSFHeadConfig.for_stages(stage_channels, **{**MINI_HEAD, **overrides})


@dataclass
class Res2NetClassifierConfig:
    """``backbone``: a `Res2NetConfig` (or its dict); ``num_classes``: size of the linear
    head; ``dropout``: before the head."""

    backbone: Res2NetConfig
    num_classes: int = DEFAULT_NUM_CLASSES
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.backbone, Mapping):
            self.backbone = Res2NetConfig.from_dict(dict(self.backbone))
        if not isinstance(self.backbone, Res2NetConfig):
            raise ConfigError(f"backbone must be a Res2NetConfig or its dict, got {type(self.backbone).__name__}")
        if isinstance(self.num_classes, bool) or int(self.num_classes) != self.num_classes or self.num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        self.num_classes = int(self.num_classes)
        self.dropout = float(self.dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return {"backbone": self.backbone.to_dict(), "num_classes": self.num_classes, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Res2NetClassifierConfig":
        unknown = set(d) - {"backbone", "num_classes", "dropout"}
        if unknown:
            raise ConfigError(f"unknown Res2Net classifier config keys: {sorted(unknown)}")
        if "backbone" not in d:
            raise ConfigError("a Res2Net classifier config needs 'backbone'")
        return cls(**dict(d))


@register_family
class Res2NetClassifier(nn.Module):
    """Res2Net backbone -> global average pool -> linear: RGB (N,3,H,W) -> logits (N,K)."""

    family = "res2net-cls"
    task = "classification"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Res2NetClassifier":
        return cls(Res2NetClassifierConfig.from_dict(config))

    def __init__(self, config: Res2NetClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Res2Net(config.backbone)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.backbone.out_channels[-1], config.num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        """The four stage outputs of the backbone, finest first."""
        return self.backbone(x)

    def embed(self, x: Tensor) -> Tensor:
        """The pooled last-stage features (N, C) the head sees."""
        return self.features(x)[-1].mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.embed(x)))


def _backbone_config(config: Any, defaults: Mapping[str, Any]) -> Res2NetConfig:
    if config is None:
        return Res2NetConfig.from_dict(dict(defaults))
    if isinstance(config, Mapping):
        return Res2NetConfig.from_dict({**defaults, **config})
    if isinstance(config, Res2NetConfig):
        return config
    raise ConfigError(f"config must be a Res2NetConfig or a dict, got {type(config).__name__}")


@register_model("res2net-mini", "Res2Net-mini + global pool + linear head: the CPU-sized study classifier")
def _res2net_mini(num_classes: int = DEFAULT_NUM_CLASSES, config: Any = None, dropout: float = 0.0) -> Res2NetClassifier:
    return Res2NetClassifier(Res2NetClassifierConfig(_backbone_config(config, MINI), num_classes, dropout))


@register_model("csf-res2net-mini", "Res2Net-mini + CSF head: the CPU-sized study saliency model")
def _csf_res2net_mini(num_classes: int = 1, config: Any = None, head: Optional[Mapping[str, Any]] = None) -> CSFNet:
    backbone = Res2Net(_backbone_config(config, MINI))
    return CSFNet(backbone, mini_head(backbone.out_channels, **dict(head or {})), num_classes)


@register_model("res2net50", "Res2Net-50 v1b 26w x 4s + global pool + linear head (the backbone of csf-res2net50)")
def _res2net50(
    num_classes: int = DEFAULT_NUM_CLASSES,
    freeze_bn: bool = False,
    frozen_stages: int = -1,
    imagenet_weights: Optional[str | Path] = None,
    dropout: float = 0.0,
) -> Res2NetClassifier:
    cfg = Res2NetConfig(freeze_bn=freeze_bn, frozen_stages=frozen_stages)
    model = Res2NetClassifier(Res2NetClassifierConfig(cfg, num_classes, dropout))
    if imagenet_weights is not None:
        load_imagenet_weights(model.backbone, imagenet_weights)
    return model
