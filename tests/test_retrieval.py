"""Retrieval metrics (featbench.evaluation.retrieval) against a brute-force reference.

The reference builds the full similarity matrix in float64, calls
``sklearn.metrics.average_precision_score`` per query on the full row, and takes recall@k /
precision@k / the top from a full stable argsort of the negated row (ties: ascending index).
Tie-heavy data is built so that every similarity is exact in float32 whatever the order of the
sums (entries 0 or ±1, four non-zero per row: norm 2, products multiples of 1/4), so ties are
real ties on both sides.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score

from featbench.evaluation import RetrievalResult, retrieval_scores
from featbench.evaluation import retrieval as retrieval_module
from featbench.perf.retrieval import make_gallery, reference_scores


def _normalise(x):
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def brute_force(gallery, gallery_labels, queries, query_labels, ks=(1, 5, 10), precision_ks=(10,),
                keep_top=5, exclude_self=False, sims=None):
    if sims is None:
        sims = _normalise(queries) @ _normalise(gallery).T
    nq, n = sims.shape
    ap = np.full(nq, np.nan)
    recall = {k: np.zeros(nq) for k in ks}
    precision = {k: np.zeros(nq) for k in precision_ks}
    top = []
    for i in range(nq):
        idx = np.array([j for j in range(n) if not (exclude_self and j == i)])
        s = sims[i, idx]
        rel = gallery_labels[idx] == query_labels[i]
        if rel.any():
            ap[i] = average_precision_score(rel, s)
        order = np.argsort(-s, kind="stable")
        r = rel[order]
        for k in ks:
            recall[k][i] = float(r[:k].any())
        for k in precision_ks:
            precision[k][i] = r[:k].sum() / k
        top.append(idx[order][:keep_top])
    return ap, recall, precision, np.array(top, dtype=np.int64).reshape(nq, -1)


def assert_matches(res: RetrievalResult, ref, rtol=1e-12):
    ap, recall, precision, top = ref
    np.testing.assert_allclose(res.ap, ap, rtol=rtol, atol=rtol, equal_nan=True)
    assert set(res.recall_at) == set(recall) and set(res.precision_at) == set(precision)
    for k in recall:
        np.testing.assert_array_equal(res.recall_at[k], recall[k], err_msg=f"recall@{k}")
    for k in precision:
        np.testing.assert_array_equal(res.precision_at[k], precision[k], err_msg=f"precision@{k}")
    np.testing.assert_array_equal(res.top, top)
    assert res.top.dtype == np.int64


def assert_close_after_float32(res: RetrievalResult, ref):
    """featbench works in float32, the reference in float64: near-ties (1e-7 apart) may swap places."""
    ap, recall, precision, top = ref
    np.testing.assert_allclose(res.ap, ap, atol=2e-3)
    assert abs(np.nanmean(res.ap) - np.nanmean(ap)) < 1e-4
    for k in recall:
        assert abs(res.recall_at[k].mean() - recall[k].mean()) <= 0.02
    assert (res.top == top).mean() >= 0.97


def tied_features(rng, m, d=6, zero_share=0.15):
    """Rows with four entries of ±1 (norm 2) and some zero rows: exact float32 similarities, many ties."""
    x = np.zeros((m, d), dtype=np.float32)
    for r in range(m):
        pos = rng.choice(d, 4, replace=False)
        x[r, pos] = rng.choice([-1.0, 1.0], 4)
    x[rng.random(m) < zero_share] = 0
    return x


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():  # sklearn warns for queries without a relevant image
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.mark.parametrize("seed", range(6))
def test_equals_brute_force_with_forced_ties_duplicates_and_zero_vectors(seed):
    rng = np.random.default_rng(seed)
    n, nq = int(rng.integers(20, 90)), int(rng.integers(5, 40))
    gallery, queries = tied_features(rng, n), tied_features(rng, nq)
    gallery[n // 2:n // 2 + n // 4] = gallery[: n // 4]  # duplicate gallery rows
    gallery_labels = rng.integers(0, 4, n)
    query_labels = rng.integers(0, 5, nq)  # label 4: absent from the gallery
    sims = _normalise(queries) @ _normalise(gallery).T
    assert len(np.unique(sims)) < sims.size / 5  # ties really forced
    ref = _quiet(brute_force, gallery, gallery_labels, queries, query_labels)
    res = retrieval_scores(gallery, gallery_labels, queries, query_labels)
    assert_matches(res, ref)
    absent = query_labels == 4
    assert res.n_without_relevant == absent.sum()
    assert np.isnan(res.ap[absent]).all() and not np.isnan(res.ap[~absent]).any()
    s = res.summary()
    assert s["mAP"] == pytest.approx(np.nanmean(ref[0]))
    assert s["recall@5"] == pytest.approx(ref[1][5][~absent].mean())
    assert s["n_without_relevant"] == absent.sum()
    assert list(s) == ["mAP", "recall@1", "recall@5", "recall@10", "precision@10", "n_without_relevant"]


def test_equals_brute_force_on_continuous_random_data_other_ks():
    rng = np.random.default_rng(7)
    gallery = rng.standard_normal((150, 12)).astype(np.float32)
    queries = rng.standard_normal((40, 12)).astype(np.float32)
    gl, ql = rng.integers(0, 3, 150), rng.integers(0, 3, 40)
    kw = {"ks": (2, 7, 300), "precision_ks": (1, 3, 200), "keep_top": 9}
    ref = brute_force(gallery, gl, queries, ql, **kw)
    assert_matches(retrieval_scores(gallery, gl, queries, ql, **kw), ref, rtol=1e-9)
    # the float64 input is used as float32; labels may be strings
    res = retrieval_scores(gallery.astype(np.float64), np.array(list("abc"))[gl], queries,
                           np.array(list("abc"))[ql], **kw)
    assert_matches(res, ref, rtol=1e-9)


def test_zero_query_is_tied_with_everything_and_never_nan():
    rng = np.random.default_rng(3)
    gallery = tied_features(rng, 400, d=8, zero_share=0.0)  # 400 > the batch's tie limit for k = 10
    gl = rng.integers(0, 3, 400)
    queries = np.zeros((3, 8), dtype=np.float32)
    queries[1] = gallery[5]
    ql = np.array([0, 1, 2])
    ref = brute_force(gallery, gl, queries, ql)
    res = retrieval_scores(gallery, gl, queries, ql, chunk_size=2)
    assert_matches(res, ref)
    np.testing.assert_array_equal(res.top[0], np.arange(5))  # all tied at 0: lowest indices first
    assert res.ap[0] == pytest.approx((gl == 0).mean())  # one threshold: AP = share of relevant images
    assert np.isfinite(res.ap).all()


def test_zero_vectors_in_gallery_have_similarity_zero():
    gallery = np.array([[0, 0], [1, 0], [-1, 0], [0, 0]], dtype=np.float32)
    res = retrieval_scores(gallery, np.array([1, 0, 0, 1]), np.array([[1.0, 0.0]]), np.array([1]), ks=(1, 2, 3),
                           precision_ks=(3,))
    # similarities 0, 1, -1, 0: order 1, 0, 3, 2; relevant (label 1) are 0 and 3, tied at 0
    np.testing.assert_array_equal(res.top[0], [1, 0, 3, 2])
    assert res.recall_at[1][0] == 0 and res.recall_at[2][0] == 1
    # threshold 1: P = 0/1, R = 0; threshold 0: P = 2/3, R = 1  ->  AP = 2/3
    assert res.ap[0] == pytest.approx(2 / 3)


def test_hand_computed_tiny_example_with_a_tie():
    # query (1, 0); gallery similarities: g0 = 0.6, g1 = 1.0, g2 = 0.6 (tie with g0), g3 = -1.0
    gallery = np.array([[0.6, 0.8], [2.0, 0.0], [0.6, -0.8], [-1.0, 0.0]])
    labels = np.array([1, 0, 0, 1])
    res = retrieval_scores(gallery, labels, np.array([[3.0, 0.0]]), np.array([0]), ks=(1, 2, 3),
                           precision_ks=(1, 2, 4), keep_top=4)
    # relevant: g1 (s = 1.0) and g2 (s = 0.6). Thresholds 1.0 then 0.6 (g0 and g2 together):
    # at 1.0: 1 of 1 image relevant, recall 1/2; at 0.6: 2 of 3 relevant, recall 2/2
    # AP = (1/2 - 0) * 1 + (1 - 1/2) * 2/3 = 5/6
    assert res.ap[0] == pytest.approx(5 / 6, abs=1e-12)
    np.testing.assert_array_equal(res.top[0], [1, 0, 2, 3])  # the tie: ascending index
    assert res.recall_at[1][0] == 1.0
    assert res.precision_at[1][0] == 1.0 and res.precision_at[2][0] == 0.5 and res.precision_at[4][0] == 0.5
    # the other query label: relevant g0 (0.6, tied with g2) and g3 (-1.0)
    res1 = retrieval_scores(gallery, labels, np.array([[3.0, 0.0]]), np.array([1]), ks=(1, 2, 3))
    # at 1.0: 0/1; at 0.6: 1 of 3, recall 1/2; at -1.0: 2 of 4, recall 1  ->  AP = 1/2 * 1/3 + 1/2 * 1/2
    assert res1.ap[0] == pytest.approx(1 / 6 + 1 / 4, abs=1e-12)
    assert res1.recall_at[1][0] == 0.0 and res1.recall_at[2][0] == 1.0


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 33, 1000])
def test_chunked_equals_unchunked(chunk_size):
    rng = np.random.default_rng(11)
    gallery, queries = tied_features(rng, 120), tied_features(rng, 33)
    gl, ql = rng.integers(0, 4, 120), rng.integers(0, 4, 33)
    whole = retrieval_scores(gallery, gl, queries, ql, chunk_size=10_000)
    part = retrieval_scores(gallery, gl, queries, ql, chunk_size=chunk_size)
    assert_matches(part, (whole.ap, whole.recall_at, whole.precision_at, whole.top))
    cont = rng.standard_normal((120, 16)).astype(np.float32)
    a = retrieval_scores(cont, gl, cont[:33] + 0.5, ql, chunk_size=chunk_size, exclude_self=False)
    b = retrieval_scores(cont, gl, cont[:33] + 0.5, ql)
    np.testing.assert_array_equal(a.top, b.top)
    np.testing.assert_allclose(a.ap, b.ap, rtol=1e-6)


def test_default_chunk_size_comes_from_a_memory_budget(monkeypatch):
    import sklearn

    seen = []
    real = retrieval_module._chunk_rows
    monkeypatch.setattr(retrieval_module, "_chunk_rows", lambda *a: seen.append(real(*a)) or seen[-1])
    with sklearn.config_context(working_memory=1):  # MiB
        rows = real(60_000, 6_000, 60_000 * 2048 * 4)
    assert 1 <= rows <= 2**20 // (10 * 60_000)
    # half the gallery caps the budget: a 60,000 x 2,048 float32 gallery -> chunks under 1/2 of it
    rows = real(60_000, 6_000, 60_000 * 2048 * 4)
    assert rows * 10 * 60_000 <= 60_000 * 2048 * 4 // 2
    rng = np.random.default_rng(0)
    retrieval_scores(rng.random((50, 4)), np.arange(50) % 2, rng.random((5, 4)), np.arange(5) % 2)
    assert seen and seen[0] >= 5


def test_exclude_self_all_vs_all():
    rng = np.random.default_rng(5)
    x = tied_features(rng, 70)
    x[10:20] = x[:10]  # duplicates: each is the other's best match once self is excluded
    labels = rng.integers(0, 3, 70)
    labels[-1] = 9  # its only relevant image would be itself
    ref = _quiet(brute_force, x, labels, x, labels, exclude_self=True)
    for chunk in (None, 1, 8):
        res = retrieval_scores(x, labels, x, labels, exclude_self=True, chunk_size=chunk)
        assert_matches(res, ref)
        assert not (res.top == np.arange(70)[:, None]).any()
        assert res.n_without_relevant == 1 and np.isnan(res.ap[-1])
    # a copy of the gallery as queries (not the same object) gives the same result
    assert_matches(retrieval_scores(x, labels, x.copy(), labels, exclude_self=True), ref)
    # without exclusion a non-zero row finds itself (or an identical duplicate) first
    res = retrieval_scores(x, labels, x, labels)
    nonzero = x.any(axis=1)
    np.testing.assert_array_equal(x[res.top[nonzero, 0]], x[nonzero])


def test_keep_top_larger_than_the_gallery():
    x = np.eye(3, dtype=np.float32)
    res = retrieval_scores(x, [0, 1, 2], x, [0, 1, 2], exclude_self=True, keep_top=10, ks=(1, 5))
    assert res.top.shape == (3, 2)
    assert res.n_without_relevant == 3 and np.isnan(res.summary()["mAP"])
    res = retrieval_scores(x, [0, 1, 2], x[:1], [0], keep_top=10, ks=(5,), precision_ks=(5,))
    assert res.top.shape == (1, 3) and res.recall_at[5][0] == 1.0 and res.precision_at[5][0] == 1 / 5


def test_whitening_is_fitted_on_the_gallery_only():
    rng = np.random.default_rng(2)
    mix = rng.standard_normal((10, 10))
    gallery = (rng.standard_normal((200, 10)) @ mix).astype(np.float32)
    gl = rng.integers(0, 3, 200)
    queries = (rng.standard_normal((30, 10)) @ mix).astype(np.float32)
    ql = rng.integers(0, 3, 30)
    res = retrieval_scores(gallery, gl, queries, ql, whiten=True)
    # changing the other queries changes nothing for the first ten
    other = np.concatenate([queries[:10], 100 * rng.standard_normal((50, 10)).astype(np.float32)])
    res2 = retrieval_scores(gallery, gl, other, np.concatenate([ql[:10], rng.integers(0, 3, 50)]), whiten=True,
                            chunk_size=7)
    np.testing.assert_array_equal(res2.top[:10], res.top[:10])
    np.testing.assert_allclose(res2.ap[:10], res.ap[:10], rtol=1e-6)
    # equals the brute force on PCA(whiten=True) fitted on the gallery in float64
    pca = PCA(whiten=True).fit(gallery.astype(np.float64))
    sims = _normalise(pca.transform(queries)) @ _normalise(pca.transform(gallery)).T
    ref = brute_force(gallery, gl, queries, ql, sims=sims)
    assert_close_after_float32(res, ref)
    assert not np.array_equal(res.top, retrieval_scores(gallery, gl, queries, ql).top)  # it did something
    # all-vs-all with whitening
    ava = retrieval_scores(gallery, gl, gallery, gl, whiten=True, exclude_self=True)
    sims = _normalise(pca.transform(gallery)) @ _normalise(pca.transform(gallery)).T
    assert_close_after_float32(ava, brute_force(gallery, gl, gallery, gl, sims=sims, exclude_self=True))


def test_whitening_drops_directions_without_variance():
    rng = np.random.default_rng(4)
    gallery = np.zeros((40, 6), dtype=np.float32)
    gallery[:, :3] = rng.standard_normal((40, 3))  # rank 3 of 6
    queries = rng.standard_normal((8, 6)).astype(np.float32)
    res = retrieval_scores(gallery, np.arange(40) % 2, queries, np.arange(8) % 2, whiten=True)
    assert np.isfinite(res.ap).all()
    with pytest.raises(ValueError, match="whiten"):
        retrieval_scores(np.ones((5, 3)), np.arange(5), np.ones((2, 3)), [0, 1], whiten=True)


def test_perf_reference_equals_sklearn_rule():
    """The NumPy reference of ``make perf`` computes AP by the same rule as sklearn."""
    rng = np.random.default_rng(8)
    gallery, queries = tied_features(rng, 300), tied_features(rng, 20)  # exact ties
    gl, ql = rng.integers(0, 4, 300), rng.integers(0, 4, 20)
    ref = reference_scores(gallery, gl, queries, ql)
    assert make_gallery(50, 4, n_queries=3)[2].shape == (3, 4)
    bf = brute_force(gallery, gl, queries, ql)
    np.testing.assert_allclose(ref["ap"], bf[0], rtol=1e-12)
    np.testing.assert_array_equal(ref["top"], bf[3])


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 5)), [0, 1]), {}, "shape mismatch"),
    ((np.ones(4), [0, 1, 0, 1], np.ones((2, 4)), [0, 1]), {}, "gallery must be a 2-D array"),
    ((np.ones((4, 3)), [0, 1, 0], np.ones((2, 3)), [0, 1]), {}, "gallery_labels must be a 1-D array of 4"),
    ((np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 3)), [0]), {}, "query_labels must be a 1-D array of 2"),
    ((np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 3)), [0, 1]), {"exclude_self": True},
     "exclude_self=True needs the queries to be the gallery.*2 queries and 4 gallery images"),
    ((np.ones((0, 3)), [], np.ones((2, 3)), [0, 1]), {}, "gallery is empty"),
    ((np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 3)), [0, 1]), {"ks": (0, 5)}, "ks must be"),
    ((np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 3)), [0, 1]), {"precision_ks": (2.5,)}, "precision_ks must be"),
    ((np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 3)), [0, 1]), {"chunk_size": 0}, "chunk_size"),
    ((np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 3)), [0, 1]), {"keep_top": -1}, "keep_top"),
    ((np.array([[np.nan, 1, 1]] * 4), [0, 1, 0, 1], np.ones((2, 3)), [0, 1]), {}, "gallery contains NaN"),
    ((np.ones((4, 3)), [0, 1, 0, 1], np.array([[1, np.inf, 0]] * 2), [0, 1]), {}, "queries contains NaN"),
    ((np.ones((1, 3)), [0], np.ones((1, 3)), [0]), {"exclude_self": True}, "at least 2"),
])
def test_invalid_input_raises_value_error(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieval_scores(*args, **kwargs)


def test_retrieval_picture_tiles_keep_the_image_and_its_frame_colour(tmp_path):
    from PIL import Image

    from featbench.reporting.plots import _tile, retrieval_picture

    img = np.array([[0, 50, 100, 150], [200, 250, 255, 10]], dtype=np.uint8)  # 2 x 4, grey
    tile = _tile(img, 20, "#d62728", 2)
    assert tile.shape == (20, 20, 3)
    assert (tile[0, :] == [214, 39, 40]).all() and (tile[:, -1] == [214, 39, 40]).all()  # the frame
    # 16 x 16 inside the frame: the image scaled by 4 (nearest pixel), centred with white above and below
    np.testing.assert_array_equal(tile[6:14, 2:18, 0], np.kron(img, np.ones((4, 4), dtype=np.uint8)))
    assert (tile[2:6, 2:18] == 255).all() and (tile[14:18, 2:18] == 255).all()
    rows = {name: {"queries": [0], "query_labels": [0], "top": [[1, 2]], "top_labels": [[0, 1]]}
            for name in ("a", "b")}
    images = [np.full((8, 8), v, dtype=np.uint8) for v in (0, 100, 200)]
    path = retrieval_picture(images, rows, "t", tmp_path / "r.png")
    assert Image.open(path).size[0] > 100
