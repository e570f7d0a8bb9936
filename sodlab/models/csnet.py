"""CSNet: ILBlocks of gOctConvs in four stages and a Cross-Stage Fusion head.

The network is built from a plain-data channel configuration (`CSNetConfig`), so that the
unpruned family (a base width and a split between scales), the released learned
configurations and the configurations our pruning produces are all the same kind of thing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ._registry import register_family, register_model
from .csf import DEFAULT_DILATIONS, CSFHead
from .goctconv import GOctConvBNAct, ScaleDepthwiseBNAct, Scales

STAGES = (3, 4, 6, 4)
# Spatial down-sampling of the whole network: stages 2, 3 and 4 halve, and their blocks
# carry a half-resolution scale on top.
INPUT_MULTIPLE = 16


def is_input_side(n: Any) -> bool:
    """True for an image side CSNet accepts: a positive int multiple of `INPUT_MULTIPLE`."""
    return isinstance(n, int) and not isinstance(n, bool) and n >= INPUT_MULTIPLE and n % INPUT_MULTIPLE == 0


def _ints(xs: Any) -> list[int]:
    if isinstance(xs, (int, float, np.integer, np.floating)):
        xs = [xs]
    out = []
    for x in xs:
        v = float(x)
        if v != round(v) or v < 0:
            raise ConfigError(f"channel counts must be non-negative integers, got {list(xs)}")
        out.append(int(round(v)))
    return out


@dataclass
class CSNetConfig:
    """Channel numbers of a CSNet, per block and per scale (scale 0 = full resolution).

    ``blocks``: one ``[in_channels, out_channels]`` pair per ILBlock (stem first, then the
    blocks of each stage); ``csf_in``/``csf_mid``/``csf_dilation_channels``/``csf_out``:
    the fusion head. A 0 means the scale is absent.
    """

    blocks: list[list[list[int]]]
    csf_in: list[int]
    csf_mid: list[int]
    csf_dilation_channels: list[list[int]]
    csf_out: int
    stages: list[int] = field(default_factory=lambda: list(STAGES))
    dilations: list[int] = field(default_factory=lambda: list(DEFAULT_DILATIONS))
    num_classes: int = 1

    def __post_init__(self) -> None:
        self.blocks = [[_ints(b[0]), _ints(b[1])] for b in self.blocks]
        self.csf_in = _ints(self.csf_in)
        self.csf_mid = _ints(self.csf_mid)
        self.csf_dilation_channels = [_ints(d) for d in self.csf_dilation_channels]
        self.csf_out = int(self.csf_out)
        self.stages = [int(s) for s in self.stages]
        self.dilations = [int(d) for d in self.dilations]
        self.validate()

    def validate(self) -> None:
        n = 1 + sum(self.stages)
        if len(self.stages) != 4:
            raise ConfigError(f"CSNet has 4 stages, config gives {self.stages}")
        if len(self.blocks) != n:
            raise ConfigError(f"stages {self.stages} need {n} blocks (stem included), config has {len(self.blocks)}")
        for b in range(1, n):
            prev, cur = self.blocks[b - 1][1], self.blocks[b][0]
            if prev != cur:
                raise ConfigError(f"block {b} ({self.block_name(b)}) takes {cur} channels but block {b - 1} gives {prev}")
        ends = [self.blocks[e][1] for e in self.stage_ends()[1:]]
        if [sum(e) for e in ends] != self.csf_in:
            raise ConfigError(f"CSF head takes {self.csf_in} channels but stages 2-4 end with {ends}")
        for e, name in zip(ends, ("stage2", "stage3", "stage4")):
            if any(e[1:]):
                raise ConfigError(f"{name} must end with a single full-resolution scale, got {e}")
        if len(self.csf_dilation_channels) != len(self.csf_mid):
            raise ConfigError(f"{len(self.csf_dilation_channels)} dilation groups for {len(self.csf_mid)} CSF scales")
        for d in self.csf_dilation_channels:
            if len(d) != len(self.dilations):
                raise ConfigError(f"dilation channels {d} do not match dilations {self.dilations}")

    def stage_ends(self) -> list[int]:
        """Block index of the last block of stage 1..4."""
        ends, b = [], 0
        for s in self.stages:
            b += s
            ends.append(b)
        return ends

    def block_name(self, b: int) -> str:
        if b == 0:
            return "stem"
        start = 1
        for k, s in enumerate(self.stages, 1):
            if b < start + s:
                return f"stage{k}.{b - start}"
            start += s
        raise IndexError(b)

    def block_stride(self, b: int) -> int:
        starts = [1 + sum(self.stages[:k]) for k in range(4)]
        return 2 if b in starts[1:] else 1

    # --- plain data -------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CSNetConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown CSNet config keys: {sorted(unknown)}")
        return cls(**d)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> "CSNetConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a readable CSNet config ({exc})") from exc

    # --- the authors' layer_config list ------------------------------------------
    @classmethod
    def from_layer_config(cls, layer_config: Sequence[Any]) -> "CSNetConfig":
        """From the authors' 22-entry ``layer_config`` list (see the reference README)."""
        lc = list(layer_config)
        if len(lc) < 4:
            raise ConfigError(f"layer_config has {len(lc)} entries; expected 18 blocks + 3 CSF entries + stages")
        stages = _ints(lc[-1])
        n = 1 + sum(stages)
        if len(lc) != n + 4:
            raise ConfigError(f"layer_config has {len(lc)} entries; stages {stages} need {n + 4}")
        blocks = [[_ints(e[0]), _ints(e[1])] for e in lc[:n]]
        blocks[0][0] = [3]  # the authors' stem ignores its stored input and always takes RGB
        fuse, ms, merge = lc[n], lc[n + 1], lc[n + 2]
        dil = [_ints(d) for d in ms[2]]
        if _ints(fuse[1]) != _ints(ms[0]) or [sum(d) for d in dil] != _ints(ms[1]) or _ints(ms[1]) != _ints(merge[0]):
            raise ConfigError(f"layer_config CSF entries disagree: fuse {fuse[1]}, dilation block {ms[0]}->{ms[1]}, merge {merge[0]}")
        return cls(
            blocks=blocks,
            csf_in=_ints(fuse[0]),
            csf_mid=_ints(fuse[1]),
            csf_dilation_channels=dil,
            csf_out=sum(_ints(merge[1])),
            stages=stages,
        )

    def to_layer_config(self) -> list:
        """The authors' list format (plain ints), for their tools."""
        mid_out = [sum(d) for d in self.csf_dilation_channels]
        return [
            *[[list(i), list(o)] for i, o in self.blocks],
            [list(self.csf_in), list(self.csf_mid)],
            [list(self.csf_mid), mid_out, [list(d) for d in self.csf_dilation_channels]],
            [mid_out, [self.csf_out]],
            list(self.stages),
        ]


def csnet_config(width: int = 20, split: Sequence[float] = (0.5, 0.5)) -> CSNetConfig:
    """The unpruned CSNet family: base ``width`` shared between scales by ``split``.

    Widths per stage are width, 2*width, 4*width, 4*width; every stage ends at one scale
    with its full width; the CSF head fuses a third of each stage and splits it over five
    dilations equally (the remainder to the largest dilation), as the authors do.
    """
    split = np.asarray([float(s) for s in split])
    if split.ndim != 1 or len(split) < 1 or (split < 0).any() or split.sum() <= 0:
        raise ConfigError(f"split must be non-negative fractions, got {list(split)}")

    def per_scale(w: float) -> list[int]:
        return [int(v) for v in np.round(w * split)]

    w1, w2, w4 = per_scale(width), per_scale(2 * width), per_scale(4 * width)
    blocks: list[list[list[int]]] = [[[3], w1]] + [[w1, w1] for _ in range(STAGES[0])]
    prev = w1
    for n, mid, end in zip(STAGES[1:], (w2, w4, w4), (2 * width, 4 * width, 4 * width)):
        last = [int(round(end))]
        blocks += [[prev, mid]] + [[mid, mid] for _ in range(n - 2)] + [[mid, last]]
        prev = last
    sides = [2 * width, 4 * width, 4 * width]
    mid = [int(s // 3) for s in sides]
    dil = [[m // 5] * 4 + [m - 4 * (m // 5)] for m in mid]
    return CSNetConfig(blocks=blocks, csf_in=[int(round(s)) for s in sides], csf_mid=mid, csf_dilation_channels=dil, csf_out=sum(mid))


class ILBlock(nn.Module):
    """Inter-layer block: a gOctConv (3x3 for the stem and stride-2 blocks, else 1x1) that
    exchanges information between scales, then two per-scale depthwise 3x3 convolutions."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], stride: int = 1, first: bool = False) -> None:
        super().__init__()
        k = 3 if (first or stride == 2) else 1
        self.conv = GOctConvBNAct(in_channels, out_channels, kernel_size=k, stride=stride)
        self.dw1 = ScaleDepthwiseBNAct(out_channels)
        self.dw2 = ScaleDepthwiseBNAct(out_channels)

    def forward(self, xs: Tensor | Scales) -> Scales:
        return self.dw2(self.dw1(self.conv(xs)))


def add_encoder(module: nn.Module, config: CSNetConfig) -> None:
    """Give ``module`` CSNet's encoder as ``stem`` and ``stage1..stage4`` (the names every
    CSNet-based model shares, so encoder weights move between them by key)."""
    blocks = [ILBlock(i, o, stride=config.block_stride(b), first=(b == 0)) for b, (i, o) in enumerate(config.blocks)]
    module.stem = blocks[0]
    start = 1
    for k, n in enumerate(config.stages, 1):
        setattr(module, f"stage{k}", nn.Sequential(*blocks[start:start + n]))
        start += n


def encoder_features(module: nn.Module, x: Tensor) -> list[Tensor]:
    """Full-resolution outputs of stages 2, 3 and 4 of an encoder made by `add_encoder`."""
    xs = module.stage1(module.stem(x))
    feats = []
    for stage in (module.stage2, module.stage3, module.stage4):
        xs = stage(xs)
        feats.append(xs[0])
    return feats


@register_family
class CSNet(nn.Module):
    """CSNet for saliency: RGB (N,3,H,W) with H, W multiples of 16 -> logits (N,C,H,W)."""

    family = "csnet"
    task = "sod"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "CSNet":
        return cls(CSNetConfig.from_dict(dict(config)))

    def __init__(self, config: CSNetConfig) -> None:
        super().__init__()
        self.config = config
        add_encoder(self, config)
        self.csf = CSFHead(config.csf_in, config.csf_mid, config.csf_dilation_channels, config.csf_out, config.dilations)
        self.classifier = nn.Conv2d(config.csf_out, config.num_classes, 1)

    def stage_modules(self) -> list[nn.Sequential]:
        return [self.stage1, self.stage2, self.stage3, self.stage4]

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"CSNet takes a batch of RGB images shaped (N, 3, H, W); got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(
                f"CSNet needs image sides that are multiples of {INPUT_MULTIPLE}; got {h}x{w}. "
                "Resize first (sodlab.predict does this for you)."
            )

    def features(self, x: Tensor) -> list[Tensor]:
        """Full-resolution output of stages 2, 3 and 4 (strides 2, 4 and 8)."""
        self.check_input(x)
        return encoder_features(self, x)

    def forward(self, x: Tensor) -> Tensor:
        fused = self.csf(self.features(x))
        return F.interpolate(self.classifier(fused), size=x.shape[-2:], mode="bilinear", align_corners=False)


# --- registered names ----------------------------------------------------------------
def preset_config(name: str) -> CSNetConfig:
    """A learned channel configuration shipped with sodlab (``csnet-L-x1``, ``csnet-L-x2``)."""
    path = resources.files("sodlab.models") / "presets" / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no CSNet preset named {name!r}")
    return CSNetConfig.from_dict(json.loads(path.read_text())["config"])


@register_model("csnet", "CSNet, unpruned: base width and split between scales (authors: 20, 0.5/0.5)")
def _csnet(width: int = 20, split: tuple[float, ...] = (0.5, 0.5), config: Any = None, num_classes: int = 1) -> CSNet:
    if config is not None:
        if isinstance(config, (str, Path)):
            config = CSNetConfig.from_json(config)
        elif isinstance(config, Mapping):
            config = CSNetConfig.from_dict(dict(config))
        if not isinstance(config, CSNetConfig):
            raise ConfigError(f"config must be a CSNetConfig, a dict or a JSON path, got {type(config).__name__}")
    else:
        config = csnet_config(width, split)
    if num_classes != config.num_classes:
        config = CSNetConfig.from_dict({**config.to_dict(), "num_classes": num_classes})
    return CSNet(config)


@register_model("csnet-L-x1", "CSNet-L-x1: the authors' learned channel numbers, 93,647 parameters")
def _csnet_l_x1(num_classes: int = 1) -> CSNet:
    return _csnet(config=preset_config("csnet-L-x1"), num_classes=num_classes)


@register_model("csnet-L-x2", "CSNet-L-x2: the authors' learned channel numbers, 140,894 parameters")
def _csnet_l_x2(num_classes: int = 1) -> CSNet:
    return _csnet(config=preset_config("csnet-L-x2"), num_classes=num_classes)
