"""What `fit` reads: datasets from folders or objects, batches as (image, target), and the
loaders (one permutation per epoch, seeded workers)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ..data import SODFolder
from ..data import transforms as T
from ..data.imagefolder import ImageFolder, ImageTransform, is_image_folder, labelled_images
from ..errors import ConfigError, DataError
from . import distributed as D
from .config import TrainConfig


def folder_dataset(root: str | Path, config: TrainConfig, train: bool, category_names: Optional[Sequence[str]] = None,
                   progress: bool = False) -> Dataset:
    """The dataset of folder ``root`` at ``config.image_size``, with the training or the
    evaluation transform; ``category_names`` fixes label indices (give validation the
    training set's).

    Saliency: a `SODFolder` (flips per ``config.hflip``/``vflip``). Classification: an
    `ImageFolder` (``root/<class>/*.jpg``) or the images of a `SODFolder` labelled by its
    ``categories.csv``, with `ImageTransform` (crop, flips, ``config.rot90``); masks are not read.
    With ``config.preload`` its images (and masks) are decoded into memory first (a bar with
    ``progress``).
    """
    if config.image_size is None:
        raise ConfigError("training from a folder needs image_size in the train config")
    size = int(config.image_size)
    if config.resolved_task == "classification":
        image_tf = ImageTransform(size, train=train, hflip=config.hflip, vflip=config.vflip, rot90=config.rot90)
        if is_image_folder(root):
            ds = ImageFolder(root, transform=image_tf, class_names=category_names)
        else:
            ds = labelled_images(SODFolder(root, category_names=category_names), image_tf)
    elif is_image_folder(root):
        raise DataError(f"{root}: an ImageFolder (one sub-folder per class, no masks); saliency training needs images/ and GT/ "
                        "(to train a classifier, use a classification recipe such as classify-quick)")
    else:
        transform = T.train_transform(size, hflip=config.hflip, vflip=config.vflip, rot90=config.rot90) if train else T.eval_transform(size)
        ds = SODFolder(root, transform=transform, category_names=category_names)
    if config.preload:
        ds.preload(progress=progress)
    return ds


def class_names_of(ds: Dataset) -> Optional[list[str]]:
    """The class names of a labelled dataset (``class_names`` or `SODFolder`'s
    ``category_names``; through `Subset`s, which keep their dataset's labels), or None."""
    while isinstance(ds, Subset):
        ds = ds.dataset
    names = getattr(ds, "class_names", None) or getattr(ds, "category_names", None)
    return [str(c) for c in names] if names else None


def as_dataset(data: Any, config: TrainConfig, train: bool, class_names: Optional[Sequence[str]] = None,
               progress: bool = False) -> Dataset:
    """``data`` itself when it is a dataset, else the `folder_dataset` of that path
    (``class_names`` fixing its label indices)."""
    if isinstance(data, (str, Path)):
        return folder_dataset(data, config, train, class_names, progress)
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise DataError(f"expected a dataset or a folder path, got {type(data).__name__}")
    return data


def unpack(batch: Any, task: str) -> tuple[Tensor, Tensor]:
    """(images, targets) of a batch of dicts (``image`` + ``mask``/``label``) or pairs."""
    if isinstance(batch, Mapping):
        key = "mask" if task == "sod" else "label"
        if "image" not in batch or key not in batch:
            raise DataError(f"{task} training needs batches with 'image' and {key!r}; got keys {sorted(batch)}")
        return batch["image"], batch[key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise DataError(f"cannot read a batch of type {type(batch).__name__}; datasets should yield dicts with 'image' and 'mask'/'label'")


def seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch per worker from the loader's generator; numpy and python
    # follow from it so that augmentations in workers are reproducible too.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def train_loader(ds: Dataset, sampler: DistributedSampler, config: TrainConfig, info: D.DistInfo, seed: int) -> DataLoader:
    """One epoch's loader: ``sampler`` (set to the epoch) orders the data, ``seed`` the workers."""
    return DataLoader(
        ds,
        batch_size=config.batch_size // info.world_size,
        sampler=sampler,
        drop_last=config.drop_last,
        num_workers=config.num_workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=info.device.type == "cuda",
    )


def val_loader(ds: Dataset, config: TrainConfig, info: D.DistInfo) -> DataLoader:
    """This process's share of the validation data, in order."""
    if info.distributed:
        ds = Subset(ds, list(range(info.rank, len(ds), info.world_size)))
    bs = config.val_batch_size or max(1, 2 * config.batch_size // info.world_size)
    return DataLoader(ds, batch_size=bs, shuffle=False, num_workers=config.num_workers, worker_init_fn=seed_worker)
