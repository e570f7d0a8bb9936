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


def test_baseline_metrics_on_a_benchmark(tmp_path):
    synthetic.generate(tmp_path / "b", n_train=0, n_test=12, size=64, seed=0, progress=False)
    res = baselines.baseline_metrics(tmp_path / "b" / "test")
    assert set(res) == {"centre bias", "colour oracle"}
    for r in res.values():
        assert 0 < r["max_f"] <= 1 and 0 <= r["mae"] <= 1
    # the oracle knows the object's colour, so it must beat a fixed blob
    assert res["colour oracle"]["max_f"] > res["centre bias"]["max_f"]
    with pytest.raises(ConfigError, match="unknown baseline"):
        baselines.baseline_metrics(tmp_path / "b" / "test", ["oracle"])
