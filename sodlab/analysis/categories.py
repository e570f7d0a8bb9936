"""Category splits for the category-sensitivity study.

A split is drawn from an explicit seed, so a run is repeatable and a second seed is a
second, independent split.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from ..errors import ConfigError, DataError


def split_categories(categories: Sequence[str] | int, n_seen: int, seed: int) -> tuple[list, list]:
    """``(seen, unseen)``: ``n_seen`` categories drawn at random (by ``seed``), the rest unseen.

    ``categories`` is a list of names (or a count, meaning indices ``0..n-1``). Both lists
    keep the input order.
    """
    cats = list(range(categories)) if isinstance(categories, int) else list(categories)
    if len(set(cats)) != len(cats):
        raise ConfigError(f"categories must be distinct, got {cats}")
    if not 1 <= n_seen < len(cats):
        raise ConfigError(f"n_seen must be between 1 and {len(cats) - 1} for {len(cats)} categories, got {n_seen}")
    chosen = set(np.random.default_rng(seed).permutation(len(cats))[:n_seen].tolist())
    seen = [c for i, c in enumerate(cats) if i in chosen]
    unseen = [c for i, c in enumerate(cats) if i not in chosen]
    return seen, unseen


def leave_one_category_out(categories: Sequence) -> Iterator[tuple[object, list]]:
    """``(held_out, train_categories)`` for every category."""
    cats = list(categories)
    for c in cats:
        yield c, [d for d in cats if d != c]


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The category index of every item (-1: none). Uses ``dataset.labels`` when the dataset
    exposes it (no image is read), else reads every item."""
    labels = getattr(dataset, "labels", None)
    if labels is None and isinstance(dataset, Subset):
        parent = dataset_labels(dataset.dataset)
        return parent[np.asarray(dataset.indices, dtype=int)]
    if labels is None:
        labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    return np.asarray(labels, dtype=int)


def category_ids(dataset: Dataset, categories: Sequence) -> list[int]:
    """Category names (or indices) -> indices into ``dataset.category_names``."""
    names = list(getattr(dataset, "category_names", None) or getattr(getattr(dataset, "dataset", None), "category_names", None) or [])
    out = []
    for c in categories:
        if isinstance(c, (int, np.integer)):
            out.append(int(c))
        elif c in names:
            out.append(names.index(c))
        else:
            raise DataError(f"unknown category {c!r}; the dataset has {names or 'no category names'}")
    return out


def subset_by_category(dataset: Dataset, categories: Sequence, max_items: Optional[int] = None, seed: int = 0) -> Subset:
    """The items of ``dataset`` whose category is in ``categories`` (names or indices);
    ``max_items`` keeps a seeded random subset of them (in dataset order)."""
    ids = set(category_ids(dataset, categories))
    idx = np.flatnonzero(np.isin(dataset_labels(dataset), sorted(ids)))
    if max_items is not None and len(idx) > max_items:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_items, replace=False))
    return Subset(dataset, idx.tolist())


def stratified_draw(labels: Sequence[int], fraction: float, seed: int, leave_one: bool = False) -> np.ndarray:
    """Sorted indices of a seeded random ``fraction`` of the items, drawn label by label so
    that every label is drawn (at least one item), or, with ``leave_one``, so that every label
    also keeps one item undrawn (a label with a single item is then not drawn at all)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels, dtype=int)
    rng = np.random.default_rng(seed)
    drawn: list[int] = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        n = max(1, int(round(fraction * len(idx))))
        if leave_one:
            n = min(n, len(idx) - 1)
        drawn.extend(rng.choice(idx, size=n, replace=False).tolist() if n > 0 else [])
    return np.asarray(sorted(drawn), dtype=int)


def fraction_subset(dataset: Dataset, fraction: float, seed: int) -> Subset:
    """A seeded random ``fraction`` of ``dataset``, stratified by category so that every
    category keeps (at least one of) its items."""
    return Subset(dataset, stratified_draw(dataset_labels(dataset), fraction, seed).tolist())
