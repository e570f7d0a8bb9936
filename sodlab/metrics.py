"""Salient object detection metrics, accumulated image by image: ``step(pred, gt)`` for
every image, then ``get_results()`` (scalars) and ``curves()`` (pandas DataFrames).

Two protocols, which give visibly different numbers on the same maps:

``"standard"`` (what most SOD papers since ~2019 report; the common Python toolbox
PySODMetrics, package ``py_sod_metrics``, which this protocol calls):
    every map is min-max normalised first (when not constant), the ground truth is
    ``gt > 128``; at the 256 thresholds ``pred >= t`` precision, recall and F
    (beta^2 = 0.3) are computed **per image** and the F curves are averaged over images;
    max-F / mean-F are the maximum / mean of that mean curve. Adaptive F thresholds each
    map at twice its mean. MAE is taken on the normalised map. S-measure, E-measure
    (max/mean/adaptive) and the weighted F-measure come from the same package.

``"salmetric"`` (the authors' SalMetric tool, used for the numbers in the CSNet papers,
ECCV 2020 and TPAMI 2021):
    no normalisation; at thresholds ``t = 0..255`` a pixel is predicted salient when
    ``pred > t``; per image ``precision = (TP + 1e-4) / (predicted positives + 1e-4)`` and
    ``recall = (TP + 1e-4) / (positives + 1e-4)``; precision and recall (not F) are averaged
    over images per threshold and ``F = 1.3 P R / (0.3 P + R)`` is computed from the
    averages; max-F / mean-F over the thresholds. MAE per image is ``mean |pred/255 - gt|``
    (no stretching), averaged over images.

The differences (F from averaged P/R vs averaged F, min-max stretching, ``>`` vs ``>=``,
the 1e-4 smoothing that makes an all-black map count as precision 1) typically move max-F
by one to several points, and MAE too when maps are not full-range: compare numbers only
within one protocol, and say which one you used. ``data/README.md`` shows an example.

Inputs: ``pred`` an (H, W) uint8 map (0..255); ``gt`` an (H, W) uint8 (foreground > 128)
or bool mask of the same size.

Two more forms of the same numbers, for code that scores many models or subsets:
`SaliencyStats` (the standard protocol's max-F and MAE on batches of torch tensors, summable
over processes: the trainer's validation) and ``SODMetrics("salmetric", per_image=True)`` +
`max_f_from_curves` (the SalMetric counts kept per image, so that max-F of any subset of images
is a sum away: the studies' bootstraps over images).

Classification (`ClassificationMetrics`, `format_confusion`): top-1, per-class accuracy and the
confusion matrix of a classifier, with the same ``step`` / ``get_results`` shape.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .errors import DataError

PROTOCOLS = ("standard", "salmetric")
BETA2 = 0.3
SALMETRIC_EPS = 1e-4


def _check_inputs(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pred uint8, gt bool)`` after validation."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 2 or gt.ndim != 2:
        raise DataError(f"expected (H, W) maps, got prediction {pred.shape} and ground truth {gt.shape}")
    if pred.shape != gt.shape:
        raise DataError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    if pred.dtype != np.uint8:
        raise DataError(f"predictions must be uint8 (0..255), got {pred.dtype}")
    if gt.dtype == bool:
        return pred, gt
    if gt.dtype != np.uint8:
        raise DataError(f"ground truth must be uint8 (foreground > 128) or bool, got {gt.dtype}")
    return pred, gt > 128


def salmetric_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(3, 256): per threshold t = 0..255, true positives, predicted positives (``pred > t``)
    and mask positives, for one uint8 map and its bool mask."""
    fg_hist = np.bincount(pred[gt], minlength=256).astype(np.float64)
    all_hist = np.bincount(pred.ravel(), minlength=256).astype(np.float64)
    # Pixels with value > t for t = 0..255: everything above bin t.
    tp = fg_hist.sum() - np.cumsum(fg_hist)
    predicted = all_hist.sum() - np.cumsum(all_hist)
    return np.stack([tp, predicted, np.full(256, float(gt.sum()))])


def _salmetric_pr(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed per-image precision and recall from `salmetric_counts` rows (..., 3, 256)."""
    tp, predicted, positives = counts[..., 0, :], counts[..., 1, :], counts[..., 2, :]
    return (tp + SALMETRIC_EPS) / (predicted + SALMETRIC_EPS), (tp + SALMETRIC_EPS) / (positives + SALMETRIC_EPS)


def precision_recall(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SalMetric's precision and recall of one uint8 map against its mask at the thresholds
    t = 0..255 (salient where ``pred > t``): two arrays of 256."""
    pred, gt = _check_inputs(pred, gt)
    return _salmetric_pr(salmetric_counts(pred, gt))


def f_measure(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """F with beta^2 = `BETA2` (precision and recall are never both 0 under SalMetric's smoothing)."""
    return (1 + BETA2) * precision * recall / (BETA2 * precision + recall)


def salmetric_mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """SalMetric's MAE of one uint8 map against its bool mask: ``mean |pred/255 - gt|``."""
    return float(np.abs(pred / 255.0 - gt).mean())


def max_f_from_curves(curves: np.ndarray) -> float:
    """SalMetric's max-F of the images whose per-image `salmetric_counts` (N, 3, 256) are given
    (`SODMetrics.per_image`'s ``curves``): precision and
    recall averaged over images, F from the averages, maximum over thresholds."""
    precision, recall = _salmetric_pr(curves)
    return float(f_measure(precision.mean(0), recall.mean(0)).max())


class _SalMetric:
    """The SalMetric protocol (see the module docstring), from histograms."""

    def __init__(self, per_image: bool = False) -> None:
        self.precision_sum = np.zeros(256, dtype=np.float64)
        self.recall_sum = np.zeros(256, dtype=np.float64)
        self.mae_sum = 0.0
        self.count = 0
        self.kept: Optional[dict[str, list]] = {"curves": [], "mae": []} if per_image else None

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        counts = salmetric_counts(pred, gt)
        precision, recall = _salmetric_pr(counts)
        mae = salmetric_mae(pred, gt)
        self.precision_sum += precision
        self.recall_sum += recall
        self.mae_sum += mae
        self.count += 1
        if self.kept is not None:
            self.kept["curves"].append(counts)
            self.kept["mae"].append(mae)

    def _prf(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.precision_sum / self.count
        r = self.recall_sum / self.count
        return p, r, f_measure(p, r)

    def results(self) -> dict[str, float]:
        _, _, f = self._prf()
        return {"mae": self.mae_sum / self.count, "max_f": float(f.max()), "mean_f": float(f.mean())}

    def curves(self) -> dict[str, pd.DataFrame]:
        p, r, f = self._prf()
        t = np.arange(256)
        return {"pr": pd.DataFrame({"threshold": t, "precision": p, "recall": r}),
                "fmeasure": pd.DataFrame({"threshold": t, "f": f})}


class _Standard:
    """The PySODMetrics protocol, by calling ``py_sod_metrics``."""

    def __init__(self) -> None:
        try:
            import py_sod_metrics as psm
        except ImportError as exc:  # a declared dependency; say how to get it
            raise DataError("the standard protocol needs the pysodmetrics package (pip install pysodmetrics)") from exc
        with warnings.catch_warnings():
            # Fmeasure is announced as deprecated in favour of FmeasureV2, but it is still
            # the reference implementation of the numbers papers report.
            warnings.simplefilter("ignore")
            self.fm = psm.Fmeasure(beta=BETA2)
        self.mae = psm.MAE()
        self.sm = psm.Smeasure()
        self.em = psm.Emeasure()
        self.wfm = psm.WeightedFmeasure()
        self.count = 0

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        # py_sod_metrics thresholds the ground truth at > 128 itself.
        gt8 = gt.astype(np.uint8) * 255
        for m in (self.fm, self.mae, self.sm, self.em, self.wfm):
            m.step(pred, gt8)
        self.count += 1

    def results(self) -> dict[str, float]:
        fm = self.fm.get_results()
        em = self.em.get_results()["em"]
        return {
            "mae": float(self.mae.get_results()["mae"]),
            "max_f": float(fm["fm"]["curve"].max()),
            "mean_f": float(fm["fm"]["curve"].mean()),
            "adaptive_f": float(fm["fm"]["adp"]),
            "s_measure": float(self.sm.get_results()["sm"]),
            "max_e": float(em["curve"].max()),
            "mean_e": float(em["curve"].mean()),
            "adaptive_e": float(em["adp"]),
            "weighted_f": float(self.wfm.get_results()["wfm"]),
        }

    def curves(self) -> dict[str, pd.DataFrame]:
        fm = self.fm.get_results()
        # py_sod_metrics orders its curves from threshold 255 down to 0; ours go up.
        p, r = fm["pr"]["p"][::-1], fm["pr"]["r"][::-1]
        f = fm["fm"]["curve"][::-1]
        e = self.em.get_results()["em"]["curve"][::-1]
        t = np.arange(256)
        return {"pr": pd.DataFrame({"threshold": t, "precision": p, "recall": r}),
                "fmeasure": pd.DataFrame({"threshold": t, "f": f}),
                "emeasure": pd.DataFrame({"threshold": t, "e": e})}


class SODMetrics:
    """Accumulates SOD metrics over images under one protocol (``"standard"`` or
    ``"salmetric"``; see the module docstring).

    >>> m = SODMetrics("salmetric")
    >>> m.step(pred_uint8, gt_mask)          # once per image
    >>> m.get_results()["max_f"], m.curves()["pr"]
    """

    def __init__(self, protocol: str = "standard", per_image: bool = False) -> None:
        if protocol not in PROTOCOLS:
            raise DataError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if per_image and protocol != "salmetric":
            # the standard protocol averages F (not P and R) over images: a subset's max-F is
            # not a sum of kept counts, so there is nothing per image to keep
            raise DataError(f"per-image scores are kept under the salmetric protocol only, not {protocol!r}")
        self.protocol = protocol
        self._impl: Any = _Standard() if protocol == "standard" else _SalMetric(per_image)

    def __len__(self) -> int:
        return self._impl.count

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: ``pred`` (H, W) uint8, ``gt`` (H, W) uint8 (> 128) or bool."""
        pred, gt = _check_inputs(pred, gt)
        self._impl.step(pred, gt)

    def _require_data(self) -> None:
        if self._impl.count == 0:
            raise DataError("no images were scored (call step() first)")

    def get_results(self) -> dict[str, float]:
        """Flat dict of scalars: ``mae``, ``max_f``, ``mean_f`` (standard adds
        ``adaptive_f``, ``s_measure``, ``max_e``, ``mean_e``, ``adaptive_e``,
        ``weighted_f``), plus ``n_images``."""
        self._require_data()
        return {**self._impl.results(), "n_images": self._impl.count}

    def per_image(self) -> dict[str, np.ndarray]:
        """What a ``per_image=True`` meter kept of every image, in step order: ``"curves"``
        (N, 3, 256) `salmetric_counts` (`max_f_from_curves` of any subset of them is SalMetric's
        max-F of those images) and ``"mae"`` (N,), whose mean is `get_results`' MAE."""
        self._require_data()
        kept = getattr(self._impl, "kept", None)
        if kept is None:
            raise DataError("this meter keeps no per-image scores (create it with per_image=True)")
        return {"curves": np.stack(kept["curves"]), "mae": np.asarray(kept["mae"], dtype=np.float64)}

    def curves(self) -> dict[str, pd.DataFrame]:
        """``{"pr": [threshold, precision, recall], "fmeasure": [threshold, f]}`` (standard
        adds ``"emeasure": [threshold, e]``), one row per threshold 0..255 (``pred >= t``
        for standard, ``pred > t`` for salmetric)."""
        self._require_data()
        return self._impl.curves()


class SaliencyStats:
    """Standard max-F (beta^2 = 0.3) and MAE, batched and summable over processes.

    Per image, as the common Python evaluation toolbox (pysodmetrics) does: the map is
    quantised to uint8 (x255, truncated, as `sodlab.predict`), min-max normalised when not
    constant, MAE taken against the binary mask; precision and recall at the 256 uint8
    thresholds give a per-image F curve. max-F is the maximum of the mean F curve.
    """

    def __init__(self, device: torch.device) -> None:
        self.f_sum = torch.zeros(256, dtype=torch.float64, device=device)
        self.mae_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, prob: Tensor, mask: Tensor) -> None:
        """``prob``: (N,1,H,W) in [0,1]; ``mask``: (N,1,H,W), foreground > 0.5."""
        n = prob.shape[0]
        p = (prob.double().clamp(0, 1) * 255.0).to(torch.uint8).double().reshape(n, -1) / 255.0
        gt = (mask.reshape(n, -1) > 0.5)
        lo, hi = p.min(dim=1, keepdim=True).values, p.max(dim=1, keepdim=True).values
        span = hi - lo
        p = torch.where(span > 0, (p - lo) / torch.where(span > 0, span, torch.ones_like(span)), p)
        self.mae_sum += (p - gt.double()).abs().mean(dim=1).sum()
        q = (p * 255.0).to(torch.long)  # truncation, as astype(uint8)
        offs = torch.arange(n, device=q.device).view(n, 1) * 256
        idx = (q + offs).reshape(-1)
        fg = torch.bincount(idx[gt.reshape(-1)], minlength=n * 256).view(n, 256).double()
        bg = torch.bincount(idx[~gt.reshape(-1)], minlength=n * 256).view(n, 256).double()
        tp = fg.flip(1).cumsum(1)  # column j: pixels >= 255 - j
        pos = tp + bg.flip(1).cumsum(1)
        precision = tp / torch.where(pos == 0, torch.ones_like(pos), pos)
        recall = tp / gt.sum(dim=1, keepdim=True).clamp(min=1).double()
        num = (1 + BETA2) * precision * recall
        den = torch.where(num == 0, torch.ones_like(num), BETA2 * precision + recall)
        self.f_sum += (num / den).sum(dim=0)
        self.count += n

    def tensors(self) -> list[Tensor]:
        return [self.f_sum, self.mae_sum, self.count]

    def results(self) -> dict[str, float]:
        c = float(self.count)
        if c == 0:
            return {"max_f": float("nan"), "mae": float("nan")}
        return {"max_f": float((self.f_sum / c).max()), "mae": float(self.mae_sum / c)}


class ClassificationMetrics:
    """Top-1 accuracy, per-class accuracy and the confusion matrix, accumulated batch by batch
    in the spirit of PySODMetrics: ``step(logits_or_pred, target)``, then ``get_results()``.

    >>> m = ClassificationMetrics(["ring", "star"])
    >>> m.step(logits, labels)               # logits (N, K) or predicted labels (N,)
    >>> m.get_results()["top1"]
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = [str(c) for c in class_names]
        if not self.class_names:
            raise DataError("ClassificationMetrics needs at least one class name")
        k = len(self.class_names)
        self.confusion = np.zeros((k, k), dtype=np.int64)  # rows: true class, columns: predicted

    def __len__(self) -> int:
        return int(self.confusion.sum())

    def step(self, logits_or_pred: Any, target: Any) -> None:
        """Add a batch: ``logits_or_pred`` (N, K) scores (their arg-max is the prediction) or
        (N,) predicted labels; ``target`` (N,) true labels in [0, K)."""
        p = logits_or_pred.detach().cpu().numpy() if isinstance(logits_or_pred, Tensor) else np.asarray(logits_or_pred)
        t = target.detach().cpu().numpy() if isinstance(target, Tensor) else np.asarray(target)
        k = len(self.class_names)
        if p.ndim == 2:
            if p.shape[1] < k:
                raise DataError(f"logits have {p.shape[1]} classes but {k} class names were given")
            p = p.argmax(axis=1)
        t = t.reshape(-1)
        if p.ndim != 1 or p.shape[0] != t.shape[0]:
            raise DataError(f"expected (N, K) logits or (N,) labels and (N,) targets, got {p.shape} and {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= k):
            raise DataError(f"target labels must lie in [0, {k}); got {int(t.min())}..{int(t.max())}")
        if p.size and (p.min() < 0 or p.max() >= k):
            raise DataError(f"predicted labels must lie in [0, {k}); got {int(p.min())}..{int(p.max())}")
        np.add.at(self.confusion, (t.astype(np.int64), p.astype(np.int64)), 1)

    def get_results(self) -> dict[str, Any]:
        """``top1`` (fraction correct), ``n`` (images), ``per_class`` (class name -> accuracy
        on its images; None for a class without images) and ``confusion`` (``{"classes":
        names, "matrix": rows}``, row = true class, column = predicted class, counts)."""
        n = len(self)
        if n == 0:
            raise DataError("no images were scored (call step() first)")
        totals = self.confusion.sum(axis=1)
        diag = np.diag(self.confusion)
        per_class = {c: (float(diag[i] / totals[i]) if totals[i] else None) for i, c in enumerate(self.class_names)}
        return {"top1": float(diag.sum() / n), "n": n, "per_class": per_class,
                "confusion": {"classes": list(self.class_names), "matrix": self.confusion.tolist()}}


def format_confusion(confusion: Mapping[str, Any]) -> str:
    """The confusion matrix of `ClassificationMetrics.get_results` as aligned text: one row
    per true class, one column per predicted class, headed by the class names."""
    names, rows = list(confusion["classes"]), confusion["matrix"]
    label = "true \\ predicted"
    first = max(len(label), *(len(c) for c in names))
    width = max(max(len(c) for c in names), *(len(str(v)) for r in rows for v in r))
    lines = [f"{label:<{first}}  " + "  ".join(f"{c:>{width}}" for c in names)]
    lines += [f"{c:<{first}}  " + "  ".join(f"{v:>{width}}" for v in r) for c, r in zip(names, rows)]
    return "\n".join(line.rstrip() for line in lines)
