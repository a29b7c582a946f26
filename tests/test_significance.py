"""Significance tests between rows: corrected resampled t-test, exact McNemar, compare_with_best (issue 9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from featbench.evaluation import Comparison, compare_with_best, corrected_resampled_ttest, mcnemar_exact

# ---------------------------------------------------------------- corrected resampled t-test

# A small example worked by hand: J = 5 splits, 300 training and 100 test images each.
A5 = [0.90, 0.85, 0.88, 0.91, 0.87]
B5 = [0.88, 0.84, 0.85, 0.90, 0.86]


def test_ttest_hand_computation():
    # d = a - b = [0.02, 0.01, 0.03, 0.01, 0.01]
    # mean(d) = 0.08 / 5 = 0.016
    # deviations = [0.004, -0.006, 0.014, -0.006, -0.006]; squares (x 1e-6) = [16, 36, 196, 36, 36], sum 320e-6
    # var(d, ddof=1) = 320e-6 / 4 = 80e-6
    # correction = 1/J + n_test/n_train = 1/5 + 100/300 = 8/15
    # t = 0.016 / sqrt(8/15 * 80e-6) = 0.016 / sqrt(128e-6 / 3); t^2 = 256e-6 * 3 / 128e-6 = 6, t = sqrt(6) = 2.4494897
    # p = 2 * P(T_4 > sqrt 6). Student's t with 4 dof has a closed-form CDF:
    #   F(t) = 1/2 + 3/8 * t / sqrt(1 + t^2/4) * (1 - t^2 / (12 (1 + t^2/4)))
    #   t^2 = 6: 1 + t^2/4 = 5/2, t / sqrt(5/2) = sqrt(2.4), 1 - 6/30 = 0.8
    #   F = 0.5 + 0.375 * sqrt(2.4) * 0.8 = 0.96475800; p = 2 * (1 - F) = 0.07048400
    d = np.array([0.02, 0.01, 0.03, 0.01, 0.01])
    assert np.allclose(np.subtract(A5, B5), d)
    mean = 0.016
    var = 80e-6
    assert d.mean() == pytest.approx(mean)
    assert d.var(ddof=1) == pytest.approx(var)
    correction = 1 / 5 + 100 / 300
    assert correction == pytest.approx(8 / 15)
    t_hand = mean / math.sqrt(correction * var)
    assert t_hand == pytest.approx(math.sqrt(6))
    p_closed_form = 2 * (1 - (0.5 + 0.375 * math.sqrt(2.4) * 0.8))
    assert p_closed_form == pytest.approx(0.070484, abs=1e-6)
    assert 2 * stats.t.sf(t_hand, 4) == pytest.approx(p_closed_form, rel=1e-9)

    t, p = corrected_resampled_ttest(A5, B5, n_train=300, n_test=100)
    assert t == pytest.approx(math.sqrt(6), rel=1e-9)
    assert p == pytest.approx(p_closed_form, rel=1e-9)


def test_ttest_relation_to_ttest_rel():
    # Without the n_test/n_train term the test is scipy's paired t-test; with it,
    #   t_corrected = t_rel * sqrt((1/J) / (1/J + n_test/n_train)).
    # Here t_rel = 0.016 / sqrt(80e-6 / 5) = 0.016 / 0.004 = 4, and 4 * sqrt(0.2 / (8/15)) = 4 * sqrt(0.375) = sqrt(6).
    rel = stats.ttest_rel(A5, B5)
    assert rel.statistic == pytest.approx(4.0)
    t, p = corrected_resampled_ttest(A5, B5, n_train=300, n_test=100)
    j = 5
    assert t == pytest.approx(rel.statistic * math.sqrt((1 / j) / (1 / j + 100 / 300)), rel=1e-12)
    assert p == pytest.approx(2 * stats.t.sf(abs(t), j - 1), rel=1e-12)
    assert p > rel.pvalue  # the correction only ever widens the interval

    # n_test / n_train -> 0: the correction vanishes and both tests agree.
    rng = np.random.default_rng(0)
    a = rng.uniform(0.7, 0.9, 10)
    b = a - rng.normal(0.01, 0.02, 10)
    t0, p0 = corrected_resampled_ttest(a, b, n_train=10**12, n_test=1)
    rel = stats.ttest_rel(a, b)
    assert t0 == pytest.approx(rel.statistic, rel=1e-9)
    assert p0 == pytest.approx(rel.pvalue, rel=1e-9)


def test_ttest_is_antisymmetric():
    t_ab, p_ab = corrected_resampled_ttest(A5, B5, 300, 100)
    t_ba, p_ba = corrected_resampled_ttest(B5, A5, 300, 100)
    assert t_ba == pytest.approx(-t_ab)
    assert p_ba == pytest.approx(p_ab)


def test_ttest_identical_scores():
    assert corrected_resampled_ttest(A5, A5, 300, 100) == (0.0, 1.0)


def test_ttest_constant_nonzero_difference():
    # Exactly one image in 100 better on every split; the differences of k/100 accuracies vary in float rounding only.
    a = np.array([82, 79, 85, 80, 83]) / 100
    b = np.array([81, 78, 84, 79, 82]) / 100
    assert np.var(np.subtract(a, b)) > 0  # rounding noise, not a real spread
    assert corrected_resampled_ttest(a, b, 300, 100) == (math.inf, 0.0)
    assert corrected_resampled_ttest(b, a, 300, 100) == (-math.inf, 0.0)


@pytest.mark.parametrize(
    ("a", "b", "n_train", "n_test", "match"),
    [
        ([0.9], [0.8], 300, 100, "at least 2 splits"),
        ([], [], 300, 100, "at least 2 splits"),
        ([0.9, 0.8], [0.8, 0.7, 0.6], 300, 100, "same number"),
        ([0.9, math.nan], [0.8, 0.7], 300, 100, "finite"),
        ([0.9, 0.8], [0.8, 0.7], 0, 100, "positive"),
        ([0.9, 0.8], [0.8, 0.7], 300, -1, "positive"),
    ],
)
def test_ttest_rejects(a, b, n_train, n_test, match):
    with pytest.raises(ValueError, match=match):
        corrected_resampled_ttest(a, b, n_train, n_test)


# ---------------------------------------------------------------- exact McNemar


def _pairs(n11: int, b: int, c: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors with n11 both right, b only A right, c only B right, n00 both wrong."""
    ca = np.array([True] * n11 + [True] * b + [False] * c + [False] * n00)
    cb = np.array([True] * n11 + [False] * b + [True] * c + [False] * n00)
    return ca, cb


def test_mcnemar_hand_binomial_sum():
    # b = 7, c = 2: n = 9 discordant images, min = 2.
    # P(X <= 2), X ~ Bin(9, 1/2) = (C(9,0) + C(9,1) + C(9,2)) / 2^9 = (1 + 9 + 36) / 512 = 46/512
    # p = 2 * 46/512 = 92/512 = 0.1796875
    ca, cb = _pairs(50, 7, 2, 11)
    assert mcnemar_exact(ca, cb) == pytest.approx(92 / 512, rel=1e-12)
    assert mcnemar_exact(cb, ca) == pytest.approx(92 / 512, rel=1e-12)
    # b = 10, c = 1: 2 * (1 + 11) / 2^11 = 24/2048 = 0.01171875
    ca, cb = _pairs(40, 10, 1, 5)
    assert mcnemar_exact(ca, cb) == pytest.approx(24 / 2048, rel=1e-12)
    # b = c: the cap at 1 applies (2 * P(X <= 3), X ~ Bin(6, 1/2) = 2 * 42/64 > 1).
    ca, cb = _pairs(10, 3, 3, 0)
    assert mcnemar_exact(ca, cb) == 1.0
    # Generic hand sum with math.comb.
    for b, c in [(0, 5), (4, 9), (12, 13), (1, 0), (20, 3)]:
        n, k = b + c, min(b, c)
        hand = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
        assert mcnemar_exact(*_pairs(7, b, c, 3)) == pytest.approx(hand, rel=1e-12)


def test_mcnemar_matches_statsmodels():
    rng = np.random.default_rng(1)
    for _ in range(40):
        n = int(rng.integers(1, 120))
        ca = rng.random(n) < rng.uniform(0.3, 0.95)
        cb = np.where(rng.random(n) < rng.uniform(0.0, 0.4), ~ca, ca)
        table = [
            [np.sum(ca & cb), np.sum(ca & ~cb)],
            [np.sum(~ca & cb), np.sum(~ca & ~cb)],
        ]
        expected = sm_mcnemar(table, exact=True).pvalue
        assert mcnemar_exact(ca, cb) == pytest.approx(expected, rel=1e-10, abs=1e-15)


def test_mcnemar_no_discordant_pair_and_inputs():
    ca, cb = _pairs(30, 0, 0, 10)
    assert mcnemar_exact(ca, cb) == 1.0
    assert sm_mcnemar([[30, 0], [0, 10]], exact=True).pvalue == 1.0
    assert mcnemar_exact([], []) == 1.0
    # 0/1 integers are read as booleans.
    assert mcnemar_exact([1, 1, 1, 0], [0, 0, 1, 0]) == mcnemar_exact(*_pairs(1, 2, 0, 1))
    with pytest.raises(ValueError, match="same test images"):
        mcnemar_exact([True, False], [True])
    with pytest.raises(ValueError, match="1-D"):
        mcnemar_exact([[True, False]], [[True, False]])


# ---------------------------------------------------------------- compare_with_best

SPLITS = [f"holdout-{i}" for i in range(5)]
N_TRAIN = dict.fromkeys(SPLITS, 300)
N_TEST = dict.fromkeys(SPLITS, 100)


def _correct(rng: np.random.Generator, accuracy: float, n: int = 100) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[rng.permutation(n)[: round(accuracy * n)]] = True
    return out


def test_one_image_apart_on_three_of_five_splits_is_tied():
    # Two extractors' predictions on 5 hold-out splits of 100 test images; B gets one more image
    # wrong than A on splits 0, 2 and 4 and the same images right elsewhere.
    rng = np.random.default_rng(2)
    correct_a = {s: _correct(rng, acc) for s, acc in zip(SPLITS, [0.82, 0.79, 0.85, 0.80, 0.83])}
    correct_b = {}
    for i, s in enumerate(SPLITS):
        cb = correct_a[s].copy()
        if i in (0, 2, 4):
            cb[np.flatnonzero(cb)[0]] = False
        correct_b[s] = cb
    scores = {
        "hog": {s: float(c.mean()) for s, c in correct_a.items()},
        "sift-bow": {s: float(c.mean()) for s, c in correct_b.items()},
    }
    result = compare_with_best(
        scores, n_train=N_TRAIN, n_test=N_TEST, correct={"hog": correct_a, "sift-bow": correct_b}
    )
    best = result["hog"]
    assert isinstance(best, Comparison)
    assert (best.best, best.test, best.n_splits, best.tied, best.mean_difference) == ("hog", "best", 5, True, 0.0)
    assert math.isnan(best.p)
    b = result["sift-bow"]
    # d = B - A = [-0.01, 0, -0.01, 0, -0.01]: mean -0.006, var = (3 * 0.004^2 + 2 * 0.006^2) / 4 = 30e-6,
    # (1/5 + 100/300) * 30e-6 = 16e-6, t = -0.006 / 0.004 = -1.5, p = 2 * t4.sf(1.5) = 0.208
    assert b.best == "hog"
    assert b.test == "corrected t"
    assert b.n_splits == 5
    assert b.mean_difference == pytest.approx(-0.006)
    assert b.statistic == pytest.approx(-1.5)
    assert b.p == pytest.approx(2 * stats.t.sf(1.5, 4))
    assert b.p == pytest.approx(0.208, abs=1e-3)
    assert b.tied
    assert b.reason == ""


def test_clearly_worse_row_is_not_tied():
    rng = np.random.default_rng(3)
    good = rng.uniform(0.80, 0.90, 5)
    worse = good - 0.10 + rng.normal(0, 0.01, 5)
    scores = {
        "resnet50": dict(zip(SPLITS, good)),
        "orb-bow": dict(zip(SPLITS, worse)),
    }
    result = compare_with_best(scores, n_train=N_TRAIN, n_test=N_TEST)
    assert result["resnet50"].test == "best"
    r = result["orb-bow"]
    assert r.test == "corrected t"
    assert r.p < 0.05
    assert not r.tied
    assert r.mean_difference == pytest.approx(float(np.mean(worse - good)))
    t, p = corrected_resampled_ttest(worse, good, 300, 100)
    assert (r.statistic, r.p) == (pytest.approx(t), pytest.approx(p))


def test_one_image_worse_on_every_split_is_a_constant_difference():
    # The zero-variance rule: the same difference on every split gives p = 0 (documented edge).
    base = dict(zip(SPLITS, [0.82, 0.79, 0.85, 0.80, 0.83]))
    scores = {"a": base, "b": {s: v - 0.01 for s, v in base.items()}}
    r = compare_with_best(scores, n_train=N_TRAIN, n_test=N_TEST)["b"]
    assert r.p == 0.0 and r.statistic == -math.inf and not r.tied


def test_single_split_uses_mcnemar():
    rng = np.random.default_rng(4)
    n = 200
    ca = _correct(rng, 0.8, n)
    right = np.flatnonzero(ca)
    one_off = ca.copy()
    one_off[right[0]] = False  # b = 1, c = 0 -> p = 1
    thirty_off = ca.copy()
    thirty_off[right[:30]] = False  # b = 30, c = 0 -> p = 2 / 2^30
    scores = {
        "cnn": {"official": ca.mean()},
        "hog": {"official": one_off.mean()},
        "pixels": {"official": thirty_off.mean()},
        "lbp": {"official": 0.5},  # no predictions kept
    }
    correct = {"cnn": {"official": ca}, "hog": {"official": one_off}, "pixels": {"official": thirty_off}}
    result = compare_with_best(scores, n_train={"official": 600}, n_test={"official": n}, correct=correct)
    assert result["cnn"].test == "best" and result["cnn"].tied
    hog = result["hog"]
    assert (hog.test, hog.n_splits, hog.p, hog.tied) == ("McNemar", 1, 1.0, True)
    assert hog.mean_difference == pytest.approx(-1 / n)
    assert math.isnan(hog.statistic)
    pixels = result["pixels"]
    assert pixels.test == "McNemar"
    assert pixels.p == pytest.approx(2 / 2**30)
    assert not pixels.tied
    lbp = result["lbp"]
    assert lbp.test == "McNemar" and math.isnan(lbp.p) and not lbp.tied
    assert "no per-image predictions" in lbp.reason

    # Predictions of different lengths cannot be paired.
    bad = dict(correct, hog={"official": one_off[:-1]})
    r = compare_with_best(scores, n_train=600, n_test=n, correct=bad)["hog"]
    assert math.isnan(r.p) and "different shapes" in r.reason


def test_missing_splits():
    rng = np.random.default_rng(5)
    best = dict(zip(SPLITS, rng.uniform(0.85, 0.9, 5)))
    ca = _correct(rng, 0.88)
    cd = ca.copy()
    cd[np.flatnonzero(cd)[:2]] = False
    scores = {
        "partial": {s: best[s] - 0.02 + rng.normal(0, 0.01) for s in SPLITS[:3]},  # 3 shared splits
        "best": best,
        "one": {SPLITS[3]: float(cd.mean())},  # 1 shared split: McNemar
        "elsewhere": {"holdout-9": 0.5},  # a split the best row lacks
        "failed": dict.fromkeys(SPLITS, math.nan),  # failed cells: NaN scores
        "half-failed": {**{s: best[s] - 0.3 for s in SPLITS[:2]}, **dict.fromkeys(SPLITS[2:], None)},
    }
    n_train = {**N_TRAIN, "holdout-1": 303}
    correct = {"best": {SPLITS[3]: ca}, "one": {SPLITS[3]: cd}}
    result = compare_with_best(scores, n_train=n_train, n_test=N_TEST, correct=correct)
    assert list(result) == list(scores)
    assert result["best"].test == "best"
    assert result["best"].n_splits == 5

    partial = result["partial"]
    assert partial.test == "corrected t" and partial.n_splits == 3
    x = [scores["partial"][s] for s in SPLITS[:3]]
    y = [best[s] for s in SPLITS[:3]]
    t, p = corrected_resampled_ttest(x, y, n_train=(300 + 303 + 300) / 3, n_test=100)
    assert partial.p == pytest.approx(p) and partial.statistic == pytest.approx(t)

    one = result["one"]
    assert one.test == "McNemar" and one.n_splits == 1
    assert one.p == pytest.approx(mcnemar_exact(cd, ca))  # b = 0, c = 2: p = 2 * 1/4 = 0.5
    assert one.p == pytest.approx(0.5) and one.tied

    for key in ("elsewhere", "failed"):
        r = result[key]
        assert r.test == "—" and r.n_splits == 0 and math.isnan(r.p) and not r.tied
        assert math.isnan(r.mean_difference)
        assert r.reason

    half = result["half-failed"]
    assert half.test == "corrected t" and half.n_splits == 2 and not half.tied


def test_best_is_highest_mean_over_own_splits():
    # The rule as specified: a row's own splits decide its mean, so a row with one lucky split can
    # be the best, and rows with no split in common with it are not compared.
    scores = {"full": dict(zip(SPLITS, [0.8] * 5)), "lucky": {"holdout-9": 0.99}}
    result = compare_with_best(scores, n_train=300, n_test=100)
    assert result["lucky"].test == "best"
    assert result["full"].test == "—" and math.isnan(result["full"].p)


def test_missing_sizes_for_a_split_raise():
    scores = {"a": dict(zip(SPLITS, [0.9] * 5)), "b": dict(zip(SPLITS, [0.8, 0.7, 0.8, 0.7, 0.8]))}
    with pytest.raises(ValueError, match="n_train has no entry"):
        compare_with_best(scores, n_train={SPLITS[0]: 300}, n_test=N_TEST)


def test_best_row_lower_is_better_and_ties_in_means():
    errors = {
        "a": dict(zip(SPLITS, [0.20, 0.22, 0.21, 0.19, 0.20])),
        "b": dict(zip(SPLITS, [0.10, 0.12, 0.11, 0.09, 0.10])),
    }
    assert compare_with_best(errors, n_train=300, n_test=100, higher_is_better=False)["b"].test == "best"
    assert compare_with_best(errors, n_train=300, n_test=100)["a"].test == "best"
    same = {"first": {"s0": 0.8, "s1": 0.9}, "second": {"s0": 0.9, "s1": 0.8}}
    result = compare_with_best(same, n_train=300, n_test=100)
    assert result["first"].test == "best"
    assert result["second"].best == "first"


def test_alpha_and_empty_inputs():
    scores = {"a": dict(zip(SPLITS, A5)), "b": dict(zip(SPLITS, B5))}  # p = 0.0705 (hand example)
    assert compare_with_best(scores, n_train=300, n_test=100)["b"].tied
    assert not compare_with_best(scores, n_train=300, n_test=100, alpha=0.1)["b"].tied
    assert compare_with_best({}, n_train=300, n_test=100) == {}
    r = compare_with_best({"x": {}, "y": {"s": math.nan}}, n_train=300, n_test=100)
    assert all(math.isnan(c.p) and not c.tied and c.test == "—" for c in r.values())
