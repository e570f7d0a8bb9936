"""Model-free saliency baselines."""
from __future__ import annotations

import numpy as np
import pytest

from sodlab import baselines
from sodlab.data import synthetic
from sodlab.errors import ConfigError


def test_centre_bias_map_peaks_in_the_middle_and_is_symmetric():
    m = baselines.centre_bias_map(9, 13)
    assert m.shape == (9, 13) and m.dtype == np.uint8
    assert m[4, 6] == 255 and m[0, 0] < 30
    np.testing.assert_array_equal(m, m[::-1, ::-1])


def test_colour_oracle_ranks_the_object_colour_first():
    image = np.zeros((4, 4, 3), np.uint8)
    image[1:3, 1:3] = (200, 10, 10)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    m = baselines.colour_oracle_map(image, mask)
    assert (m[mask] == 255).all() and (m[~mask] == 0).all()
    assert (baselines.colour_oracle_map(image, np.zeros((4, 4), bool)) == 0).all()


def test_lab_conversion_matches_the_standard_values():
    lab = baselines.rgb_to_lab(np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0]]], np.uint8))
    np.testing.assert_allclose(lab[0, 0], [100.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(lab[0, 1], [53.24, 80.09, 67.20], atol=0.02)
    np.testing.assert_allclose(lab[0, 2], [0.0, 0.0, 0.0], atol=1e-9)


def test_contrast_centre_finds_an_odd_coloured_object_and_prefers_the_middle():
    image = np.full((32, 32, 3), 128, np.uint8)
    image[12:20, 12:20] = (220, 30, 30)
    m = baselines.contrast_centre_map(image)
    assert m.shape == (32, 32) and m.dtype == np.uint8 and m.max() == 255
    inside, outside = m[13:19, 13:19].mean(), m[np.r_[0:8, 24:32]].mean()
    assert inside > 200 and outside < 20
    # the same object in a corner scores lower than in the middle: the centre weight
    corner = np.full((32, 32, 3), 128, np.uint8)
    corner[0:8, 0:8] = (220, 30, 30)
    both = corner.copy()
    both[12:20, 12:20] = (220, 30, 30)
    mb = baselines.contrast_centre_map(both)
    assert mb[14:18, 14:18].mean() > 2 * mb[2:6, 2:6].mean()
    # a flat image has no contrast anywhere
    assert (baselines.contrast_centre_map(np.full((8, 8, 3), 77, np.uint8)) == 0).all()
    with pytest.raises(ConfigError, match=r"contrast_centre_map takes an \(h, w, 3\) RGB image, got shape \(8, 8\)"):
        baselines.contrast_centre_map(np.zeros((8, 8), np.uint8))


def test_baseline_metrics_on_a_benchmark(tmp_path):
    synthetic.generate(tmp_path / "b", n_train=0, n_test=12, size=64, seed=0, progress=False)
    res = baselines.baseline_metrics(tmp_path / "b" / "test")
    assert set(res) == {"centre bias", "contrast + centre", "colour oracle"}
    for r in res.values():
        assert 0 < r["max_f"] <= 1 and 0 <= r["mae"] <= 1
    # the oracle knows the object's colour, so it must beat a fixed blob
    assert res["colour oracle"]["max_f"] > res["centre bias"]["max_f"]
    with pytest.raises(ConfigError, match="unknown baseline"):
        baselines.baseline_metrics(tmp_path / "b" / "test", ["oracle"])


def test_baseline_metrics_per_image_add_up_to_the_set(tmp_path):
    from sodlab.metrics import max_f_from_curves

    synthetic.generate(tmp_path / "b", n_train=0, n_test=10, size=48, seed=1, progress=False)
    res = baselines.baseline_metrics(tmp_path / "b" / "test", ["centre bias", "contrast + centre"], protocol="salmetric", per_image=True)
    for r in res.values():
        kept = r["per_image"]
        assert kept["curves"].shape == (10, 3, 256) and kept["mae"].shape == (10,)
        assert max_f_from_curves(kept["curves"]) == pytest.approx(r["max_f"], abs=1e-12)
        assert kept["mae"].mean() == pytest.approx(r["mae"], abs=1e-12)
    assert "per_image" not in baselines.baseline_metrics(tmp_path / "b" / "test", ["centre bias"], protocol="salmetric")["centre bias"]
