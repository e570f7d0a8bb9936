"""The classification twin of CSNet: the same encoder, a global average pool and a linear head.

The semantic studies compare what one architecture learns for saliency and for
classification, so the twin keeps CSNet's module names (``stem``, ``stage1``..``stage4``):
an encoder's weights move between the two by plain state-dict keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .csnet import INPUT_MULTIPLE, CSNet, CSNetConfig, add_encoder, csnet_config, encoder_features
from ._registry import register_family, register_model

ENCODER_PREFIXES = ("stem.", "stage1.", "stage2.", "stage3.", "stage4.")


@dataclass
class ClassifierConfig:
    """``encoder``: a CSNet channel configuration (only its blocks and stages are used);
    ``num_classes``: size of the linear head; ``dropout``: before the head."""

    encoder: CSNetConfig
    num_classes: int
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = CSNetConfig.from_dict(dict(self.encoder))
        if not isinstance(self.encoder, CSNetConfig):
            raise ConfigError(f"encoder must be a CSNetConfig or its dict, got {type(self.encoder).__name__}")
        self.num_classes = int(self.num_classes)
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")
        self.dropout = float(self.dropout)

    @property
    def feature_channels(self) -> int:
        return self.encoder.blocks[-1][1][0]

    def to_dict(self) -> dict:
        return {"encoder": self.encoder.to_dict(), "num_classes": self.num_classes, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClassifierConfig":
        unknown = set(d) - {"encoder", "num_classes", "dropout"}
        if unknown:
            raise ConfigError(f"unknown classifier config keys: {sorted(unknown)}")
        if "encoder" not in d or "num_classes" not in d:
            raise ConfigError("a classifier config needs 'encoder' and 'num_classes'")
        return cls(**dict(d))


@register_family
class CSNetClassifier(nn.Module):
    """CSNet encoder -> global average pool -> linear: RGB (N,3,H,W) -> class logits (N,K)."""

    family = "csnet-cls"
    task = "classification"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "CSNetClassifier":
        return cls(ClassifierConfig.from_dict(config))

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        add_encoder(self, config.encoder)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_channels, config.num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        """Full-resolution output of stages 2, 3 and 4, as `CSNet.features`."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % INPUT_MULTIPLE or x.shape[-2] % INPUT_MULTIPLE:
            raise ValueError(f"the CSNet classifier takes (N, 3, H, W) with H, W multiples of {INPUT_MULTIPLE}; got {tuple(x.shape)}")
        return encoder_features(self, x)

    def embed(self, x: Tensor) -> Tensor:
        """The pooled encoder features (N, C) the head sees."""
        return self.features(x)[-1].mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.embed(x)))


@register_model("csnet-cls", "CSNet encoder + global pool + linear head: the classification twin of `csnet`")
def _csnet_cls(width: int = 20, split: Sequence[float] = (0.5, 0.5), num_classes: int = 10, config: Any = None, dropout: float = 0.0) -> CSNetClassifier:
    if config is None:
        config = csnet_config(width, split)
    elif isinstance(config, Mapping):
        config = CSNetConfig.from_dict(dict(config))
    return CSNetClassifier(ClassifierConfig(encoder=config, num_classes=num_classes, dropout=dropout))


# --- moving an encoder between the two tasks ------------------------------------------
def encoder_state(model: nn.Module) -> dict[str, Tensor]:
    """The encoder part (``stem``, ``stage1``..``stage4``) of a CSNet or its classifier twin."""
    model = getattr(model, "module", model)
    state = {k: v for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
    if not state:
        raise ConfigError(f"{type(model).__name__} has no CSNet encoder (no stem/stage1..4 weights)")
    return state


@torch.no_grad()
def transfer_encoder(src: nn.Module, dst: nn.Module) -> list[str]:
    """Copy the encoder weights of ``src`` into ``dst`` (SOD -> classifier or back).

    Both must have the same encoder channel configuration; a mismatch raises a
    `ConfigError` naming the first differing key. Returns the copied keys.
    """
    source = encoder_state(src)
    target = encoder_state(dst)
    if set(source) != set(target):
        missing = sorted(set(target) ^ set(source))
        raise ConfigError(f"encoders differ in structure (first differing key: {missing[0]})")
    for k, v in source.items():
        if v.shape != target[k].shape:
            raise ConfigError(f"encoder weight {k}: source shape {tuple(v.shape)} does not fit {tuple(target[k].shape)}")
    dst_model = getattr(dst, "module", dst)
    dst_model.load_state_dict(source, strict=False)
    return sorted(source)


def classifier_from_sod(sod: CSNet, num_classes: int, copy_weights: bool = True) -> CSNetClassifier:
    """A classifier twin on ``sod``'s encoder configuration, with its weights when asked."""
    cls = CSNetClassifier(ClassifierConfig(encoder=CSNetConfig.from_dict(sod.config.to_dict()), num_classes=num_classes))
    cls.registry_name = "csnet-cls"
    if copy_weights:
        transfer_encoder(sod, cls)
    return cls


def sod_from_classifier(cls: CSNetClassifier, num_classes: int = 1, copy_weights: bool = True) -> CSNet:
    """A CSNet for saliency on ``cls``'s encoder (fresh CSF head and output layer)."""
    cfg = CSNetConfig.from_dict({**cls.config.encoder.to_dict(), "num_classes": num_classes})
    sod = CSNet(cfg)
    sod.registry_name = "csnet"
    if copy_weights:
        transfer_encoder(cls, sod)
    return sod
