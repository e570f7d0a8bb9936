"""CSF on any backbone: `CSFNet(backbone, head)`, and the authors' CSF+Res2Net.

A backbone is any module mapping RGB ``(N, 3, H, W)`` to a list of stage features (finest
first). The Cross-Stage Fusion head (`sodlab.models.csf.CSFHead`) treats the stages as the
scales of one gOctConv; with ``resample="bilinear"`` the stages need not be exact halves
of each other, so non-multiple-of-32 inputs work too.

Models built from known backbones (`Res2Net`, `CSNetEncoder`) carry a plain-data
`CSFNetConfig`, so `sodlab.save`/`sodlab.load` rebuild them; a custom backbone module runs
and trains the same way but can only be saved as a state dict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ._registry import register_family, register_model
from ._weights import load_mapped_state, read_foreign_state_dict, rename
from .csf import DEFAULT_DILATIONS, CSFHead
from .csnet import INPUT_MULTIPLE, CSNetConfig, add_encoder, csnet_config, encoder_features
from .res2net import Res2Net, Res2NetConfig, load_imagenet_weights

# Widest fused scale of the authors' head (Res2Net's 1024/2048-channel stages fuse to 512).
DEFAULT_MAX_MID = 512


def split_dilations(channels: int, n: int) -> list[int]:
    """``channels`` over ``n`` dilations: equal shares, the remainder to the largest one."""
    each = channels // n
    return [each] * (n - 1) + [channels - each * (n - 1)]


@dataclass
class CSFHeadConfig:
    """Plain data for `CSFHead` (see its arguments). Defaults are the CSF+Res2Net variant:
    GroupNorm(32) + PReLU, bilinear resizing between scales, no x100 weight gain."""

    in_channels: list[int]
    mid_channels: list[int]
    dilation_channels: list[list[int]]
    out_channels: int
    dilations: list[int] = field(default_factory=lambda: list(DEFAULT_DILATIONS))
    norm: str = "gn"
    gn_groups: int = 32
    resample: str = "bilinear"
    gain: float = 1.0

    def __post_init__(self) -> None:
        self.in_channels = [int(c) for c in self.in_channels]
        self.mid_channels = [int(c) for c in self.mid_channels]
        self.dilation_channels = [[int(c) for c in d] for d in self.dilation_channels]
        self.out_channels = int(self.out_channels)
        self.dilations = [int(d) for d in self.dilations]
        self.gn_groups, self.gain = int(self.gn_groups), float(self.gain)

    @classmethod
    def for_stages(
        cls,
        in_channels: Sequence[int],
        mid_channels: Optional[Sequence[int]] = None,
        out_channels: Optional[int] = None,
        max_mid: int = DEFAULT_MAX_MID,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        norm: str = "gn",
        gn_groups: int = 32,
        resample: str = "bilinear",
        gain: float = 1.0,
    ) -> "CSFHeadConfig":
        """The authors' sizing rule for any stage widths: each stage fuses to half its
        channels, at most ``max_mid`` (rounded to a multiple of ``gn_groups`` with GroupNorm),
        split equally over the dilations; the merge keeps the fused total. For Res2Net-50
        (256, 512, 1024, 2048) this gives their 128, 256, 512, 512 -> 1408."""
        if mid_channels is None:
            mid_channels = []
            for c in in_channels:
                m = min(int(c) // 2, max_mid)
                if norm == "gn":
                    m = max(gn_groups, int(round(m / gn_groups)) * gn_groups)
                mid_channels.append(max(m, 1))
        mid = [int(m) for m in mid_channels]
        if len(mid) != len(in_channels):
            raise ConfigError(f"{len(mid)} fused widths for {len(in_channels)} stages")
        return cls(
            in_channels=list(in_channels),
            mid_channels=mid,
            dilation_channels=[split_dilations(m, len(dilations)) for m in mid],
            out_channels=sum(mid) if out_channels is None else out_channels,
            dilations=list(dilations),
            norm=norm,
            gn_groups=gn_groups,
            resample=resample,
            gain=gain,
        )

    def build(self) -> CSFHead:
        return CSFHead(
            self.in_channels, self.mid_channels, self.dilation_channels, self.out_channels,
            self.dilations, norm=self.norm, gn_groups=self.gn_groups, resample=self.resample, gain=self.gain,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CSFHeadConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown CSF head config keys: {sorted(unknown)}")
        return cls(**dict(d))


RES2NET50_STAGES = (256, 512, 1024, 2048)


def authors_res2net_head() -> CSFHeadConfig:
    """The CSF+Res2Net head: 3840 channels (1/15, 2/15, 4/15, 8/15) -> 1408 (1/11, 2/11, 4/11, 4/11)."""
    return CSFHeadConfig.for_stages(RES2NET50_STAGES)


class CSNetEncoder(nn.Module):
    """CSNet's stem and four stages as a backbone: RGB -> full-resolution outputs of stages
    2, 3 and 4 (strides 2, 4, 8). Module names match `CSNet`, so a CSNet's or a CSNet
    classifier's encoder weights load with a ``backbone.`` prefix. Only ``blocks`` and
    ``stages`` of the config are used."""

    def __init__(self, config: CSNetConfig) -> None:
        super().__init__()
        self.config = config
        add_encoder(self, config)
        self.out_channels = list(config.csf_in)

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % INPUT_MULTIPLE or x.shape[-2] % INPUT_MULTIPLE:
            raise ValueError(f"the CSNet encoder takes (N, 3, H, W) with H, W multiples of {INPUT_MULTIPLE}; got {tuple(x.shape)}")
        return encoder_features(self, x)


# --- backbones as plain data -----------------------------------------------------------
def backbone_spec(backbone: nn.Module) -> Optional[dict]:
    """Plain-data description of a known backbone; None for a custom module."""
    if isinstance(backbone, Res2Net):
        return {"type": "res2net", "config": backbone.config.to_dict()}
    if isinstance(backbone, CSNetEncoder):
        return {"type": "csnet", "config": backbone.config.to_dict()}
    return None


def build_backbone(spec: Mapping[str, Any] | str, **kwargs: Any) -> nn.Module:
    """A backbone from its spec (``{"type": "res2net"|"csnet", "config": {...}}``) or a
    name: ``"res2net50"`` (kwargs: ``freeze_bn``, ``frozen_stages``) or ``"csnet"``
    (kwargs: ``width``, ``split`` or ``config``)."""
    if isinstance(spec, str):
        if spec in ("res2net50", "res2net"):
            return Res2Net(Res2NetConfig(**kwargs))
        if spec == "csnet":
            cfg = kwargs.pop("config", None)
            if cfg is None:
                cfg = csnet_config(**kwargs)
            elif isinstance(cfg, Mapping):
                cfg = CSNetConfig.from_dict(dict(cfg))
            return CSNetEncoder(cfg)
        raise ConfigError(f"unknown backbone {spec!r}; use 'res2net50', 'csnet' or pass a module")
    kind, cfg = spec.get("type"), spec.get("config", {})
    if kind == "res2net":
        return Res2Net(Res2NetConfig.from_dict(cfg))
    if kind == "csnet":
        return CSNetEncoder(CSNetConfig.from_dict(dict(cfg)))
    raise ConfigError(f"unknown backbone type {kind!r} in CSF config (known: res2net, csnet)")


def _as_list(feats: Any) -> list[Tensor]:
    if isinstance(feats, Tensor):
        return [feats]
    if isinstance(feats, Mapping):
        return list(feats.values())
    return list(feats)


@torch.no_grad()
def stage_channels(backbone: nn.Module, probe_size: int = 64) -> list[int]:
    """Channels of each stage feature: ``backbone.out_channels`` when present, else read
    from one forward pass on a ``probe_size`` square zero image in eval mode."""
    out = getattr(backbone, "out_channels", None)
    if isinstance(out, (list, tuple)):
        return [int(c) for c in out]
    was_training = backbone.training
    backbone.eval()
    try:
        param = next(backbone.parameters(), None)
        x = torch.zeros(1, 3, probe_size, probe_size, device=param.device if param is not None else "cpu")
        feats = _as_list(backbone(x))
    finally:
        backbone.train(was_training)
    return [int(f.shape[1]) for f in feats]


@dataclass
class CSFNetConfig:
    """``backbone``: a `backbone_spec` (None: custom module, not rebuildable); ``head``:
    `CSFHeadConfig`; ``num_classes``: output maps."""

    backbone: Optional[dict]
    head: CSFHeadConfig
    num_classes: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.head, Mapping):
            self.head = CSFHeadConfig.from_dict(self.head)
        self.num_classes = int(self.num_classes)

    def to_dict(self) -> dict:
        if self.backbone is None:
            raise ConfigError(
                "a CSF model on a custom backbone module cannot be saved by configuration; "
                "save its state_dict, or use a known backbone (Res2Net, CSNetEncoder)"
            )
        return {"backbone": dict(self.backbone), "head": self.head.to_dict(), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CSFNetConfig":
        unknown = set(d) - {"backbone", "head", "num_classes"}
        if unknown:
            raise ConfigError(f"unknown CSF config keys: {sorted(unknown)}")
        return cls(backbone=d.get("backbone"), head=d["head"], num_classes=d.get("num_classes", 1))


@register_family
class CSFNet(nn.Module):
    """Backbone -> CSF head -> 1x1 classifier -> bilinear up-sampling to the input size.

    Args:
        backbone: module returning a list of stage features, finest first.
        head: `CSFHeadConfig` (or its dict); None applies `CSFHeadConfig.for_stages` to the
            backbone's stage widths.
        num_classes: output channels (1 for saliency).
    """

    family = "csf"
    task = "sod"

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | CSFNetConfig) -> "CSFNet":
        """Rebuild from `CSFNetConfig.to_dict()` (what `sodlab.save` stores)."""
        cfg = config if isinstance(config, CSFNetConfig) else CSFNetConfig.from_dict(config)
        if cfg.backbone is None:
            raise ConfigError("this CSF config has a custom backbone; it cannot be rebuilt from data")
        return cls(build_backbone(cfg.backbone), cfg.head, cfg.num_classes)

    def __init__(self, backbone: nn.Module, head: CSFHeadConfig | Mapping[str, Any] | None = None, num_classes: int = 1) -> None:
        super().__init__()
        channels = stage_channels(backbone)
        if head is None:
            head = CSFHeadConfig.for_stages(channels)
        elif isinstance(head, Mapping):
            head = CSFHeadConfig.from_dict(head)
        if list(head.in_channels) != channels:
            raise ConfigError(f"CSF head takes stages of {head.in_channels} channels but the backbone gives {channels}")
        self.backbone = backbone
        self.head_config = head
        self.num_classes = int(num_classes)
        self.head = head.build()
        self.classifier = nn.Conv2d(head.out_channels, self.num_classes, 1)

    @property
    def config(self) -> CSFNetConfig:
        return CSFNetConfig(backbone=backbone_spec(self.backbone), head=self.head_config, num_classes=self.num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        return _as_list(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor:
        fused = self.head(self.features(x))
        return F.interpolate(self.classifier(fused), size=x.shape[-2:], mode="bilinear", align_corners=False)


class CSFRes2Net(CSFNet):
    """CSF+Res2Net: Res2Net-50 v1b 26w x 4s with the authors' CSF head (36,528,489
    parameters). Any input size and batch size; ``freeze_bn``/``frozen_stages`` as in
    `Res2NetConfig`; ``imagenet_weights``: a local ``res2net50_v1b_26w_4s-*.pth``."""

    def __init__(
        self,
        num_classes: int = 1,
        freeze_bn: bool = False,
        frozen_stages: int = -1,
        imagenet_weights: Optional[str | Path] = None,
    ) -> None:
        backbone = Res2Net(Res2NetConfig(freeze_bn=freeze_bn, frozen_stages=frozen_stages))
        if imagenet_weights is not None:
            load_imagenet_weights(backbone, imagenet_weights)
        super().__init__(backbone, authors_res2net_head(), num_classes)


def csf_from_config(config: Mapping[str, Any] | CSFNetConfig) -> CSFNet:
    """Rebuild a CSF model from `CSFNetConfig.to_dict()` (what `sodlab.save` stores)."""
    return CSFNet.from_config(config)


@register_model("csf-res2net50", "CSF+Res2Net: Res2Net-50 v1b 26w x 4s + CSF head, 36.5M parameters")
def _csf_res2net50(num_classes: int = 1, freeze_bn: bool = False, frozen_stages: int = -1, imagenet_weights: Optional[str] = None) -> CSFRes2Net:
    return CSFRes2Net(num_classes, freeze_bn, frozen_stages, imagenet_weights)


@register_model("csf", "CSF head on a given backbone: a module returning stage features, 'res2net50' or 'csnet'")
def _csf(
    backbone: nn.Module | str | Mapping[str, Any] = "res2net50",
    head: CSFHeadConfig | Mapping[str, Any] | None = None,
    num_classes: int = 1,
    **backbone_kwargs: Any,
) -> CSFNet:
    if not isinstance(backbone, nn.Module):
        backbone = build_backbone(backbone, **backbone_kwargs)
    elif backbone_kwargs:
        raise ConfigError(f"backbone options {sorted(backbone_kwargs)} only apply to a backbone given by name")
    return CSFNet(backbone, head, num_classes)


# --- the authors' CSFNet checkpoint ----------------------------------------------------
# Their CSFNet key -> ours (`CSFRes2Net`). Applied in order; the backbone keeps its names.
_OFFICIAL_KEY_RULES: list[tuple[str, str]] = [
    (r"^module\.", ""),
    (r"^base\.", "backbone."),
    (r"^fuse1x1\.", "head.merge."),
    (r"^fuse\.", "head.fuse."),
    (r"^ms\.convs\.(\d+)\.msconv\.(\d+)\.", r"head.ms.\1.convs.\2."),
    (r"^ms\.convs\.(\d+)\.bn\.", r"head.ms.\1.norm."),
    (r"^ms\.convs\.(\d+)\.prelu\.", r"head.ms.\1.act."),
    (r"^(head\.(?:fuse|merge)\.conv)\.weights$", r"\1.weight"),
    (r"^(head\.(?:fuse|merge))\.bns\.", r"\1.norms."),
    (r"^(head\.(?:fuse|merge))\.prelus\.", r"\1.acts."),
    (r"^cls_layer\.", "classifier."),
]
# Their released checkpoint still carries the ImageNet classifier of the backbone.
_OFFICIAL_IGNORE = (r"^(module\.)?(base\.)?fc\.(weight|bias)$",)


def csf_res2net_key_to_ours(key: str) -> str:
    """An authors' CSFNet key (``base.layer1.0.convs.0.weight``...) -> ours."""
    return rename(key, _OFFICIAL_KEY_RULES)


def csf_res2net_from_official(state_dict: Mapping[str, Any]) -> CSFRes2Net:
    """A `CSFRes2Net` (eval mode) holding the weights of the authors' CSFNet
    (``base.layer1.0.convs.0.weight``, ``fuse.conv.weights``, ``ms.convs.0.msconv.0.weight``,
    ``cls_layer.bias``, ...; stray ``fc`` keys are ignored, a ``module.`` prefix accepted)."""
    model = CSFRes2Net()
    load_mapped_state(model, state_dict, csf_res2net_key_to_ours, "CSF+Res2Net", ignore=_OFFICIAL_IGNORE)
    return model.eval()


def load_official_csf_res2net(checkpoint_path: str | Path) -> CSFRes2Net:
    """The authors' CSF+Res2Net from their checkpoint file (read with ``weights_only=True``)."""
    sd = read_foreign_state_dict(checkpoint_path)
    try:
        return csf_res2net_from_official(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{checkpoint_path}: {exc}") from exc
