"""`TrainConfig`: everything `fit` needs besides the model and the data, as plain data, and
its validation (every key checked, errors naming the key)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import ConfigError
from ..models.csnet import INPUT_MULTIPLE, is_input_side
from .regularizers import DEFAULT_WEIGHTS, REGULARIZERS

TASKS = {"sod": "sod", "saliency": "sod", "classification": "classification"}
# Settings that may differ when a run is resumed: they change how long or how fast it
# runs, not what an epoch computes, except ``lr``, which a user lowers after a NaN loss
# (the optimizer and schedule are rescaled on resume; see `optim.rescale_lr`).
SCHEDULES = ("step", "cosine", "onecycle", "constant")
SALIENCY_LOSSES = ("bce", "bce+iou")
LOSSES = ("auto", *SALIENCY_LOSSES, "ce")
RESUMABLE_CHANGES = ("epochs", "num_workers", "val_batch_size", "val_every", "fused", "preload", "lr")


@dataclass
class TrainConfig:
    """Everything `fit` needs besides the model and the data, as plain data.

    Task and loss: ``task`` ``"sod"`` (alias ``"saliency"``: targets ``mask``, BCE with
    logits) or ``"classification"`` (targets ``label``, cross-entropy); ``loss`` ``"auto"``
    picks that, ``"bce+iou"`` adds a soft IoU term per image to saliency's BCE
    (`loss.soft_iou_loss`); ``bce_reduction`` ``"mean"`` over pixels or ``"sum"`` over the pixels of
    each image, averaged over images (the authors' CSF+Res2Net).

    Optimisation: ``optimizer`` ``"adam"`` (coupled L2 ``weight_decay``, as the authors),
    ``"adamw"`` or ``"sgd"`` (``momentum``, ``nesterov``); ``schedule`` ``"step"`` (x ``gamma``
    at each epoch in ``milestones``; epoch indices count from 0, so ``[200]`` changes the rate
    for the 201st epoch on), ``"cosine"`` (per epoch, to 0 at ``epochs``), ``"onecycle"``
    (per step, as torch's OneCycleLR for the rate only: cosine from ``lr/25`` up to ``lr`` over
    the first 30% of the steps, then cosine down to ``lr/25/1e4``) or ``"constant"``;
    ``warmup_epochs``: linear warm-up of the first epochs (per step); ``accumulate``:
    micro-batches per optimizer step; ``grad_clip``: max gradient norm or None.

    Regulariser on BN scales (`sodlab.train.regularizers`): ``regularizer`` ``"dwd"``,
    ``"l2"``, ``"l1"`` or ``"none"``; ``regularizer_weight`` (None: 3.0, 5e-3, 1e-4);
    ``regularizer_scope``; ``dwd_scale_weights`` (w_b per scale); ``authors_wd_typo``.

    ``label_smoothing``: of the cross-entropy (classification), in [0, 1).

    Data (used when `fit` is given folders rather than datasets): ``image_size``,
    ``hflip``, ``vflip`` and ``rot90`` (random multiples of 90 degrees; for saliency image and
    mask turn together, see `sodlab.data.imagefolder.ImageTransform` and
    `sodlab.data.transforms.TrainTransform`); ``preload`` decodes every image into memory
    before the first epoch: classification then augments whole batches at once
    (`LabelledImages.preload`: the same augmentation, values up to float rounding), saliency
    reads images and masks from memory item by item (`SODFolder.preload`: the same batches to
    the bit); either way a run resumes with it on or off. ``batch_size`` is the global batch (see the module docstring);
    ``val_batch_size`` defaults to ``2 * batch_size``; ``drop_last`` drops an incomplete
    last training batch.

    Device: ``amp`` mixed precision on CUDA (``amp_dtype`` ``"bfloat16"`` or
    ``"float16"`` with loss scaling); ``sync_bn`` converts BatchNorm to SyncBatchNorm when
    training on several CUDA processes; ``channels_last`` trains in NHWC memory format
    (about 20% faster for CSNet on CPU); ``fused`` (with ``channels_last``, on a CPU, one
    process) trains through `sodlab.fast.optimize_for_training`: the same parameters and
    maths, gOctConvs fused and BatchNorm + PReLU computed in one step (CSNet: 1.2-1.4x faster
    per step than channels-last alone). It changes no result beyond float rounding, so a run
    resumes with it on or off.
    """

    task: str = "sod"
    epochs: int = 10
    batch_size: int = 8
    accumulate: int = 1
    loss: str = "auto"
    bce_reduction: str = "mean"
    optimizer: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-3
    schedule: str = "step"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    grad_clip: Optional[float] = None
    label_smoothing: float = 0.0
    regularizer: str = "none"
    regularizer_weight: Optional[float] = None
    regularizer_scope: str = "auto"
    dwd_scale_weights: Optional[list[float]] = None
    authors_wd_typo: bool = False
    image_size: Optional[int] = None
    hflip: bool = True
    vflip: bool = False
    rot90: bool = False
    val_batch_size: Optional[int] = None
    val_every: int = 1
    drop_last: bool = True
    num_workers: int = 0
    seed: int = 0
    amp: bool = False
    amp_dtype: str = "bfloat16"
    sync_bn: bool = False
    channels_last: bool = False
    fused: bool = True
    preload: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"train config key {key!r}: {msg}")

        if self.task not in TASKS:
            raise bad("task", f"use one of {sorted(TASKS)}, got {self.task!r}")
        for key in ("epochs", "batch_size", "accumulate", "val_every"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                # epochs 0 would write a run folder and train nothing
                raise bad(key, f"must be a positive integer (at least 1), got {v!r}")
            setattr(self, key, int(v))
        if self.loss not in LOSSES:
            raise bad("loss", f"use one of {', '.join(repr(k) for k in LOSSES)}, got {self.loss!r}")
        if self.loss in SALIENCY_LOSSES and self.resolved_task != "sod":
            raise bad("loss", f"{self.loss!r} is a saliency loss; task {self.task!r} takes 'ce'")
        if self.bce_reduction not in ("mean", "sum"):
            raise bad("bce_reduction", f"use 'mean' or 'sum', got {self.bce_reduction!r}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise bad("optimizer", f"use 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"use one of {', '.join(repr(s) for s in SCHEDULES)}, got {self.schedule!r}")
        for key in ("lr", "eps", "weight_decay", "gamma", "momentum", "warmup_epochs"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(key, f"must be a non-negative number, got {v!r}")
            setattr(self, key, float(v))
        for key in ("nesterov", "hflip", "vflip", "rot90", "preload"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, f"must be true or false, got {getattr(self, key)!r}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise bad("nesterov", f"needs optimizer 'sgd' with momentum > 0 (got optimizer {self.optimizer!r}, momentum {self.momentum})")
        ls = self.label_smoothing
        if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not 0.0 <= ls < 1.0:
            raise bad("label_smoothing", f"must be a number in [0, 1), got {ls!r}")
        self.label_smoothing = float(ls)
        if self.label_smoothing and self.resolved_loss != "ce":
            raise bad("label_smoothing", "applies to the cross-entropy of classification only")
        if len(self.betas) != 2:
            raise bad("betas", f"needs two numbers, got {self.betas!r}")
        self.betas = [float(b) for b in self.betas]
        self.milestones = sorted(int(m) for m in self.milestones)
        if self.regularizer not in REGULARIZERS:
            raise bad("regularizer", f"use one of {sorted(REGULARIZERS)}, got {self.regularizer!r}")
        if self.authors_wd_typo and self.regularizer != "dwd":
            raise bad("authors_wd_typo", "only applies to regularizer 'dwd'")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise bad("amp_dtype", f"use 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.image_size is not None and not is_input_side(self.image_size):
            # every sodlab model halves the image four times
            raise bad("image_size", f"must be a positive multiple of {INPUT_MULTIPLE}, got {self.image_size!r}")
        for key in ("num_workers", "seed"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise bad(key, f"must be a non-negative integer, got {v!r}")
            setattr(self, key, int(v))

    @property
    def resolved_task(self) -> str:
        return TASKS[self.task]

    @property
    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        return "bce" if self.resolved_task == "sod" else "ce"

    @property
    def resolved_regularizer_weight(self) -> float:
        return DEFAULT_WEIGHTS[self.regularizer] if self.regularizer_weight is None else float(self.regularizer_weight)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "train config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})
