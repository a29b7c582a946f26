"""BoVW, VLAD and Fisher vectors on small, hand-checkable descriptor sets."""

from __future__ import annotations

import numpy as np
import pytest
from test_common import assert_close_to_float32_reassociation

from featbench.errors import ConfigError
from featbench.extractors.encoding import (
    VLAD,
    BoVW,
    FisherVector,
    make_encoder,
    pyramid_cells,
    sample_rows,
)

D = 8


@pytest.fixture(scope="module")
def train() -> list[np.ndarray]:
    """Four well separated blobs in 8-D, 600 descriptors over 6 'images'."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(4, D))
    X = centres[rng.integers(0, 4, 600)] + rng.normal(size=(600, D))
    return list(np.split(X.astype(np.float32), 6))


@pytest.fixture(scope="module")
def fitted(train) -> dict:
    return {
        "bovw": BoVW(n_words=4).fit(train),
        "vlad": VLAD(n_words=4).fit(train),
        "fisher": FisherVector(n_words=4).fit(train),
    }


def test_bovw_of_codewords_is_one_hot(fitted):
    enc = fitted["bovw"]
    words = enc.codebook_
    raw = enc.transform([np.repeat(words[2:3], 5, axis=0)], raw=True)[0]
    np.testing.assert_array_equal(raw, np.eye(4)[2] * 5)
    l1 = BoVW(n_words=4, norm="l1").fit([words.repeat(10, axis=0)]).transform([words[[1, 1, 3]]])[0]
    assert l1.sum() == pytest.approx(1.0)
    assert np.count_nonzero(l1) == 2 and l1.max() == pytest.approx(2 / 3)


def test_bovw_power_l2_is_hellinger_map_of_frequencies(fitted):
    enc = fitted["bovw"]
    X = np.concatenate([np.repeat(enc.codebook_[[0]], 9, axis=0), enc.codebook_[[3]]])
    powered = BoVW(n_words=4, power=True).set_params().fit([enc.codebook_.repeat(10, axis=0)])
    code = powered.transform([X])[0]
    freq = powered.transform([X], raw=True)[0] / len(X)
    np.testing.assert_allclose(code, np.sqrt(freq), atol=1e-6)
    assert np.linalg.norm(code) == pytest.approx(1.0)


def test_soft_assignment_spreads_unit_weight_over_nearest_words(train):
    enc = BoVW(n_words=4, assignment="soft", soft_k=3).fit(train)
    raw = enc.transform(train[:2], raw=True)
    # each descriptor's weights sum to 1 (float64), but each word's total is rounded to float32 and the
    # four totals are added in float32: a few float32 roundings of the sum, ~6e-8 each
    np.testing.assert_allclose(raw.sum(axis=1), [len(train[0]), len(train[1])], rtol=1e-6)
    # a point between words 1 and 3: Gaussian-kernel weights over its 3 nearest words, summing to 1
    x = (0.6 * enc.codebook_[1] + 0.4 * enc.codebook_[3])[None]
    one = enc.transform([x], raw=True)[0].astype(np.float64)
    d = ((x.astype(np.float64) - enc.codebook_) ** 2).sum(axis=1)
    nearest = np.argsort(d)[:3]
    w = np.exp(-(d[nearest] - d[nearest].min()) / (2 * enc.sigma2_))
    expected = np.zeros(4)
    expected[nearest] = w / w.sum()
    np.testing.assert_allclose(one, expected, rtol=1e-4, atol=1e-12)
    assert one.argmax() == 1 and one[1] > 0.5  # the nearest word gets most of the weight


def test_vlad_of_codewords_is_zero_before_normalisation(fitted):
    enc = fitted["vlad"]
    X = enc.codebook_[[0, 1, 1, 3]]
    raw = enc.transform([X], raw=True)[0]
    assert raw.shape == (4 * D,)
    np.testing.assert_array_equal(raw, 0.0)
    np.testing.assert_array_equal(enc.transform([X])[0], 0.0)  # and stays zero once normalised


def test_vlad_residual_sum_and_normalisation(fitted):
    enc = fitted["vlad"]
    X = enc.codebook_[[2, 2]] + np.array([[1.0] * D, [0.5] * D], dtype=np.float32)
    raw = enc.transform([X], raw=True)[0].reshape(4, D)
    np.testing.assert_allclose(raw[2], 1.5, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(raw, 2, axis=0), 0.0)
    code = enc.transform([X])[0]
    assert np.linalg.norm(code) == pytest.approx(1.0, abs=1e-6)


def test_fisher_dimension_and_formula(train, fitted):
    enc = fitted["fisher"]
    assert enc.n_features_out_ == 2 * 4 * D
    reduced = FisherVector(n_words=3, pca=5).fit(train)
    assert reduced.transform(train[:2]).shape == (2, 2 * 3 * 5)
    # against a direct, loop-per-component evaluation of Perronnin et al.'s gradients
    x = train[0].astype(np.float64)
    g = enc.posteriors(x)
    g[g < 1e-4] = 0
    T = len(x)
    ref_mu = [(g[:, [k]] * (x - enc.means_[k]) / np.sqrt(enc.variances_[k])).sum(0) / (T * np.sqrt(enc.weights_[k]))
              for k in range(4)]
    ref_sig = [(g[:, [k]] * ((x - enc.means_[k]) ** 2 / enc.variances_[k] - 1)).sum(0)
               / (T * np.sqrt(2 * enc.weights_[k])) for k in range(4)]
    ref = np.concatenate(ref_mu + ref_sig)
    np.testing.assert_allclose(enc.transform([train[0]], raw=True)[0], ref, rtol=1e-4, atol=1e-6)
    signed = np.sign(ref) * np.sqrt(np.abs(ref))
    np.testing.assert_allclose(enc.transform([train[0]])[0], signed / np.linalg.norm(signed), rtol=1e-4, atol=1e-6)


def test_posteriors_match_scikit_learn(train, fitted):
    from sklearn.mixture import GaussianMixture

    enc = fitted["fisher"]
    gmm = GaussianMixture(4, covariance_type="diag")
    gmm.weights_, gmm.means_, gmm.covariances_ = enc.weights_, enc.means_, enc.variances_
    gmm.precisions_cholesky_ = 1.0 / np.sqrt(enc.variances_)
    np.testing.assert_allclose(enc.posteriors(train[1]), gmm.predict_proba(train[1].astype(np.float64)), atol=1e-9)


@pytest.mark.parametrize("name", ["bovw", "vlad", "fisher"])
def test_pyramid_multiplies_dimension_by_sum_of_squares(train, name):
    flat = make_encoder(name, n_words=3).fit(train)
    pyr = make_encoder(name, n_words=3, pyramid=(1, 2, 4)).fit(train)
    assert pyr.n_features_out_ == flat.n_features_out_ * (1 + 4 + 16)
    rng = np.random.default_rng(1)
    pos = [rng.random((len(t), 2)) for t in train[:2]]
    assert pyr.transform(train[:2], pos).shape == (2, pyr.n_features_out_)
    with pytest.raises(ValueError, match="positions"):
        pyr.transform(train[:2])


def test_pyramid_cells_and_where_a_descriptor_counts(fitted):
    cells = pyramid_cells(np.array([[0.9, 0.1], [0.2, 0.7], [1.0, 1.0]]), (1, 2))
    np.testing.assert_array_equal(cells, [[0, 2], [0, 3], [0, 4]])  # level 2: cells 1..4, row by row
    enc = BoVW(n_words=4, pyramid=(1, 2)).fit([fitted["bovw"].codebook_.repeat(10, axis=0)])
    raw = enc.transform([enc.codebook_[[3]]], [np.array([[0.9, 0.1]])], raw=True)[0].reshape(5, 4)
    expected = np.zeros((5, 4))
    expected[0, 3] = expected[2, 3] = 1
    np.testing.assert_array_equal(raw, expected)


@pytest.mark.parametrize("name", ["bovw", "vlad", "fisher"])
def test_image_without_descriptors_is_zero(fitted, train, name):
    enc = fitted[name]
    empty = np.empty((0, D), np.float32)
    X = enc.transform([train[0], empty, train[1]])
    np.testing.assert_array_equal(X[1], 0.0)
    assert np.all(np.linalg.norm(X[[0, 2]], axis=1) > 0.99)
    np.testing.assert_array_equal(enc.transform([empty, empty]), 0.0)


@pytest.mark.parametrize("name", ["bovw", "vlad", "fisher"])
def test_batch_equals_one_by_one_and_is_float32(fitted, train, name):
    enc = fitted[name]
    together = enc.transform(train)
    assert together.dtype == np.float32 and together.flags["C_CONTIGUOUS"]
    alone = np.concatenate([enc.transform([t]) for t in train])
    # other row counts change only the shapes of the BLAS products (distances, projections), i.e. the
    # order of float32 sums: equal up to re-association, relative to the scale of the (normalised) codes
    assert_close_to_float32_reassociation(alone, together)


def test_fit_sample_is_capped_and_seeded(train):
    a = BoVW(n_words=4, max_descriptors=100, random_state=3).fit(train)
    b = BoVW(n_words=4, max_descriptors=100, random_state=3).fit(train)
    assert a.n_fit_descriptors_ == 100
    np.testing.assert_array_equal(a.codebook_, b.codebook_)
    rows = sample_rows(train, 50, np.random.RandomState(0))
    pool = np.concatenate(train)
    assert rows.shape == (50, D)
    assert all((pool == r).all(axis=1).any() for r in rows)  # drawn from the pool, without noise


def test_parameters_are_checked_at_fit(train):
    with pytest.raises(ValueError, match="n_words"):
        BoVW(n_words=0).fit(train)
    with pytest.raises(ConfigError, match="pca=20"):
        VLAD(n_words=2, pca=20).fit(train)
    with pytest.raises(ConfigError, match="pyramid"):
        BoVW(n_words=2, pyramid=(1, 1)).fit(train)
    with pytest.raises(ValueError, match="at least n_words=50"):
        BoVW(n_words=50).fit([train[0][:10]])
    with pytest.raises(ConfigError, match="unknown encoding 'vlat'"):
        make_encoder("vlat")


def test_vocabulary_fits_that_do_not_converge_are_counted_not_hidden(train, recwarn):
    """A GMM stopped after one EM iteration warns (ConvergenceWarning): the fit counts it in
    ``not_converged_``, and no warning escapes to the user."""
    enc = FisherVector(n_words=4, max_iter=1, random_state=0).fit(train)
    assert enc.not_converged_ == 1
    assert not [w for w in recwarn if "ConvergenceWarning" in w.category.__name__]


def test_well_separated_vocabulary_converges(fitted):
    assert all(enc.not_converged_ == 0 for enc in fitted.values())


def test_codebook_line_of_the_classification_report():
    import pandas as pd

    from featbench.tasks.classification import _codebook_line

    rows = pd.DataFrame({"dataset": ["d"] * 4, "extractor": ["sift", "sift", "orb", "hog"],
                         "split": ["s0", "s1", "s0", "s0"], "codebook_not_converged": [0, 2, 0, None]})
    line = _codebook_line(rows)
    assert "1 of 3" in line and "`sift`: 2" in line
    assert "all 2 fitted" in _codebook_line(rows.assign(codebook_not_converged=[0, 0, 0, None]).iloc[[0, 2, 3]])
    assert _codebook_line(rows.drop(columns="codebook_not_converged")) is None
