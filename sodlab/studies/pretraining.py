"""Study 5, pre-training: SOD from scratch vs from an encoder pre-trained to classify.

The stand-in for ImageNet is the pre-training corpus (`sodlab.data.synthetic.ensure_corpus`):
a classification task of its own, disjoint from the benchmark (other photographs, other
shapes). Its ``without-sod`` variant holds none of the benchmark's categories, its
``with-sod`` variant swaps twelve of its classes for them, so that what pre-training brings
as such can be told from what knowing the benchmark's categories brings. Without a corpus the
encoder is pre-trained on the benchmark's own training images and categories (the setting
before the corpus existed; no ``pretrained_with_sod`` arm then).

Full mode may take the real thing instead (``imagenet_weights``): a user's ImageNet file of
Res2Net-50 v1b 26w x 4s is the pre-trained arm's encoder, and CSF+Res2Net (``csf-res2net50``)
is the saliency model of both arms, scratch the same architecture from the same seed without
the file's weights. No classifier is trained then; the arms that need a corpus and the
compute-matched scratch arm (ImageNet's compute cannot be matched here) are refused.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Subset

from ..analysis import categories as cat
from ..analysis import probes
from ..analysis.categories import stratified_draw
from ..data.imagefolder import ImageFolder, ImageTransform, LabelledImages
from ..device import resolve_device
from ..errors import CheckpointError, ConfigError, DataError
from ..models.registry import create_model
from ..models.res2net import Res2Net, load_imagenet_weights, res2net50_v1b_26w_4s
from .common import (PROTOCOL, VAL_SEED, category_names, classifier_row, datasets, flush_denormals, log_frame, max_f_gain, score_summary,
                     seed_mean, seeded, sod_scores, study_tables, training_table)
from .rules import CI_LEVEL, HALF_SCHEDULE, half_epochs, seed_name
from .twins import (TwinSpec, classification_train, cls_model, modules_digest, recipes_digest, sod_model, sod_readout, train_checked,
                    train_twin, twin_spec)

# ``pretrained``: the encoder of a classifier of the (without-sod) corpus; ``pretrained_with_sod``:
# of the with-sod corpus; ``random_labels``: of the first corpus with its labels shuffled;
# ``scratch_matched``: scratch trained for as many images as pre-training plus fine-tuning see.
ARMS = ("scratch", "pretrained", "pretrained_with_sod", "random_labels", "scratch_matched")
# Each control arm against the pre-trained arm: what the difference isolates.
CONTROLS = ("pretrained_with_sod", "random_labels", "scratch_matched")
# the controls that are conditions, not the verdict's own arm (``scratch_matched`` is its scratch):
# with ``condition_seeds`` they run with the first seeds only
CONDITION_ARMS = ("pretrained_with_sod", "random_labels")
PRETRAINING_CLASSIFIER = "pretraining_classifier"
WITH_SOD_CLASSIFIER = "pretraining_classifier_with_sod"
# The corpus classifier's training flips and turns: none. Its glyphs have an upright and a
# handedness (b, d, p and q; 6 and 9 are one another turned), so the twins' flips and quarter
# turns would make classes of one another (measured: 24 classes, 30 epochs, 0.61 top-1 with them).
CORPUS_AUGMENTATION = {"hflip": False, "vflip": False, "rot90": False}
# The share of each class of the corpus's ``val`` split held out for the classifier gate; the
# rest selects the epoch.
GATE_SHARE = 0.5

# --- the ImageNet arm (``imagenet_weights``)
# The ``classifiers`` row that stands for the user's ImageNet weights (no classifier is trained).
IMAGENET_CLASSIFIER = "imagenet_weights"
IMAGENET_CLASSES = 1000
# The arms that cannot run from ImageNet weights: the two corpus controls have no ImageNet
# counterpart here, and ImageNet's compute (1.28 million images, ~100 epochs) cannot be matched.
IMAGENET_REFUSED = ("pretrained_with_sod", "random_labels", "scratch_matched")
# BatchNorm alike in both arms: trained, in train mode, its statistics updated. The authors
# fine-tune with frozen BN (`csf-res2net-paper`: ``freeze_bn=true``), which makes sense only
# over pre-trained statistics: frozen in the scratch arm, BN would keep its random
# initialisation's running statistics (mean 0, variance 1) and unit scale for ever, and the
# comparison would measure that handicap, not pre-training.
IMAGENET_BN = {"freeze_bn": False, "frozen_stages": -1}
# The saliency model and the recipe of both arms: CSF+Res2Net with the authors' optimisation
# at 10 images a step (Adam 5e-5, weight decay 5e-4, lr x0.1 after epoch 16), both arms alike;
# left-right flips only (photographs have an upright). ``cls_model`` names the classifier the
# ImageNet file was trained as; nothing trains it here.
IMAGENET_TWINS = TwinSpec("res2net50", "csf-res2net50", "res2net50", "csf-res2net-batched", "classify-quick",
                          ("backbone.layer2", "backbone.layer3", "backbone.layer4"), turns=False)


class RelabelledDataset(Dataset):
    """``dataset`` with each item's ``label`` replaced by ``labels[i]`` (the random-label arm's
    pre-training data when it is no `LabelledImages`: the same images, their labels shuffled)."""

    def __init__(self, dataset: Dataset, labels: Sequence[int]) -> None:
        if len(labels) != len(dataset):
            raise ConfigError(f"{len(labels)} labels for {len(dataset)} items")
        self.dataset, self.labels = dataset, [int(v) for v in labels]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "label": self.labels[index]}


def matched_epochs(epochs: int, pretrain_epochs: int, n_pretrain: int, n_train: int) -> int:
    """Epochs over ``n_train`` images that see as many images as ``pretrain_epochs`` over
    ``n_pretrain`` followed by ``epochs`` over ``n_train`` (rounded up): the compute-matched
    scratch arm."""
    return int(epochs + math.ceil(pretrain_epochs * n_pretrain / n_train))


def shuffled(ds: Dataset, seed: int) -> Dataset:
    """``ds`` with its labels permuted by ``seed``: a `LabelledImages` stays one (so that it can
    be decoded into memory once), anything else is wrapped in `RelabelledDataset`."""
    base, indices = (ds.dataset, list(ds.indices)) if isinstance(ds, Subset) else (ds, None)
    labels = np.asarray(base.labels if isinstance(base, LabelledImages) else cat.dataset_labels(ds))
    if isinstance(base, LabelledImages):
        rows = np.arange(len(base)) if indices is None else np.asarray(indices)
        new = labels.copy()
        new[rows] = np.random.default_rng(seed).permutation(labels[rows])
        out = base.relabelled(new)
        return out if indices is None else Subset(out, indices)
    return RelabelledDataset(ds, np.random.default_rng(seed).permutation(labels))


def corpus_splits(root: str | Path, image_size: int, augmentation: Mapping[str, bool] = CORPUS_AUGMENTATION, preload: bool = True
                  ) -> tuple[Dataset, Dataset, Dataset]:
    """``(train, val, held_out)`` of a pre-training corpus folder (``root/train``, ``root/val``
    in the ImageFolder layout): the training images with the classifier's training transform
    (decoded once into memory when ``preload``), and the ``val`` split's images cut in two, class
    by class (`GATE_SHARE` of each held out), one to select the epoch, one for the gate."""
    root = Path(root)
    for part in ("train", "val"):
        if not (root / part).is_dir():
            raise DataError(f"{root}: expected a pre-training corpus with train/ and val/ class folders (missing {part}/); "
                            "make one with `sodlab data synth --corpus pretrain --out DIR` or sodlab.data.synthetic.ensure_corpus")
    train = ImageFolder(root / "train", ImageTransform(image_size, train=True, **dict(augmentation)))
    val = ImageFolder(root / "val", ImageTransform(image_size), class_names=train.class_names)
    counts = np.bincount(val.labels, minlength=len(val.class_names))
    if counts.min() < 2:
        raise DataError(f"{root / 'val'}: at least 2 images per class are needed (one selects the epoch, one is held out); "
                        f"class {val.class_names[int(counts.argmin())]} has {int(counts.min())}")
    # drawn as `datasets` draws a benchmark's validation split: by class, seeded, each class in both halves
    select = stratified_draw(val.labels, 1 - GATE_SHARE, VAL_SEED, leave_one=True)
    gate = np.setdiff1d(np.arange(len(val)), select)
    if preload:
        train.preload()
    return train, Subset(val, select.tolist()), Subset(val, gate.tolist())


def imagenet_encoder(path: str | Path) -> Res2Net:
    """A Res2Net-50 v1b 26w x 4s backbone (BatchNorm as `IMAGENET_BN`) holding the ImageNet
    weights file ``path`` (`load_imagenet_weights`: read with ``weights_only=True``, every key
    and shape checked); any problem is a `CheckpointError` naming the argument and the file."""
    try:
        return load_imagenet_weights(res2net50_v1b_26w_4s(**IMAGENET_BN), path)
    except CheckpointError as exc:  # the same kind (an unsafe pickle stays one), with the argument named
        raise type(exc)(f"imagenet_weights: {exc}") from exc


def imagenet_sod_model(spec: TwinSpec, seed: int, encoder: Optional[Res2Net] = None) -> torch.nn.Module:
    """The ImageNet arms' saliency model (``spec.sod_model``, BatchNorm as `IMAGENET_BN`)
    initialised from ``seed``; with ``encoder`` its backbone's weights and statistics copied
    from it. The head is the same in both arms: only the encoder's start differs."""
    model = seeded(lambda: create_model(spec.sod_model, **IMAGENET_BN), seed)
    if encoder is not None:
        model.backbone.load_state_dict(encoder.state_dict())
    return model


def imagenet_row(path: str | Path, digest: str, top1: Optional[float]) -> dict[str, Any]:
    """The ``classifiers`` row of the ImageNet arm: the weights file (name and `encoder_digest`)
    and ``top1``, the user's own measurement of it on ImageNet val (None: not given; sodlab
    measures nothing on ImageNet, so the verdict's classifier gate is then not evaluable)."""
    return {"model": IMAGENET_CLASSIFIER, "weights": Path(path).name, "digest": digest, "classes": IMAGENET_CLASSES,
            "n_images": None, "accuracy": None if top1 is None else float(top1), "chance": 1.0 / IMAGENET_CLASSES,
            "above_chance": None if top1 is None else probes.chance_normalised(top1, IMAGENET_CLASSES),
            "measured_by": None if top1 is None else "user"}


def imagenet_design(mode: str, imagenet_weights: str | Path, imagenet_top1: Optional[float] = None) -> dict[str, Any]:
    """05's arguments of `pretraining_effect` for the ImageNet arm, in full mode only (the
    other modes' sizes are for the CPU-sized twins): the weights as a `Path` (so that a
    cached result is keyed by the file's size and time too), the user's top-1, and the two
    arms that can run from ImageNet weights."""
    if mode != "full":
        raise ConfigError(f"imagenet_weights is 05's full-mode arm (CSF+Res2Net-50 at full mode's sizes); got mode {mode!r}: "
                          "run with mode='full', or leave imagenet_weights None for the corpus design")
    return {"imagenet_weights": Path(imagenet_weights).expanduser(), "imagenet_top1": imagenet_top1, "arms": ("scratch", "pretrained")}


def imagenet_checks(twins: Optional[str | TwinSpec], arms: Sequence[str], corpus: Optional[str | Path],
                    corpus_with_sod: Optional[str | Path], pretrain_epochs: Optional[int], top1: Optional[float]) -> TwinSpec:
    """The family of `pretraining_effect`'s ImageNet arm (`IMAGENET_TWINS` unless ``twins``
    is a `TwinSpec` of the same saliency model), after refusing what does not go with
    ``imagenet_weights``: the arms of `IMAGENET_REFUSED`, a corpus, pre-training epochs, and a
    top-1 outside [0, 1]."""
    refused = [a for a in arms if a in IMAGENET_REFUSED]
    if refused:
        raise ConfigError(f"arms {refused} cannot run with imagenet_weights: the corpus controls have no ImageNet counterpart and "
                          "ImageNet's compute cannot be matched here; use arms=('scratch', 'pretrained')")
    given = [n for n, v in (("corpus", corpus), ("corpus_with_sod", corpus_with_sod), ("pretrain_epochs", pretrain_epochs)) if v is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: not with imagenet_weights (the pre-trained encoder is the file's, no classifier is trained)")
    if top1 is not None and (isinstance(top1, bool) or not isinstance(top1, numbers.Real) or not 0.0 <= float(top1) <= 1.0):
        raise ConfigError(f"imagenet_top1 {top1!r}: the file's ImageNet val top-1 as a share in [0, 1] (e.g. 0.80)")
    spec = IMAGENET_TWINS if twins is None else twin_spec(twins)
    if spec.sod_model != IMAGENET_TWINS.sod_model:
        raise ConfigError(f"twins {spec.name!r}: with imagenet_weights the saliency model is {IMAGENET_TWINS.sod_model} "
                          "(leave twins None, or give a TwinSpec of that model)")
    return spec


def arm_name(init: str, fraction: float) -> str:
    """A fine-tuned model's name in ``training``: the arm and the share of the training set."""
    return f"{init} at {fraction:.0%}"


@flush_denormals
def pretraining_effect(
    data_root: str | Path,
    fractions: Sequence[float] = (0.25, 1.0),
    width: int = 8,
    epochs: int = 3,
    image_size: int = 64,
    seeds: Sequence[int] = (0,),
    device: Optional[str] = "auto",
    work_dir: str | Path = "runs/pretraining",
    pretrain_epochs: Optional[int] = None,
    batch_size: Optional[int] = 16,
    n_boot: int = 300,
    progress: bool = False,
    ci: float = CI_LEVEL,
    arms: Sequence[str] = ("scratch", "pretrained"),
    twins: Optional[str | TwinSpec] = None,
    corpus: Optional[str | Path] = None,
    corpus_with_sod: Optional[str | Path] = None,
    schedules: Optional[Sequence[int]] = None,
    schedule_check: bool = False,
    imagenet_weights: Optional[str | Path] = None,
    imagenet_top1: Optional[float] = None,
    condition_seeds: Optional[int] = None,
) -> dict[str, pd.DataFrame]:
    """SOD from scratch vs from the encoder of a classifier pre-trained on ``corpus`` (a
    pre-training corpus folder; None: the benchmark's own training images and categories), on
    ``fractions`` of the training set (stratified by category), for every seed of ``seeds``
    (each seed its own classifiers, initial weights and data order), with the twins of family
    ``twins`` (`sodlab.studies.twins`, default ``"res2net-mini"``: the saliency model and the
    classifier share their initial encoder; the pre-trained saliency model's head starts as
    scratch's).

    ``imagenet_weights`` (full mode's arm): a Res2Net-50 v1b 26w x 4s ImageNet file
    (`load_imagenet_weights`; e.g. the authors' ``res2net50_v1b_26w_4s-3cf99910.pth``) is the
    pre-trained arm's encoder instead of a classifier trained here, and both arms are
    `IMAGENET_TWINS`' ``csf-res2net50`` (or ``twins``, a `TwinSpec` of that model: another
    recipe), BatchNorm trained alike in both (`IMAGENET_BN`), the same head from the same seed.
    ``width``, ``corpus`` and the arms of `IMAGENET_REFUSED` do not apply. ``imagenet_top1``:
    the user's own measured ImageNet val top-1 of that file, recorded in ``classifiers`` as the
    classifier gate's value (sodlab cannot check it; None leaves the gate not evaluable).

    ``schedules``: the saliency models' epochs, one length or two of which the shorter is half
    the longer (default ``(epochs,)``); every arm but ``scratch_matched`` is fine-tuned for each,
    since the claim is that scratch catches up with enough training. The longer is the
    headline; the shorter is a condition, short on purpose (named ``<model>@half`` in
    ``training``, which the plateau gate does not judge).
    ``arms`` (always with ``scratch`` and ``pretrained``) adds the controls:
    ``pretrained_with_sod`` (pre-trained on ``corpus_with_sod``, which holds the benchmark's
    categories), ``random_labels`` (pre-trained on ``corpus`` with its labels shuffled: what
    pre-training gives without the classes' meaning) and ``scratch_matched`` (scratch trained
    for as many images as pre-training plus fine-tuning see together, `matched_epochs`, at the
    largest fraction only: at small fractions the match is hundreds of epochs).
    ``condition_seeds``: how many of ``seeds`` (the first ones) also run the conditions, the
    `CONDITION_ARMS` and the shorter schedule; the rest run the headline arms (``scratch``,
    ``pretrained``, ``scratch_matched``) at the longer schedule alone. None: every seed runs
    everything, as does a number at least as large as ``seeds`` (a run of the first seeds alone
    runs all of it). Each comparison pairs the seeds both of its arms ran (``n_seeds``), so a
    control's interval speaks for its own seeds. Why: a standard run must fit CPU hours, and
    the issue asks five seeds of the headline contrast, three of everything else.
    ``schedule_check``: the first seed's models of the longest schedule (classifiers included)
    are trained again without the last quarter of their epochs, for their validation curves
    alone (``<model>@check``: the plateau gate's evidence for every seed of that model).

    Returns ``pretrain_log``, ``curves`` (fine-tuning logs by init, fraction, epochs, seed),
    ``final`` (max-F/MAE per init, fraction, epochs and seed), ``efficiency`` (pre-trained
    minus scratch per fraction and schedule, the mean over seeds, with a paired bootstrap
    interval over seeds and test images at level ``ci``), ``controls`` (pre-trained minus each
    control arm, alike), ``training`` (validation curves) and ``classifiers`` (each
    pre-training classifier's top-1 on held-out corpus images next to chance; with
    ``imagenet_weights``, `imagenet_row`).
    """
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not {"scratch", "pretrained"} <= set(arms):
        raise ConfigError(f"arms must include 'scratch' and 'pretrained' and be among {ARMS}; got {list(arms)}")
    if imagenet_weights is not None:
        spec = imagenet_checks(twins, arms, corpus, corpus_with_sod, pretrain_epochs, imagenet_top1)
    elif imagenet_top1 is not None:
        raise ConfigError("imagenet_top1 is the top-1 of the imagenet_weights file; it needs imagenet_weights")
    else:
        spec = twin_spec("res2net-mini" if twins is None else twins)
    if "pretrained_with_sod" in arms and corpus_with_sod is None:
        raise ConfigError("the 'pretrained_with_sod' arm needs corpus_with_sod (the with-sod pre-training corpus)")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, at least one, got {seeds}")
    if condition_seeds is not None and int(condition_seeds) < 1:
        raise ConfigError(f"condition_seeds must be at least 1 (or None: every seed), got {condition_seeds}")
    with_conditions = set(seeds[: len(seeds) if condition_seeds is None else int(condition_seeds)])
    lengths = sorted({int(n) for n in (schedules or (epochs,))})
    longest = lengths[-1]
    if lengths[0] < 1 or len(lengths) > 2 or (len(lengths) == 2 and (lengths[0],) != half_epochs(longest)):
        raise ConfigError(f"schedules {list(schedules or ())}: one positive number of epochs, or two of which the shorter is half "
                          f"the longer")
    arms = [a for a in ARMS if a in arms]
    # read and checked before any training: a wrong file fails now, not after the scratch runs
    encoder = None if imagenet_weights is None else imagenet_encoder(imagenet_weights)
    digest = None if encoder is None else modules_digest([encoder])
    dev = resolve_device(device)
    train, val, test = datasets(data_root, image_size, augmentation=spec.augmentation())
    pre_epochs = int(pretrain_epochs or epochs)

    # --- the pre-training sets (the same for every seed)
    sources: dict[str, tuple[Dataset, Dataset, Dataset]] = {}
    if encoder is None:  # else pre-trained elsewhere, on ImageNet
        sources["pretrained"] = (corpus_splits(corpus, image_size, CORPUS_AUGMENTATION) if corpus is not None else
                                 (classification_train(spec, data_root, train, image_size, category_names(train)), val, test))
    if "pretrained_with_sod" in arms:
        sources["pretrained_with_sod"] = corpus_splits(corpus_with_sod, image_size, CORPUS_AUGMENTATION)
    n_pretrain = len(sources["pretrained"][0]) if "pretrained" in sources else 0
    # recorded in the classifiers' run configs (the datasets above apply them)
    pre_flips = {} if corpus is None else dict(CORPUS_AUGMENTATION)

    training: list[dict] = []
    pre_logs, classifiers, curves, finals = [], [], [], []
    scores: dict[tuple[str, float, int], dict[int, np.ndarray]] = {}

    def fit(name: str, seed: int, task: str, make: Any, train_ds: Dataset, val_ds: Optional[Dataset], run: Path, n_epochs: int,
            check: bool, **extra: Any) -> tuple[torch.nn.Module, pd.DataFrame]:
        return train_checked(spec, task, make, train_ds, val_ds, run, n_epochs, seed, dev, seed_name(name, seed), training,
                             check and schedule_check and seed == seeds[0], batch_size=batch_size, progress=progress, image_size=image_size, **extra)

    if encoder is not None:
        classifiers.append(imagenet_row(imagenet_weights, digest, imagenet_top1))
    for seed in seeds:
        # the ImageNet arm's model has no width; its pre-trained runs are keyed by the weights
        # keyed by the recipes too (`recipes_digest`): a recipe changed since trains beside the old runs
        work = Path(work_dir) / ((f"{spec.name}_seed{seed}" if encoder is not None else f"{spec.name}_w{width}_seed{seed}")
                                 + f"_{recipes_digest(spec)}")
        encoders: dict[str, torch.nn.Module] = {}
        for arm, cls_name in (("pretrained", PRETRAINING_CLASSIFIER), ("pretrained_with_sod", WITH_SOD_CLASSIFIER)):
            if arm not in sources or (arm in CONDITION_ARMS and seed not in with_conditions):
                continue
            pre_train, pre_val, pre_test = sources[arm]
            n_classes = len(category_names(pre_train))
            encoders[arm], lg = fit(cls_name, seed, "classification", lambda n=n_classes, s=seed: cls_model(spec, width, n, s),
                                    pre_train, pre_val, work / ("pretrain" if arm == "pretrained" else "pretrain_with_sod"), pre_epochs, True,
                                    **pre_flips)
            pre_logs.append(log_frame(lg, classifier=cls_name, seed=seed))
            classifiers.append(classifier_row(seed_name(cls_name, seed), encoders[arm], pre_test, dev, n_classes, seed=seed))
        if "random_labels" in arms and seed in with_conditions:
            pre_train = sources["pretrained"][0]
            # no validation: held-out images cannot score shuffled labels, so the last epoch is kept
            encoders["random_labels"], _ = train_twin(spec, "classification", cls_model(spec, width, len(category_names(pre_train)), seed),
                                                      shuffled(pre_train, seed), None, work / "pretrain_random_labels", pre_epochs, seed,
                                                      dev, batch_size=batch_size, progress=progress, image_size=image_size, **pre_flips)

        for frac in fractions:
            sub = cat.fraction_subset(train, frac, seed) if frac < 1 else train
            for init in arms:
                matched = init == "scratch_matched"
                if (matched and frac != max(fractions)) or (init in CONDITION_ARMS and seed not in with_conditions):
                    continue

                def make(s: int = seed, i: str = init) -> torch.nn.Module:
                    if encoder is not None:
                        return imagenet_sod_model(spec, s, encoder if i == "pretrained" else None)
                    return sod_model(spec, width, s) if i in ("scratch", "scratch_matched") else sod_readout(encoders[i], s)

                # another weights file is another run, never a finished one resumed
                run = f"{init}-{digest}" if encoder is not None and init == "pretrained" else init
                for n in ([longest] if matched or seed not in with_conditions else lengths):
                    n_epochs = matched_epochs(n, pre_epochs, n_pretrain, len(sub)) if matched else n
                    name = arm_name(init, frac) + ("" if n == longest else HALF_SCHEDULE)
                    trained, lg = fit(name, seed, "sod", make, sub, val, work / f"{run}_f{frac:g}_e{n}", n_epochs,
                                      check=n == longest)
                    curves.append(log_frame(lg, init=init, fraction=frac, schedule=n, seed=seed))
                    s = sod_scores(trained, test, dev)
                    scores.setdefault((init, frac, n), {})[seed] = s["curves"]
                    finals.append({"init": init, "fraction": frac, "n_train": len(sub), "schedule": n, "epochs": n_epochs, "seed": seed,
                                   **score_summary(s)})

    final = pd.DataFrame(finals)
    n_train = final.groupby("fraction")["n_train"].first()

    def gain(a: str, b: str, frac: float, n: int) -> dict[str, Any]:
        # the seeds both arms ran (a condition ran the first ``condition_seeds``), paired
        both = [s for s in seeds if s in scores[(a, frac, n)] and s in scores[(b, frac, n)]]
        g = max_f_gain([scores[(a, frac, n)][s] for s in both], [scores[(b, frac, n)][s] for s in both], n_boot, ci, seeds[0])
        mae = final[final.seed.isin(both) & np.isclose(final.fraction, frac) & (final.schedule == n)].groupby("init")["mae"].mean()
        return {"fraction": frac, "schedule": n, "n_train": int(n_train[frac]), "max_f_gain": g["gap"], "low": g["low"], "high": g["high"],
                "level": ci, "mae_gain": float(mae[b] - mae[a]), "n_seeds": len(both), "protocol": PROTOCOL}

    eff = [gain("pretrained", "scratch", f, n) for f in fractions for n in lengths if ("pretrained", f, n) in scores]
    controls = [{"versus": c, **gain("pretrained", c, f, n)} for c in CONTROLS if c in arms for f in fractions for n in lengths
                if (c, f, n) in scores]
    pre_log = pd.concat(pre_logs, ignore_index=True) if pre_logs else pd.DataFrame(columns=["classifier", "seed"])
    return study_tables({"pretrain_log": pre_log, "curves": pd.concat(curves, ignore_index=True), "final": final,
                         "efficiency": pd.DataFrame(eff),
                         "controls": pd.DataFrame(controls, columns=["versus", "fraction", "schedule", "n_train", "max_f_gain", "low", "high",
                                                                     "level", "mae_gain", "n_seeds", "protocol"]),
                         "training": training_table(training), "classifiers": pd.DataFrame(classifiers)})


# 2: ``controls``, ``epochs`` in ``final``; 3: protocol columns, scored as sodlab.evaluate scores;
# 4: the twins, the corpus, seeds and schedules; 5: the schedule check is the last quarter's, first seed only;
# 6: ``condition_seeds``, ``n_seeds`` per comparison
pretraining_effect.cache_version = 6  # type: ignore[attr-defined]


def seed_means(res: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """What 05's figures show, from `pretraining_effect`'s tables: the longest schedule's
    fine-tuning curves (``curves``, by init, fraction and epoch), test scores (``final``, by
    init and fraction) and gains over scratch (``efficiency``), the first two averaged over the
    seeds; tables from before schedules and seeds pass through."""
    out = {}
    for name, by in (("curves", ["init", "fraction", "epoch"]), ("final", ["init", "fraction"]), ("efficiency", None)):
        df = res[name]
        if "schedule" in df:
            df = df[df["schedule"] == df["schedule"].max()]
        out[name] = seed_mean(df, by) if by is not None and "seed" in df else df.reset_index(drop=True)
    return out
