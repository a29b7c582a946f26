"""Content-based image retrieval metrics: mAP, recall@k and precision@k with cosine similarity.

Protocol
--------
The *gallery* is the training images' features, the *queries* the test images' features; a
gallery image is *relevant* to a query when it has the query's label. Images are compared by
cosine similarity (the dot product of L2-normalised features). A zero feature vector stays zero:
its similarity to everything is 0, never NaN. With ``whiten=True`` the features are first
PCA-whitened (:class:`sklearn.decomposition.PCA`, ``whiten=True``) with a PCA fitted on the
gallery only, applied to gallery and queries alike, then L2-normalised.

Rules
-----
* **Average precision** of a query equals ``sklearn.metrics.average_precision_score(relevant,
  similarity)`` on its full similarity row, ties included: tied similarities are one threshold,
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct similarity values. Equivalently, every
  relevant image ``j`` contributes ``(#relevant with s >= s_j) / (#images with s >= s_j)``, and AP
  is the mean of these contributions over the relevant images. Its value does not depend on any
  tie-break.
* **Ranking** (``top``, recall@k, precision@k) is by descending similarity, ties broken by
  ascending gallery index — the order of a stable sort of the negated similarities.
* **recall@k** is LAION CLIP_benchmark's: 1.0 when at least one relevant image is among the top
  ``k``, else 0.0. **precision@k** is the number of relevant images among the top ``k`` divided
  by ``k`` (also when the gallery holds fewer than ``k`` images: then the whole gallery is the
  top ``k``).
* A query with **no relevant image** in the gallery (its label absent from the gallery's, or
  only itself with ``exclude_self``) has an undefined AP: its ``ap`` is NaN, its recall and
  precision are 0.0, it is left out of every mean of :meth:`RetrievalResult.summary` and counted
  in ``n_without_relevant``.
* ``exclude_self=True`` (all-vs-all: the queries are the gallery) removes gallery image ``i``
  from the ranking of query ``i``, as if it were not in the gallery at all.

Scale
-----
Queries are ranked in chunks: one float32 matrix product per chunk against the gallery (BLAS),
one ``np.sort`` of the chunk along its rows, ``searchsorted`` for the AP counts and a partial
selection for the top of each row. Neither an ``n_queries x n_gallery`` matrix nor a float64 or
normalised copy of the gallery is ever made (the gallery's norms scale the products instead);
whitening makes one float32 copy (the whitened gallery), and so does a gallery given in another
dtype than float32 (converted once). The chunk size follows from a memory
budget: the smaller of scikit-learn's ``working_memory`` setting and half the gallery matrix's
size (at least 4 MiB), so that the extra memory stays under about twice the gallery's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RetrievalResult", "retrieval_scores"]

_MIB = 2**20
#: rows whose top-k candidates (similarity >= the k-th largest) exceed this many times k, e.g.
#: a zero query tied with the whole gallery, are ranked one at a time instead of in the batch.
_HEAVY_TIES = 4


@dataclass
class RetrievalResult:
    """Per-query retrieval metrics (see the module docstring for the rules).

    ``ap``: (n_queries,) average precision, NaN for a query without a relevant gallery image.
    ``recall_at[k]`` / ``precision_at[k]``: (n_queries,) float64 per query.
    ``top``: (n_queries, min(keep_top, gallery size)) int64 gallery indices, best first.
    ``n_without_relevant``: queries with no relevant gallery image (left out of the means).
    """

    ap: np.ndarray
    recall_at: dict[int, np.ndarray]
    precision_at: dict[int, np.ndarray]
    top: np.ndarray
    n_without_relevant: int = 0
    has_relevant: np.ndarray = field(default=None, repr=False)  # (n_queries,) bool

    def __post_init__(self):
        if self.has_relevant is None:
            self.has_relevant = ~np.isnan(self.ap)

    def summary(self) -> dict[str, float]:
        """Means over the queries that have at least one relevant gallery image.

        Keys: ``mAP``, ``recall@k`` for each k, ``precision@k`` for each k, ``n_without_relevant``.
        The means are NaN when no query has a relevant image.
        """
        keep = self.has_relevant

        def mean(x: np.ndarray) -> float:
            return float(x[keep].mean()) if keep.any() else float("nan")

        out = {"mAP": mean(self.ap)}
        out.update({f"recall@{k}": mean(v) for k, v in self.recall_at.items()})
        out.update({f"precision@{k}": mean(v) for k, v in self.precision_at.items()})
        out["n_without_relevant"] = float(self.n_without_relevant)
        return out


# -- input checks ---------------------------------------------------------------------------------
def _features(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_images, n_features), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float32)  # no copy when already float32
    if not (x.flags.c_contiguous or x.flags.f_contiguous):  # BLAS would copy it for every chunk
        x = np.ascontiguousarray(x)
    return x


def _labels(y, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must be a 1-D array of {n} labels (one per row of the features), "
                         f"got shape {y.shape}")
    return y


def _ks(ks, name: str) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(k) for k in ks}))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of positive integers, got {ks!r}") from None
    if any(k < 1 for k in out) or any(int(k) != k for k in ks):
        raise ValueError(f"{name} must be a sequence of positive integers, got {ks!r}")
    return out


def _inverse_norms(x: np.ndarray, name: str) -> np.ndarray:
    """1 / ||row|| in float32 (0 for a zero row); no copy of ``x`` (einsum, no temporaries)."""
    from sklearn.utils.extmath import row_norms

    norms = row_norms(x)
    if not np.isfinite(norms).all():
        bad = ~np.isfinite(norms)
        if not np.isfinite(x[bad]).all():
            raise ValueError(f"{name} contains NaN or infinity (in {int(bad.sum())} rows)")
        raise ValueError(f"{name} has values too large for float32 cosine similarity "
                         f"({int(bad.sum())} rows' squared norms overflow)")
    inv = np.zeros_like(norms)
    np.divide(1.0, norms, out=inv, where=norms > 0)
    return inv


def _fit_whitening(gallery: np.ndarray):
    """PCA(whiten=True) fitted on the gallery, keeping the components with a non-negligible variance.

    Components whose singular value is below ``max(n, d) * eps(float32)`` times the largest
    (numpy's ``matrix_rank`` rule) would be divided by ~0 and are dropped (refit with that many).
    """
    from sklearn.decomposition import PCA

    n, d = gallery.shape
    solver = "covariance_eigh" if n > d else "full"  # covariance_eigh: no copy of a tall gallery
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant gallery: caught below
        pca = PCA(whiten=True, svd_solver=solver).fit(gallery)
    var = np.asarray(pca.explained_variance_, dtype=np.float64)
    tol = (max(n, d) * np.finfo(np.float32).eps) ** 2
    rank = int(np.count_nonzero(var > (var[0] if len(var) else 0.0) * tol)) if len(var) and var[0] > 0 else 0
    if rank == 0:
        raise ValueError("whiten=True needs a gallery whose features vary (at least two different rows)")
    if rank < len(var):
        pca = PCA(n_components=rank, whiten=True, svd_solver=solver).fit(gallery)
    return pca


def _whiten(pca, x: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(pca.transform(x), dtype=np.float32)
    w *= _inverse_norms(w, "whitened features")[:, None]
    return w


def _chunk_rows(n_gallery: int, largest_class: int, gallery_bytes: int) -> int:
    """Queries per chunk from the memory budget (see the module docstring)."""
    import sklearn

    budget = min(sklearn.get_config()["working_memory"] * _MIB, max(gallery_bytes // 2, 4 * _MIB))
    # similarities + sorted copy + candidate mask (4 + 4 + 1 bytes per gallery image), and the relevant
    # images' gathered and sorted similarities, tie starts, counts, contributions (~45 bytes each)
    row_bytes = 10 * n_gallery + 45 * largest_class + 1024
    return max(1, int(budget // row_bytes))


# -- the metrics ------------------------------------------------------------------------------------
def retrieval_scores(gallery, gallery_labels, queries, query_labels, *, ks=(1, 5, 10), precision_ks=(10,),
                     whiten: bool = False, exclude_self: bool = False, keep_top: int = 5,
                     chunk_size: int | None = None) -> RetrievalResult:
    """Retrieval metrics of ``queries`` against ``gallery`` with cosine similarity.

    Parameters
    ----------
    gallery : (n_gallery, d) array
        Features of the images searched (the training images). Used as float32, not copied when
        it is float32 already (and C- or F-contiguous).
    gallery_labels : (n_gallery,) array
    queries : (n_queries, d) array
        Features of the query images (the test images).
    query_labels : (n_queries,) array
        A gallery image is relevant to a query when their labels are equal.
    ks : sequence of int
        The k of recall@k (1.0 when a relevant image is among the top k).
    precision_ks : sequence of int
        The k of precision@k (relevant images among the top k, divided by k).
    whiten : bool
        PCA-whiten the features with a PCA fitted on the gallery only, then L2-normalise.
    exclude_self : bool
        All-vs-all: the queries are the gallery (same length required) and query i must not
        retrieve gallery image i.
    keep_top : int
        How many best matches per query to return in ``top``.
    chunk_size : int, optional
        Queries ranked at a time; by default chosen from a memory budget.

    Returns
    -------
    RetrievalResult
        See the module docstring for the tie rules and queries without a relevant image.
    """
    gallery = _features(gallery, "gallery")
    queries = _features(queries, "queries")
    n, d = gallery.shape
    nq = queries.shape[0]
    if queries.shape[1] != d:
        raise ValueError(f"queries have {queries.shape[1]} features but the gallery has {d}: shape mismatch "
                         f"{queries.shape} vs {gallery.shape}")
    gallery_labels = _labels(gallery_labels, n, "gallery_labels")
    query_labels = _labels(query_labels, nq, "query_labels")
    ks = _ks(ks, "ks")
    precision_ks = _ks(precision_ks, "precision_ks")
    if isinstance(keep_top, bool) or not isinstance(keep_top, (int, np.integer)) or keep_top < 0:
        raise ValueError(f"keep_top must be a non-negative integer, got {keep_top!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if exclude_self:
        if nq != n:
            raise ValueError(f"exclude_self=True needs the queries to be the gallery (all-vs-all), but there "
                             f"are {nq} queries and {n} gallery images")
        if n < 2:
            raise ValueError("exclude_self=True needs at least 2 gallery images")
    n_avail = n - bool(exclude_self)

    # Labels as integer codes shared by gallery and queries.
    codes = np.unique(np.concatenate([gallery_labels, query_labels]), return_inverse=True)[1]
    g_codes, q_codes = codes[:n], codes[n:]
    by_class = np.argsort(g_codes, kind="stable")
    bounds = np.searchsorted(g_codes[by_class], np.arange(codes.max() + 2))
    class_cols = [by_class[bounds[c]:bounds[c + 1]] for c in range(len(bounds) - 1)]

    if whiten:
        pca = _fit_whitening(gallery)
        same = queries is gallery
        gallery = _whiten(pca, gallery)
        g_scale = None
        prepare = (lambda q: q) if same else (lambda q: _whiten(pca, q))
        queries = gallery if same else queries
    else:
        g_scale = _inverse_norms(gallery, "gallery")
        q_scale = g_scale if queries is gallery else _inverse_norms(queries, "queries")

    K = min(max((*ks, *precision_ks, keep_top)), n_avail)
    largest = max((len(c) for c in class_cols), default=0)
    step = chunk_size or _chunk_rows(n, largest, gallery.nbytes)

    ap = np.full(nq, np.nan)
    top = np.empty((nq, K), dtype=np.int64)
    rel_top = np.zeros((nq, K), dtype=bool)
    for start in range(0, nq, step):
        stop = min(start + step, nq)
        if whiten:
            q = prepare(queries[start:stop])
        else:
            q = queries[start:stop] * q_scale[start:stop, None]
        sims = q @ gallery.T  # (chunk, n) float32
        del q
        if g_scale is not None:
            sims *= g_scale
        rows = np.arange(stop - start)
        if exclude_self:
            sims[rows, start + rows] = -np.inf  # removed from query i's gallery
        ranked = np.sort(sims, axis=1)
        if K:
            top[start:stop] = _top_k(sims, ranked, K)
            rel_top[start:stop] = g_codes[top[start:stop]] == q_codes[start:stop, None]
        _average_precision(sims, ranked, q_codes[start:stop], class_cols, ap[start:stop])
        del sims, ranked

    has_relevant = ~np.isnan(ap)
    recall_at = {k: rel_top[:, :k].any(axis=1).astype(np.float64) for k in ks}
    precision_at = {k: rel_top[:, :k].sum(axis=1) / k for k in precision_ks}
    return RetrievalResult(ap=ap, recall_at=recall_at, precision_at=precision_at,
                           top=np.ascontiguousarray(top[:, :min(keep_top, K)]),
                           n_without_relevant=int(nq - has_relevant.sum()), has_relevant=has_relevant)


def _top_k(sims: np.ndarray, ranked: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest similarities per row, by descending similarity then ascending index.

    Every image above the row's k-th largest value is in; of those equal to it, the lowest
    indices. Rows are done together from the candidates ``sims >= kth``; a row with many tied
    candidates (e.g. a zero query) is done alone so that memory stays bounded.
    """
    c, n = sims.shape
    kth = ranked[:, n - k]
    mask = sims >= kth[:, None]
    counts = np.count_nonzero(mask, axis=1)
    heavy = np.flatnonzero(counts > _HEAVY_TIES * k + 64)
    out = np.empty((c, k), dtype=np.int64)
    if len(heavy):
        mask[heavy] = False
        for i in heavy:
            above = np.flatnonzero(sims[i] > kth[i])
            tied = np.flatnonzero(sims[i] == kth[i])[: k - len(above)]
            cand = np.concatenate([above, tied])
            out[i] = cand[np.lexsort((cand, -sims[i, cand]))]
        counts[heavy] = 0
    light = np.flatnonzero(counts)
    if len(light):
        r, col = np.nonzero(mask)  # row-major: ascending index within each row
        order = np.lexsort((col, -sims[r, col], r))
        firsts = np.concatenate([[0], np.cumsum(counts[light])[:-1]])
        out[light] = col[order][firsts[:, None] + np.arange(k)]
    return out


def _average_precision(sims: np.ndarray, ranked: np.ndarray, q_codes: np.ndarray, class_cols: list,
                       out: np.ndarray) -> None:
    """AP of each row into ``out`` (NaN where the row has no relevant image), sklearn's tie rule.

    For each relevant image j: ``all_ge`` = images with similarity >= s_j (searchsorted in the
    sorted row), ``rel_ge`` = relevant images with similarity >= s_j (the start of j's tie group in
    the sorted relevant similarities). Excluded images (-inf) are never >= a finite s_j.
    """
    n = sims.shape[1]
    for code in np.unique(q_codes):
        cols = class_cols[code]
        m = len(cols)
        if m == 0:
            continue
        rows = np.flatnonzero(q_codes == code)
        rel = np.sort(sims[np.ix_(rows, cols)], axis=1)  # (r, m)
        pos = np.arange(m)
        new_group = np.ones(rel.shape, dtype=bool)
        new_group[:, 1:] = rel[:, 1:] != rel[:, :-1]
        group_start = np.maximum.accumulate(np.where(new_group, pos, 0), axis=1)
        rel_ge = m - group_start
        all_ge = np.empty(rel.shape, dtype=np.int64)
        for j, i in enumerate(rows):
            all_ge[j] = np.searchsorted(ranked[i], rel[j], side="left")
        all_ge = n - all_ge
        valid = rel > -np.inf
        n_rel = valid.sum(axis=1)
        contrib = np.where(valid, rel_ge / all_ge, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(n_rel > 0, contrib / np.maximum(n_rel, 1), np.nan)
