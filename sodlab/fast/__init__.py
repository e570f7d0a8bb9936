"""Fast equivalents of sodlab models: folded for inference (`optimize_for_inference`), fused
for training (`optimize_for_training`).

- `sodlab.fast.planner`: which inputs of a gOctConv feed which output scale (shared by both);
- `sodlab.fast.batchnorm`: an eval-mode BatchNorm as a per-channel scale and shift (also used
  by `sodlab.prune`);
- `sodlab.fast.inference`: BatchNorm and gain folded into the convolutions, TorchScript;
- `sodlab.fast.training`: fused blocks sharing the original parameters;
- `sodlab.fast.norm_act`: training-mode BatchNorm + PReLU as one autograd step.
"""
from __future__ import annotations

from .inference import (
    FoldedDepthwiseAct,
    FoldedGOctConvAct,
    FoldedMultiDilation,
    OptimizedModel,
    TracedModel,
    optimize_for_inference,
)
from .training import FusedDepthwiseBNAct, FusedGOctConvBNAct, FusedMultiDilationTrain, optimize_for_training

__all__ = ["optimize_for_inference", "optimize_for_training", "OptimizedModel", "TracedModel", "FoldedGOctConvAct",
           "FoldedDepthwiseAct", "FoldedMultiDilation", "FusedGOctConvBNAct", "FusedDepthwiseBNAct", "FusedMultiDilationTrain"]
