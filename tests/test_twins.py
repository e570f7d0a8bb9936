"""The studies' twins (`sodlab.studies.twins`): one initial encoder, the same images and
augmentation for both tasks, read-outs across tasks, and the shared store's run keys."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from sodlab.errors import ConfigError
from sodlab.studies import twins
from sodlab.studies.common import datasets
from sodlab.studies.transfer import freeze_encoder


def _backbone_state(model):
    enc = twins.encoder_modules(model)
    return {f"{i}.{k}": v for i, m in enumerate(enc) for k, v in m.state_dict().items()}


def _same_state(a, b):
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from sodlab.data import synthetic

    root = tmp_path_factory.mktemp("twins") / "b"
    synthetic.generate(root, n_train=48, n_test=12, size=48, seed=3, progress=False)
    return root


@pytest.mark.parametrize("family", ["res2net-mini", "csnet"])
def test_twins_start_from_one_encoder(family):
    sod = twins.sod_model(family, 8, seed=5)
    cls = twins.cls_model(family, 8, num_classes=7, seed=5)
    _same_state(_backbone_state(sod), _backbone_state(cls))
    assert cls.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    assert sod.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 64, 64)
    # another seed is another encoder
    other = _backbone_state(twins.sod_model(family, 8, seed=6))
    assert any(not torch.equal(v, other[k]) for k, v in _backbone_state(sod).items())
    # width sets the first stage's channels, the later ones double
    assert twins.encoder_parameters(twins.sod_model(family, 4, 0)) < twins.encoder_parameters(sod)


def test_res2net_width_sets_the_stage_channels():
    m = twins.sod_model("res2net-mini", 4, 0)
    assert m.backbone.config.planes == [4, 8, 16, 32] and m.backbone.config.stem_width == 4
    assert twins.twin_spec("res2net-mini").layers == ("backbone.layer2", "backbone.layer3", "backbone.layer4")


@pytest.mark.parametrize("family", ["res2net-mini", "csnet"])
def test_readouts_copy_the_encoder_and_seed_a_fresh_head(family):
    sod = twins.sod_model(family, 8, seed=1)
    with torch.no_grad():  # make the encoder differ from any fresh initialisation
        for m in twins.encoder_modules(sod):
            for p in m.parameters():
                p.add_(0.5)
    probe = twins.class_readout(sod, 5)
    _same_state(_backbone_state(sod), _backbone_state(probe))
    assert probe.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    back_a, back_b = twins.sod_readout(probe, seed=2), twins.sod_readout(probe, seed=2)
    _same_state(_backbone_state(sod), _backbone_state(back_a))
    _same_state(dict(back_a.state_dict()), dict(back_b.state_dict()))  # the head is seeded


def test_freeze_encoder_keeps_the_backbone_fixed_and_in_eval_mode():
    model = freeze_encoder(twins.sod_model("res2net-mini", 4, 0))
    model.train()
    assert not model.backbone.training and model.head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_unknown_family_is_named():
    with pytest.raises(ConfigError, match=r"twins 'vgg': expected one of res2net-mini, csnet"):
        twins.twin_spec("vgg")


def test_recipe_overrides_keep_each_res2net_recipe_batch_size():
    r = twins.recipe_overrides("res2net-mini", "classification", 20, batch_size=16)
    assert r == {"epochs": 20, "hflip": True, "vflip": True, "rot90": True, "preload": False}
    c = twins.recipe_overrides("csnet", "sod", 4, batch_size=16)
    assert c["batch_size"] == 16 and c["rot90"] is False


def test_run_keys_name_the_model_and_change_with_what_makes_it(tmp_path):
    over = twins.recipe_overrides("res2net-mini", "sod", 6)
    key = twins.run_key("res2net-mini", "sod", 16, 0, tmp_path, over, images=[1, 2, 3])
    assert key.startswith("res2net-mini-sod-w16-seed0-")
    assert key == twins.run_key("res2net-mini", "sod", 16, 0, tmp_path, dict(over), images=[1, 2, 3])
    others = {
        twins.run_key("res2net-mini", "sod", 16, 0, tmp_path, {**over, "epochs": 7}, images=[1, 2, 3]),
        twins.run_key("res2net-mini", "sod", 16, 0, tmp_path, over, images=[1, 2, 4]),
        twins.run_key("res2net-mini", "sod", 16, 0, tmp_path / "other", over, images=[1, 2, 3]),
        twins.run_key("res2net-mini", "sod", 16, 0, tmp_path, over, images=[1, 2, 3], extra={"arm": "x"}),
    }
    assert key not in others and len(others) == 4


def test_twin_runs_use_the_store_when_given(bench, tmp_path):
    train, _, _ = datasets(bench, 32)
    local = twins.twin_runs("res2net-mini", bench, train, 8, 0, 2, 3, 16, tmp_path / "work")
    assert local == {"sod": tmp_path / "work" / "sod", "classification": tmp_path / "work" / "classifier"}
    shared = twins.twin_runs("res2net-mini", bench, train, 8, 0, 2, 3, 16, tmp_path / "work", tmp_path / "store")
    assert shared["sod"].parent == tmp_path / "store" and shared["sod"].name.startswith("res2net-mini-sod-w8-seed0-")
    assert shared["classification"].name.startswith("res2net-mini-classification-w8-seed0-")


def test_classification_train_has_the_same_images_and_labels(bench):
    spec = twins.twin_spec("res2net-mini")
    train, _, _ = datasets(bench, 32, augmentation=spec.augmentation())
    assert isinstance(train, Subset) and train.dataset.transform.rot90
    cls_train = twins.classification_train(spec, bench, train, 32)
    assert isinstance(cls_train, Subset) and list(cls_train.indices) == list(train.indices)
    assert cls_train.dataset.preloaded and cls_train.dataset.transform.rot90 and cls_train.dataset.transform.vflip
    for i in (0, 5, len(train) - 1):
        assert int(cls_train[i]["label"]) == int(train[i]["label"])
        assert cls_train[i]["image"].shape == (3, 32, 32)
    # a subset of the training split (04's seen categories) is the same images too, not the split's first ones
    seen = Subset(train, [3, 1, 7])
    nested = twins.classification_train(spec, bench, seen, 32)
    assert list(nested.indices) == [train.indices[3], train.indices[1], train.indices[7]]
    assert [nested.dataset.stems[i] for i in nested.indices] == [seen[k]["stem"] for k in range(3)]
    # the CSNet family trains its classifier on the saliency dataset itself
    assert twins.classification_train("csnet", bench, train, 32) is train


def test_study_checkpoints_remember_class_names_and_input_size(bench):
    # the studies train on Subsets of a folder: the trainer finds the class names through them,
    # and the twins' recipes record the input size, so `sodlab eval` runs the model as trained
    from sodlab.train.data import class_names_of

    train, _, _ = datasets(bench, 32)
    names = class_names_of(train)
    assert names == list(train.dataset.category_names) and len(names) == 12
    assert class_names_of(Subset(train, [0, 1])) == names
    assert twins.recipe_overrides("res2net-mini", "sod", 3, image_size=64)["image_size"] == 64
    assert "image_size" not in twins.recipe_overrides("res2net-mini", "sod", 3)


def test_encoder_digest_follows_the_encoder_only():
    sod = twins.sod_model("res2net-mini", 4, 0)
    cls = twins.cls_model("res2net-mini", 4, 12, 0)
    assert twins.encoder_digest(sod) == twins.encoder_digest(cls)  # one initial backbone, different heads
    with torch.no_grad():
        cls.backbone.layer4[0].conv1.weight.add_(1e-3)
    assert twins.encoder_digest(sod) != twins.encoder_digest(cls)
    # BatchNorm statistics are part of what a frozen-encoder head reads
    other = twins.sod_model("res2net-mini", 4, 0)
    other.backbone.bn1.running_mean.add_(0.5)
    assert twins.encoder_digest(other) != twins.encoder_digest(sod)


def test_recipe_digest_follows_the_shipped_recipe(monkeypatch):
    import hashlib
    import json

    from sodlab.train import load_recipe
    config = load_recipe("csf-mini-quick").to_dict()
    want = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:6]
    assert twins.recipe_digest("res2net-mini", "sod") == want
    assert twins.recipe_digest("res2net-mini", "classification") != want
    # a recipe changed since (here its loss) is another digest, so a head keyed by it trains anew
    changed = load_recipe("csf-mini-quick").replace(loss="bce")
    monkeypatch.setattr(twins, "load_recipe", lambda name: changed)
    assert twins.recipe_digest("res2net-mini", "sod") != want


def test_recipes_digest_keys_study_folders_by_both_recipes(monkeypatch):
    from sodlab.studies.categories import category_work
    from sodlab.train import load_recipe

    both = twins.recipes_digest("res2net-mini")
    assert category_work("w", "res2net-mini", 5, 2).name == f"res2net-mini_seen5_seed2_{both}"
    sod = twins.recipe_digest("res2net-mini", "sod")
    # either recipe changed since (the classifier's here) names another folder: the old runs stay, untouched
    monkeypatch.setattr(twins, "load_recipe", lambda name: load_recipe(name).replace(lr=0.5) if name == "classify-quick" else load_recipe(name))
    assert twins.recipe_digest("res2net-mini", "sod") == sod
    assert twins.recipes_digest("res2net-mini") != both
