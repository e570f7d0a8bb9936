"""Res2Net v1b backbone (Gao et al., TPAMI 2021), as used by CSF+Res2Net.

The "v1b" variant has a deep stem (three 3x3 convolutions instead of one 7x7) and
down-samples the shortcut with an average pool before its 1x1 convolution. Module names
follow the Res2Net-PretrainedModels files (``conv1.0``, ``layer1.0.convs.2``, ...), so their
ImageNet weights load by plain state-dict keys.

`Res2NetConfig` also describes small members of the family (the CPU-sized study model,
``res2net-mini``): channels per stage, stem stride, max-pool and expansion are plain data,
while the v1b structure (deep stem, average-pooled shortcut) and the module names stay.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ._weights import load_mapped_state, read_foreign_state_dict, strip_module_prefix

log = logging.getLogger(__name__)

EXPANSION = 4
STAGE_PLANES = (64, 128, 256, 512)


@dataclass
class Res2NetConfig:
    """Plain-data description of a Res2Net v1b.

    ``layers``: blocks per stage (50 layers: 3, 4, 6, 3); ``base_width``/``scale``: the
    "26w x 4s" of the name (each block splits ``floor(planes * base_width / 64) * scale``
    channels into ``scale`` groups); ``stem_width``: channels of the first two stem convs;
    ``planes``: bottleneck width of each stage (a stage outputs ``planes * expansion``
    channels); ``expansion``: the bottleneck's output/inner ratio (4 in the paper);
    ``stem_stride``: stride of the first stem convolution (1 or 2); ``max_pool``: the 3x3
    stride-2 max-pool after the stem. Stage strides are ``stem_stride * (2 if max_pool) *
    (1, 2, 4, 8)``: 4/8/16/32 for the 50-layer model, 2/4/8/16 with ``max_pool=False``.
    ``freeze_bn``: keep every BatchNorm in eval mode and its affine parameters fixed (the
    authors' fine-tuning setting); ``frozen_stages``: -1 freezes nothing, 0 the stem, k the
    stem and ``layer1``..``layerk`` (parameters fixed, BatchNorm statistics not updated).
    """

    layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    base_width: int = 26
    scale: int = 4
    stem_width: int = 32
    freeze_bn: bool = False
    frozen_stages: int = -1
    planes: list[int] = field(default_factory=lambda: list(STAGE_PLANES))
    expansion: int = EXPANSION
    stem_stride: int = 2
    max_pool: bool = True

    def __post_init__(self) -> None:
        self.layers = [int(n) for n in self.layers]
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ConfigError(f"Res2Net needs 4 stages of at least one block, got {self.layers}")
        if self.base_width < 1 or self.scale < 1 or self.stem_width < 1:
            raise ConfigError(f"Res2Net base_width, scale and stem_width must be positive, got {self.base_width}, {self.scale}, {self.stem_width}")
        if not -1 <= self.frozen_stages <= 4:
            raise ConfigError(f"frozen_stages must be -1 (none), 0 (stem) or 1..4, got {self.frozen_stages}")
        self.planes = [int(p) for p in self.planes]
        if len(self.planes) != 4 or min(self.planes) < 1:
            raise ConfigError(f"Res2Net needs 4 positive stage widths (planes), got {self.planes}")
        # Each of the ``scale`` groups needs at least one channel.
        if any(math.floor(p * self.base_width / 64.0) < 1 for p in self.planes):
            raise ConfigError(f"Res2Net planes {self.planes} with base_width {self.base_width} leave a group without channels (need planes * base_width >= 64)")
        if self.expansion < 1:
            raise ConfigError(f"Res2Net expansion must be positive, got {self.expansion}")
        if self.stem_stride not in (1, 2):
            raise ConfigError(f"Res2Net stem_stride must be 1 or 2, got {self.stem_stride}")
        self.freeze_bn, self.max_pool = bool(self.freeze_bn), bool(self.max_pool)

    @property
    def out_channels(self) -> list[int]:
        return [p * self.expansion for p in self.planes]

    @property
    def strides(self) -> list[int]:
        first = self.stem_stride * (2 if self.max_pool else 1)
        return [first * 2**k for k in range(4)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Res2NetConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown Res2Net config keys: {sorted(unknown)}")
        return cls(**dict(d))


class Bottle2neck(nn.Module):
    """1x1 -> hierarchical 3x3 convolutions over ``scale`` channel groups -> 1x1, plus shortcut.

    Group ``i`` (``i >= 1``) is convolved together with the previous group's output, which
    widens the receptive field inside one block. The first block of a stage (``stage_start``)
    changes resolution/width, so its groups are convolved independently and the last group is
    average-pooled instead of passed through.
    """

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        base_width: int = 26,
        scale: int = 4,
        stage_start: bool = False,
        expansion: int = EXPANSION,
    ) -> None:
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        out_channels = planes * expansion
        self.width, self.scale, self.stage_start = width, scale, stage_start
        n_convs = max(1, scale - 1)
        self.conv1 = nn.Conv2d(in_channels, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, stride, 1, bias=False) for _ in range(n_convs))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(n_convs))
        # The pass-through group must match the strided groups' resolution.
        self.pool = nn.AvgPool2d(3, stride, 1) if (stage_start and scale > 1) else None
        self.conv3 = nn.Conv2d(width * scale, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            # v1b: average-pool before the 1x1 so the shortcut sees every input pixel.
            pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride != 1 else nn.Identity()
            self.downsample = nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        groups = torch.split(out, self.width, 1)
        ys, sp = [], None
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = groups[i] if (i == 0 or self.stage_start) else sp + groups[i]
            sp = self.relu(bn(conv(sp)))
            ys.append(sp)
        if self.scale > 1:
            ys.append(self.pool(groups[-1]) if self.pool is not None else groups[-1])
        out = self.bn3(self.conv3(torch.cat(ys, 1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Res2Net(nn.Module):
    """Res2Net v1b feature extractor: RGB (N,3,H,W) -> list of the four stage outputs
    (strides 4, 8, 16, 32; 256, 512, 1024, 2048 channels for the 50-layer model;
    ``config.strides`` and ``config.out_channels`` in general)."""

    def __init__(self, config: Res2NetConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = Res2NetConfig(**overrides)
        elif overrides:
            config = Res2NetConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        sw, stem_out = config.stem_width, config.planes[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, sw, 3, config.stem_stride, 1, bias=False),
            nn.BatchNorm2d(sw),
            nn.ReLU(inplace=True),
            nn.Conv2d(sw, sw, 3, 1, 1, bias=False),
            nn.BatchNorm2d(sw),
            nn.ReLU(inplace=True),
            nn.Conv2d(sw, stem_out, 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(stem_out)
        self.relu = nn.ReLU(inplace=True)
        # Identity keeps the module name free of weights, so state-dict keys do not change.
        self.maxpool = nn.MaxPool2d(3, 2, 1) if config.max_pool else nn.Identity()
        in_ch, exp = stem_out, config.expansion
        for k, (planes, n) in enumerate(zip(config.planes, config.layers), 1):
            stride = 1 if k == 1 else 2
            blocks = [Bottle2neck(in_ch, planes, stride, config.base_width, config.scale, stage_start=True, expansion=exp)]
            in_ch = planes * exp
            blocks += [Bottle2neck(in_ch, planes, 1, config.base_width, config.scale, expansion=exp) for _ in range(n - 1)]
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
        self.out_channels = config.out_channels
        self.strides = config.strides
        self._init_weights()
        self._freeze_parameters()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1]

    def frozen_modules(self) -> list[nn.Module]:
        """Modules whose parameters and statistics ``frozen_stages`` fixes."""
        n = self.config.frozen_stages
        if n < 0:
            return []
        return self.stem_modules() + [getattr(self, f"layer{k}") for k in range(1, n + 1)]

    def _freeze_parameters(self) -> None:
        for m in self.frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        if self.config.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    for p in m.parameters():
                        p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Res2Net":
        super().train(mode)
        if mode:
            # Frozen parts keep their running statistics: BN stays in eval mode.
            for m in self.frozen_modules():
                m.eval()
            if self.config.freeze_bn:
                for m in self.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.eval()
        return self

    def stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Res2Net takes a batch of RGB images shaped (N, 3, H, W); got {tuple(x.shape)}")
        x = self.stem(x)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def res2net50_v1b_26w_4s(freeze_bn: bool = False, frozen_stages: int = -1) -> Res2Net:
    """Res2Net-50 v1b 26w x 4s (23,669,352 parameters without the classifier)."""
    return Res2Net(Res2NetConfig(layers=[3, 4, 6, 3], base_width=26, scale=4, freeze_bn=freeze_bn, frozen_stages=frozen_stages))


# ImageNet classifier of the Res2Net-PretrainedModels files: not part of the backbone.
_IMAGENET_IGNORE = (r"^(module\.)?fc\.(weight|bias)$",)


def load_imagenet_weights(backbone: Res2Net, path: str | Path) -> Res2Net:
    """Load a local Res2Net-PretrainedModels file (e.g. ``res2net50_v1b_26w_4s-3cf99910.pth``)
    into ``backbone``. The ``fc`` classifier is ignored; anything else that does not fit
    raises a `CheckpointError` naming the first mismatching key. Read with
    ``torch.load(weights_only=True)``: the file cannot execute code.
    """
    path = Path(path)
    sd = {strip_module_prefix(k): v for k, v in read_foreign_state_dict(path).items()}
    # Files saved by old PyTorch versions have no BN batch counters; they carry no weights.
    ours = backbone.state_dict()
    for k, v in ours.items():
        if k.endswith("num_batches_tracked") and k not in sd and k.rsplit(".", 1)[0] + ".running_mean" in sd:
            sd[k] = v
    what = f"{path}: Res2Net ImageNet weights ({backbone.config.layers} blocks, {backbone.config.base_width}w x {backbone.config.scale}s)"
    load_mapped_state(backbone, sd, lambda k: k, what, ignore=_IMAGENET_IGNORE)
    log.info("loaded ImageNet weights from %s", path)
    return backbone
