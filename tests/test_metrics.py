"""SODMetrics: the SalMetric protocol against a direct transcription of its definition, the
standard protocol against py_sod_metrics called directly."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from sodlab.errors import DataError
from sodlab.metrics import SODMetrics


def salmetric_reference(pairs):
    """SalMetric written out threshold by threshold, image by image (no histograms)."""
    eps = 1e-4
    P = np.zeros(256)
    R = np.zeros(256)
    maes = []
    for pred, gt in pairs:
        g = gt > 128 if gt.dtype == np.uint8 else gt.astype(bool)
        for t in range(256):
            predicted = pred > t
            tp = np.logical_and(predicted, g).sum()
            P[t] += (tp + eps) / (predicted.sum() + eps)
            R[t] += (tp + eps) / (g.sum() + eps)
        maes.append(np.mean(np.abs(pred.astype(np.float64) / 255.0 - g.astype(np.float64))))
    P /= len(pairs)
    R /= len(pairs)
    F = 1.3 * P * R / (0.3 * P + R)
    return {"max_f": F.max(), "mean_f": F.mean(), "mae": float(np.mean(maes)), "P": P, "R": R, "F": F}


def _maps(seed=0, n=4, shape=(23, 31)):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        gt = np.zeros(shape, dtype=np.uint8)
        y, x = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
        gt[y:y + shape[0] // 2, x:x + shape[1] // 2] = 255
        noise = rng.normal(0, 60, shape)
        pred = np.clip(gt * 0.6 + 40 + noise, 0, 255).astype(np.uint8)
        pairs.append((pred, gt))
    return pairs


def _edge_cases(shape=(17, 19)):
    gt = np.zeros(shape, dtype=np.uint8)
    gt[4:12, 5:14] = 255
    perfect = gt.copy()
    black = np.zeros(shape, dtype=np.uint8)
    empty = np.zeros(shape, dtype=np.uint8)
    grey = np.full(shape, 77, dtype=np.uint8)
    return [(black, gt), (perfect, gt), (grey, empty), (perfect, empty)]


@pytest.mark.parametrize("pairs", [_maps(0), _edge_cases(), _maps(1, n=1) + _edge_cases()])
def test_salmetric_matches_its_definition(pairs):
    m = SODMetrics("salmetric")
    for pred, gt in pairs:
        m.step(pred, gt)
    res, ref = m.get_results(), salmetric_reference(pairs)
    assert res["n_images"] == len(pairs)
    for k in ("max_f", "mean_f", "mae"):
        assert res[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-15)
    c = m.curves()
    np.testing.assert_allclose(c["pr"]["precision"], ref["P"], rtol=1e-12)
    np.testing.assert_allclose(c["pr"]["recall"], ref["R"], rtol=1e-12)
    np.testing.assert_allclose(c["fmeasure"]["f"], ref["F"], rtol=1e-12)
    assert list(c["pr"]["threshold"]) == list(range(256))


def test_salmetric_single_edge_cases():
    shape = (10, 10)
    gt = np.zeros(shape, dtype=np.uint8)
    gt[2:6, 2:6] = 255
    # A perfect binary map: precision = recall = 1 at every threshold below 255.
    m = SODMetrics("salmetric")
    m.step(gt.copy(), gt)
    res = m.get_results()
    assert res["max_f"] == pytest.approx(1.0) and res["mae"] == 0.0
    # An all-black map: nothing predicted, so precision is (0 + eps) / (0 + eps) = 1 and
    # recall is eps / (16 + eps), F tiny; MAE is the foreground fraction.
    m = SODMetrics("salmetric")
    m.step(np.zeros(shape, np.uint8), gt)
    res = m.get_results()
    c = m.curves()["pr"]
    assert np.allclose(c["precision"], 1.0)
    assert np.allclose(c["recall"], 1e-4 / (16 + 1e-4))
    assert res["max_f"] < 1e-4 and res["mae"] == pytest.approx(0.16)
    # An empty mask with an all-white map: recall 1, precision eps / (100 + eps).
    m = SODMetrics("salmetric")
    m.step(np.full(shape, 255, np.uint8), np.zeros(shape, np.uint8))
    c = m.curves()["pr"]
    assert np.allclose(c["recall"], 1.0)
    assert c["precision"].iloc[0] == pytest.approx(1e-4 / (100 + 1e-4))
    assert m.get_results()["mae"] == pytest.approx(1.0)


def test_standard_equals_py_sod_metrics():
    psm = pytest.importorskip("py_sod_metrics")
    pairs = _maps(3, n=5) + _edge_cases()
    m = SODMetrics("standard")
    for pred, gt in pairs:
        m.step(pred, gt)
    res = m.get_results()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = psm.Fmeasure()
    mae, sm, em, wfm = psm.MAE(), psm.Smeasure(), psm.Emeasure(), psm.WeightedFmeasure()
    for pred, gt in pairs:
        for x in (fm, mae, sm, em, wfm):
            x.step(pred=pred, gt=gt)
    f = fm.get_results()
    e = em.get_results()["em"]
    assert res["mae"] == pytest.approx(mae.get_results()["mae"], rel=1e-12)
    assert res["max_f"] == pytest.approx(f["fm"]["curve"].max(), rel=1e-12)
    assert res["mean_f"] == pytest.approx(f["fm"]["curve"].mean(), rel=1e-12)
    assert res["adaptive_f"] == pytest.approx(f["fm"]["adp"], rel=1e-12)
    assert res["s_measure"] == pytest.approx(sm.get_results()["sm"], rel=1e-12)
    assert res["max_e"] == pytest.approx(e["curve"].max(), rel=1e-12)
    assert res["mean_e"] == pytest.approx(e["curve"].mean(), rel=1e-12)
    assert res["weighted_f"] == pytest.approx(wfm.get_results()["wfm"], rel=1e-12)
    # Our curves run from threshold 0 up; py_sod_metrics's from 255 down.
    c = m.curves()
    np.testing.assert_allclose(c["pr"]["precision"], f["pr"]["p"][::-1])
    np.testing.assert_allclose(c["pr"]["recall"], f["pr"]["r"][::-1])
    np.testing.assert_allclose(c["fmeasure"]["f"], f["fm"]["curve"][::-1])
    assert c["pr"]["recall"].iloc[0] >= c["pr"]["recall"].iloc[-1]  # low threshold, high recall


def test_bool_and_uint8_ground_truth_agree():
    pairs = _maps(5, n=3)
    for protocol in ("standard", "salmetric"):
        a, b = SODMetrics(protocol), SODMetrics(protocol)
        for pred, gt in pairs:
            a.step(pred, gt)
            b.step(pred, gt > 128)
        assert a.get_results() == b.get_results()


def test_protocols_differ_on_the_same_maps():
    gt = np.zeros((32, 32), np.uint8)
    gt[8:24, 8:24] = 255
    # A perfect map and a missed object: the standard protocol averages per-image F (1 and
    # 0), SalMetric averages P (1 and 1, the empty prediction counting as precise) and R
    # (1 and ~0) first: F = 1.3 * 0.5 / (0.3 + 0.5).
    res = {}
    for protocol in ("standard", "salmetric"):
        m = SODMetrics(protocol)
        m.step(gt.copy(), gt)
        m.step(np.zeros_like(gt), gt)
        res[protocol] = m.get_results()
    assert res["standard"]["max_f"] == pytest.approx(0.5)
    assert res["salmetric"]["max_f"] == pytest.approx(1.3 * 0.5 / 0.8, rel=1e-4)
    # A faint map (60..130): the standard protocol stretches it to 0..1, SalMetric does not.
    faint = np.where(gt > 0, 130, 60).astype(np.uint8)
    mae = {}
    for protocol in ("standard", "salmetric"):
        m = SODMetrics(protocol)
        m.step(faint, gt)
        mae[protocol] = m.get_results()["mae"]
    assert mae["standard"] == pytest.approx(0.0)
    assert mae["salmetric"] == pytest.approx((0.25 * 125 + 0.75 * 60) / 255)


def test_bad_inputs_are_reported():
    m = SODMetrics("salmetric")
    with pytest.raises(DataError, match="differ in size"):
        m.step(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        m.step(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="no images"):
        m.get_results()
    with pytest.raises(DataError, match="unknown protocol"):
        SODMetrics("matlab")
    assert len(m) == 0


@pytest.mark.parametrize("pairs", [_maps(2, n=5), _maps(3, n=2) + _edge_cases()])
def test_per_image_scores_sum_to_the_meter(pairs):
    """What a per-image meter keeps gives, for every subset of the images, that subset's
    SalMetric max-F and MAE: the studies' bootstraps resample these."""
    from sodlab.metrics import max_f_from_curves

    m = SODMetrics("salmetric", per_image=True)
    for pred, gt in pairs:
        m.step(pred, gt)
    kept = m.per_image()
    assert kept["curves"].shape == (len(pairs), 3, 256) and kept["mae"].shape == (len(pairs),)
    assert max_f_from_curves(kept["curves"]) == pytest.approx(m.get_results()["max_f"], rel=1e-12)
    assert kept["mae"].mean() == pytest.approx(m.get_results()["mae"], rel=1e-12)
    sub = [0, len(pairs) - 1]
    ref = salmetric_reference([pairs[i] for i in sub])
    assert max_f_from_curves(kept["curves"][sub]) == pytest.approx(ref["max_f"], rel=1e-12)
    assert kept["mae"][sub].mean() == pytest.approx(ref["mae"], rel=1e-12)


def test_per_image_scores_need_salmetric_and_the_flag():
    with pytest.raises(DataError, match="salmetric protocol only"):
        SODMetrics("standard", per_image=True)
    m = SODMetrics("salmetric")
    pred, gt = _maps(4, n=1)[0]
    m.step(pred, gt)
    with pytest.raises(DataError, match="per_image=True"):
        m.per_image()
    with pytest.raises(DataError, match="no images"):
        SODMetrics("salmetric", per_image=True).per_image()
