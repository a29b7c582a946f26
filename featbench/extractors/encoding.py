"""Local descriptors → one fixed-length vector per image: bag of visual words, VLAD, Fisher vectors.

Every encoder is a small scikit-learn estimator. ``fit`` learns a vocabulary
(k-means codebook or diagonal Gaussian mixture, after an optional PCA) from a
random sample of at most ``max_descriptors`` descriptors drawn with
``random_state``; ``transform`` encodes any number of images at once. Images
are given as a list of descriptor arrays ``(n_i, d)`` (``n_i`` may be 0) and,
for a spatial pyramid, a matching list of keypoint positions ``(n_i, 2)`` as
``(x, y)`` in ``[0, 1]`` (fractions of the image width and height).

The work is vectorised over all descriptors of all images in a call: one
matrix product gives the distances to the words (or the Gaussian posteriors),
and the per-image, per-cell sums are one sparse matrix product (or one
``np.bincount``). There is no Python loop over images or descriptors.

Spatial pyramid (Lazebnik et al. 2006): with ``pyramid=(1, 2, 4)`` the image
is cut into a 1×1, a 2×2 and a 4×4 grid; each of the ``1 + 4 + 16`` cells is
encoded on its own (from the descriptors whose keypoint falls in it) and
normalised on its own, and the cells are concatenated (level by level, cells
row by row), so the dimension is the cell dimension times ``sum(l**2)``. The
concatenation is then normalised once more with the encoder's final norm so
that every image has the same norm whatever the number of non-empty cells.

An image (or cell) with no descriptor gets zeros.

References
----------
.. [1] Csurka, G., Dance, C. R., Fan, L., Willamowski, J., Bray, C. (2004). Visual
       categorization with bags of keypoints. ECCV Workshop on Statistical Learning
       in Computer Vision.
.. [2] van Gemert, J. C., Geusebroek, J.-M., Veenman, C. J., Smeulders, A. W. M. (2008).
       Kernel codebooks for scene categorization. ECCV 2008.
.. [3] Jégou, H., Douze, M., Schmid, C., Pérez, P. (2010). Aggregating local
       descriptors into a compact image representation. CVPR 2010.
.. [4] Arandjelović, R., Zisserman, A. (2013). All about VLAD. CVPR 2013.
.. [5] Perronnin, F., Sánchez, J., Mensink, T. (2010). Improving the Fisher kernel
       for large-scale image classification. ECCV 2010.
.. [6] Lazebnik, S., Schmid, C., Ponce, J. (2006). Beyond bags of features: spatial
       pyramid matching for recognizing natural scene categories. CVPR 2006.
.. [7] Chatfield, K., Lempitsky, V., Vedaldi, A., Zisserman, A. (2011). The devil is
       in the details: an evaluation of recent feature encoding methods. BMVC 2011.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.base import BaseEstimator
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from featbench._threads import one_thread
from featbench._warnings import count_convergence_warnings
from featbench.errors import ConfigError

__all__ = [
    "BoVW",
    "VLAD",
    "FisherVector",
    "ENCODERS",
    "make_encoder",
    "check_pyramid",
    "pyramid_cells",
    "sample_rows",
]

# Rows per block when computing distances / posteriors: bounds the temporary (rows, K) matrix.
_BLOCK = 16384
# Gaussian posteriors below this are treated as zero (sparse Fisher statistics), as VLFeat does.
_POSTERIOR_FLOOR = 1e-4
_EPS = 1e-12
# Many descriptors of few dimensions: the eigen-decomposition of the d x d covariance (scikit-learn
# >= 1.5) is far cheaper than an SVD of the (n, d) sample.
_PCA_SOLVER = "covariance_eigh" if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 5) else "full"


def check_pyramid(pyramid, owner: str = "pyramid") -> tuple[int, ...]:
    """``pyramid`` as a tuple of distinct positive ints, else a :class:`ConfigError` naming ``owner``."""
    ok = isinstance(pyramid, (list, tuple)) and len(pyramid) > 0 and all(
        isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in pyramid
    )
    if not ok or len(set(pyramid)) != len(pyramid):
        raise ConfigError(
            f"{owner} must be a non-empty list of distinct positive grid sizes such as [1] or [1, 2, 4]; "
            f"got {pyramid!r}"
        )
    return tuple(int(v) for v in pyramid)


def pyramid_cells(positions: np.ndarray, pyramid: Sequence[int]) -> np.ndarray:
    """Cell index of each position at each pyramid level, ``(n, len(pyramid))`` int64.

    Cells are numbered level by level (offset ``sum(l**2)`` of the levels before), row by
    row inside a level. Positions are ``(x, y)`` in ``[0, 1]``; 1.0 falls in the last cell.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    out = np.empty((len(positions), len(pyramid)), dtype=np.int64)
    offset = 0
    for j, level in enumerate(pyramid):
        cx = np.clip((positions[:, 0] * level).astype(np.int64), 0, level - 1)
        cy = np.clip((positions[:, 1] * level).astype(np.int64), 0, level - 1)
        out[:, j] = offset + cy * level + cx
        offset += level * level
    return out


def sample_rows(arrays: Sequence[np.ndarray] | np.ndarray, n_max: int, rng: np.random.RandomState) -> np.ndarray:
    """At most ``n_max`` rows drawn uniformly without replacement from the stacked ``arrays``, float32."""
    X = arrays if isinstance(arrays, np.ndarray) else (
        np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays]) if len(arrays) else np.empty((0, 0))
    )
    X = np.asarray(X, dtype=np.float32)
    if len(X) > n_max:
        X = X[np.sort(rng.choice(len(X), n_max, replace=False))]
    return np.ascontiguousarray(X)


def _sq_distances(X: np.ndarray, C: np.ndarray, c_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(X), len(C))``, float32, by one matrix product."""
    d = X @ (-2.0 * C.T)
    d += np.einsum("ij,ij->i", X, X)[:, None]
    d += c_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def _signed_sqrt(a: np.ndarray) -> np.ndarray:
    return np.sign(a) * np.sqrt(np.abs(a))


def _normalise(a: np.ndarray, norm: str) -> np.ndarray:
    """Rows of ``a`` (any leading shape, last axis = vector) to unit L1 or L2 norm; zero rows stay zero."""
    n = np.abs(a).sum(axis=-1, keepdims=True) if norm == "l1" else np.sqrt((a * a).sum(axis=-1, keepdims=True))
    return a / np.maximum(n, _EPS)


class _Encoder(BaseEstimator):
    """Shared machinery: sampling, optional PCA, stacking, pyramid cells, normalisation."""

    _parameter_constraints: ClassVar[dict] = {
        "n_words": [Interval(Integral, 1, None, closed="left")],
        "pca": [Interval(Integral, 1, None, closed="left"), None],
        "pyramid": [list, tuple],
        "max_descriptors": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }
    #: norm applied to each cell and to the concatenation
    _final_norm: ClassVar[str] = "l2"

    # -- fitting ----------------------------------------------------------------
    def fit(self, descriptors: Sequence[np.ndarray] | np.ndarray, y=None) -> _Encoder:
        """Learn PCA (optional) and the vocabulary from at most ``max_descriptors`` descriptors.

        Parameters
        ----------
        descriptors : array ``(n, d)`` or list of arrays ``(n_i, d)``
            Descriptors of the training images only, pooled.
        """
        self._validate_params()
        self.pyramid_ = check_pyramid(self.pyramid, f"{type(self).__name__} pyramid")
        rng = check_random_state(self.random_state)
        X = sample_rows(descriptors, self.max_descriptors, rng)
        if X.ndim != 2 or len(X) < self.n_words:
            raise ValueError(
                f"{type(self).__name__} needs at least n_words={self.n_words} training descriptors to learn "
                f"its vocabulary, got {len(X) if X.ndim == 2 else 0}; lower n_words, use more or larger "
                "training images, or a denser sampling (mode='dense')"
            )
        self.descriptor_dim_ = X.shape[1]
        self.n_fit_descriptors_ = len(X)
        # Single-threaded on purpose: the samples are small (<= max_descriptors x d), so threads gain
        # little, and BLAS / OpenMP threads that spin against other busy processes made GMM and
        # k-means fits 5-40x slower on a shared 2-core machine (measured).
        with one_thread():
            if self.pca is not None:
                if self.pca > min(X.shape):
                    raise ConfigError(
                        f"pca={self.pca} exceeds what the {X.shape[1]}-dimensional descriptors allow "
                        f"(at most min(descriptor dim, samples) = {min(X.shape)}); lower pca or set it to None"
                    )
                pca = PCA(n_components=self.pca, svd_solver=_PCA_SOLVER,
                          random_state=rng.randint(2**31 - 1)).fit(X)
                self.pca_mean_ = pca.mean_.astype(np.float32)
                self.pca_components_ = np.ascontiguousarray(pca.components_.T, dtype=np.float32)  # (d, pca)
                X = self._project(X)
            else:
                self.pca_mean_ = self.pca_components_ = None
            # k-means / GMM fits that stopped at max_iter or found fewer distinct words than asked
            # (ConvergenceWarning): counted here, shown in the report by the extractors that use the encoder.
            self.not_converged_ = 0
            self._fit_vocabulary(X, rng)
        self.n_cells_ = int(sum(level * level for level in self.pyramid_))
        self.n_features_out_ = self.n_cells_ * self.cell_dim_
        return self

    def _project(self, X: np.ndarray) -> np.ndarray:
        if self.pca_components_ is None:
            return np.asarray(X, dtype=np.float32)
        return (np.asarray(X, dtype=np.float32) - self.pca_mean_) @ self.pca_components_

    def _kmeans(self, X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        # One k-means++ start: extra starts cost their full run each and barely change a codebook
        # of many words (VLFeat also runs one).
        km = MiniBatchKMeans(
            n_clusters=self.n_words,
            n_init=1,
            batch_size=2048,
            max_iter=100,
            random_state=rng.randint(2**31 - 1),
        )
        _, bad = count_convergence_warnings(lambda: km.fit(X))
        self.not_converged_ += bad
        return np.ascontiguousarray(km.cluster_centers_, dtype=np.float32)

    # -- encoding -----------------------------------------------------------------
    def transform(
        self,
        descriptors: Sequence[np.ndarray],
        positions: Sequence[np.ndarray] | None = None,
        *,
        raw: bool = False,
    ) -> np.ndarray:
        """Encode each image's descriptors into one vector.

        Parameters
        ----------
        descriptors : list of arrays ``(n_i, d)``
            One array per image; ``n_i`` may be 0 (the image then gets zeros).
        positions : list of arrays ``(n_i, 2)``, optional
            Keypoint ``(x, y)`` in ``[0, 1]``; needed when the pyramid has a level above 1.
        raw : bool, default=False
            Return the unnormalised per-cell statistics (histogram counts, residual sums,
            Fisher gradients) instead of the normalised code; for inspection and tests.

        Returns
        -------
        ndarray ``(len(descriptors), n_features_out_)``, float32
        """
        check_is_fitted(self, "n_features_out_")
        n = len(descriptors)
        counts = np.fromiter((len(d) for d in descriptors), dtype=np.int64, count=n)
        if counts.sum() == 0:
            return np.zeros((n, self.n_features_out_), dtype=np.float32)
        X = np.concatenate([np.asarray(d, dtype=np.float32).reshape(-1, self.descriptor_dim_)
                            for d in descriptors if len(d)])
        X = self._project(X)
        owner = np.repeat(np.arange(n, dtype=np.int64), counts)
        if self.pyramid_ == (1,):
            cells = np.zeros((len(X), 1), dtype=np.int64)
        else:
            if positions is None:
                raise ValueError(f"pyramid={list(self.pyramid_)} needs keypoint positions")
            pos = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, 2)
                                  for p, d in zip(positions, descriptors) if len(d)])
            if len(pos) != len(X):
                raise ValueError(f"got {len(pos)} positions for {len(X)} descriptors")
            cells = pyramid_cells(pos, self.pyramid_)
        # group = (image, cell): one row of statistics per group, one column per descriptor
        groups = owner[:, None] * self.n_cells_ + cells  # (N, levels)
        stats = self._aggregate(X, groups, n * self.n_cells_)  # (n * n_cells, cell_dim)
        stats = stats.reshape(n, self.n_cells_, self.cell_dim_)
        if raw:
            return np.ascontiguousarray(stats.reshape(n, -1), dtype=np.float32)
        out = self._normalise_cells(stats)
        if self.n_cells_ > 1:
            out = _normalise(out.reshape(n, -1), self._final_norm)
        return np.ascontiguousarray(out.reshape(n, -1), dtype=np.float32)

    # -- for subclasses -------------------------------------------------------------
    def _fit_vocabulary(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        raise NotImplementedError

    def _aggregate(self, X: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        raise NotImplementedError

    def _normalise_cells(self, stats: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _nearest(self, X: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Indices and squared distances of the ``k`` nearest words, each ``(N, k)``, nearest first."""
        idx = np.empty((len(X), k), dtype=np.int64)
        dist = np.empty((len(X), k), dtype=np.float32)
        c_sq = np.einsum("ij,ij->i", self.codebook_, self.codebook_)
        for start in range(0, len(X), _BLOCK):
            d = _sq_distances(X[start : start + _BLOCK], self.codebook_, c_sq)
            if k == 1:
                i = np.argmin(d, axis=1)[:, None]
            else:
                i = np.argpartition(d, k - 1, axis=1)[:, :k]
                i = np.take_along_axis(i, np.argsort(np.take_along_axis(d, i, axis=1), axis=1), axis=1)
            idx[start : start + _BLOCK] = i
            dist[start : start + _BLOCK] = np.take_along_axis(d, i, axis=1)
        return idx, dist


def _group_sums(groups: np.ndarray, rows_per_group: int, desc: np.ndarray, sub: np.ndarray,
                weights: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """Weighted sums of ``values`` rows into ``(n_rows, values.shape[1])``, by one sparse product.

    Entry ``e`` adds ``weights[e] * values[desc[e]]`` to row ``groups[desc[e], l] * rows_per_group + sub[e]``
    for every pyramid level ``l``; ``desc`` must be sorted (entries of one descriptor together).
    """
    N, levels = groups.shape
    cols = (groups[desc] * rows_per_group + sub[:, None]).reshape(-1)  # (entries * levels,)
    data = np.repeat(weights, levels)
    indptr = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(np.bincount(desc, minlength=N) * levels, out=indptr[1:])
    by_descriptor = sp.csr_matrix((data, cols, indptr), shape=(N, n_rows))  # rows: descriptors
    return np.asarray(by_descriptor.T @ values)


class BoVW(_Encoder):
    """Bag of visual words: a histogram of descriptors over a k-means codebook.

    Parameters
    ----------
    n_words : int, default=256
        Codebook size ``K`` (MiniBatchKMeans clusters); the cell dimension.
    assignment : {"hard", "soft"}, default="hard"
        ``hard``: each descriptor counts 1 for its nearest word. ``soft`` (kernel
        codebook, localised to the ``soft_k`` nearest words): a descriptor at squared
        distances ``d_j`` from its ``soft_k`` nearest words gives them the weights
        ``exp(-d_j / (2 sigma^2))``, normalised to sum 1 (a softmax over
        ``-d_j / (2 sigma^2)``); ``sigma^2`` is learnt at fit time as the mean squared
        distance of the training sample to its nearest word.
    soft_k : int, default=5
        Words that share a descriptor under soft assignment.
    norm : {"l1", "l2"}, default="l2"
        Norm of the final histogram.
    power : bool, default=False
        Square-root (power) normalisation before ``norm``; with ``norm="l2"`` this maps the
        L1 frequencies to the Hellinger kernel's feature space.
    pca : int or None, default=None
        Project descriptors to this many principal components first.
    pyramid : sequence of int, default=(1,)
        Spatial pyramid grid sizes (see the module docstring).
    max_descriptors : int, default=100_000
        Cap on the random sample the codebook is learnt from.
    random_state : int, RandomState or None, default=0

    References
    ----------
    .. [1] Csurka et al. (2004). Visual categorization with bags of keypoints.
    .. [2] van Gemert et al. (2008). Kernel codebooks for scene categorization.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_Encoder._parameter_constraints,
        "assignment": [StrOptions({"hard", "soft"})],
        "soft_k": [Interval(Integral, 1, None, closed="left")],
        "norm": [StrOptions({"l1", "l2"})],
        "power": ["boolean"],
    }

    def __init__(self, n_words: int = 256, assignment: str = "hard", soft_k: int = 5, norm: str = "l2",
                 power: bool = False, pca: int | None = None, pyramid: Sequence[int] = (1,),
                 max_descriptors: int = 100_000, random_state=0) -> None:
        self.n_words = n_words
        self.assignment = assignment
        self.soft_k = soft_k
        self.norm = norm
        self.power = power
        self.pca = pca
        self.pyramid = pyramid
        self.max_descriptors = max_descriptors
        self.random_state = random_state

    @property
    def _final_norm(self) -> str:  # type: ignore[override]
        return self.norm

    def _fit_vocabulary(self, X, rng) -> None:
        self.codebook_ = self._kmeans(X, rng)
        _, d = self._nearest(X, 1)
        self.sigma2_ = float(max(d.mean(), _EPS))
        self.cell_dim_ = self.n_words

    def _aggregate(self, X, groups, n_groups) -> np.ndarray:
        K = self.n_words
        if self.assignment == "hard":
            words, _ = self._nearest(X, 1)
            weights = np.ones((len(X), 1))
        else:
            k = min(self.soft_k, K)
            words, d = self._nearest(X, k)
            logits = -(d - d[:, :1]).astype(np.float64) / (2.0 * self.sigma2_)
            weights = np.exp(logits)
            weights /= weights.sum(axis=1, keepdims=True)
        levels = groups.shape[1]
        bins = (groups[:, :, None] * K + words[:, None, :]).reshape(-1)
        w = np.broadcast_to(weights[:, None, :], (len(X), levels, words.shape[1])).reshape(-1)
        return np.bincount(bins, weights=w, minlength=n_groups * K).reshape(n_groups, K)

    def _normalise_cells(self, stats) -> np.ndarray:
        if self.power:
            stats = np.sqrt(stats)
        return _normalise(stats, self.norm)


class VLAD(_Encoder):
    """Vector of locally aggregated descriptors: per word, the sum of residuals ``x - c_k``.

    Each descriptor is assigned to its nearest word of a k-means codebook; the cell
    code is the ``K × D`` matrix of residual sums, flattened word by word. It is then
    intra-normalised (each word's residual to unit L2, optional; Arandjelović &
    Zisserman 2013), power-normalised with the signed square root (optional; Jégou
    et al. 2012) and L2-normalised.

    Parameters
    ----------
    n_words : int, default=64
        Codebook size ``K``; the cell dimension is ``K * D`` (``D``: descriptor or PCA dimension).
    intra_norm : bool, default=True
    power : bool, default=True
    pca : int or None, default=None
    pyramid : sequence of int, default=(1,)
    max_descriptors : int, default=100_000
    random_state : int, RandomState or None, default=0

    References
    ----------
    .. [1] Jégou, H., Douze, M., Schmid, C., Pérez, P. (2010). Aggregating local descriptors
           into a compact image representation. CVPR 2010.
    .. [2] Arandjelović, R., Zisserman, A. (2013). All about VLAD. CVPR 2013.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_Encoder._parameter_constraints,
        "intra_norm": ["boolean"],
        "power": ["boolean"],
    }

    def __init__(self, n_words: int = 64, intra_norm: bool = True, power: bool = True, pca: int | None = None,
                 pyramid: Sequence[int] = (1,), max_descriptors: int = 100_000, random_state=0) -> None:
        self.n_words = n_words
        self.intra_norm = intra_norm
        self.power = power
        self.pca = pca
        self.pyramid = pyramid
        self.max_descriptors = max_descriptors
        self.random_state = random_state

    def _fit_vocabulary(self, X, rng) -> None:
        self.codebook_ = self._kmeans(X, rng)
        self.cell_dim_ = self.n_words * X.shape[1]

    def _aggregate(self, X, groups, n_groups) -> np.ndarray:
        K, D = self.codebook_.shape
        words, _ = self._nearest(X, 1)
        residuals = (X - self.codebook_[words[:, 0]]).astype(np.float64)
        desc = np.arange(len(X))
        sums = _group_sums(groups, K, desc, words[:, 0], np.ones(len(X)), residuals, n_groups * K)
        return sums.reshape(n_groups, K * D)

    def _normalise_cells(self, stats) -> np.ndarray:
        n, cells, _ = stats.shape
        K = self.n_words
        if self.intra_norm:
            stats = _normalise(stats.reshape(n, cells, K, -1), "l2").reshape(n, cells, -1)
        if self.power:
            stats = _signed_sqrt(stats)
        return _normalise(stats, "l2")


class FisherVector(_Encoder):
    """Improved Fisher vector over a diagonal Gaussian mixture (Perronnin, Sánchez & Mensink 2010).

    For the descriptors ``x_t`` (``t = 1..T``) of a cell and a GMM with weights
    ``pi_k``, means ``mu_k`` and diagonal variances ``sigma_k^2``, with posteriors
    ``gamma_t(k)`` (those below 1e-4 are dropped, as in VLFeat):

    - ``G_mu_k    = 1 / (T sqrt(pi_k))   * sum_t gamma_t(k) (x_t - mu_k) / sigma_k``
    - ``G_sigma_k = 1 / (T sqrt(2 pi_k)) * sum_t gamma_t(k) [((x_t - mu_k) / sigma_k)^2 - 1]``

    The cell code is ``[G_mu_1 .. G_mu_K, G_sigma_1 .. G_sigma_K]``, dimension ``2 K D``,
    then signed-square-root (power) and L2 normalised ("improved" Fisher vector).
    PCA to 64 dimensions before the GMM is common for SIFT (decorrelated dimensions
    suit the diagonal covariances). Variances are floored at 1e-3 of the mean variance
    of the sample, so constant dimensions (e.g. ORB bits) cannot blow the code up.

    Parameters
    ----------
    n_words : int, default=64
        Gaussian components ``K`` (the GMM starts from a MiniBatchKMeans codebook).
    power : bool, default=True
    pca : int or None, default=None
    pyramid : sequence of int, default=(1,)
    max_descriptors : int, default=100_000
    max_iter : int, default=100
        EM iterations of ``sklearn.mixture.GaussianMixture``.
    random_state : int, RandomState or None, default=0

    References
    ----------
    .. [1] Perronnin, F., Sánchez, J., Mensink, T. (2010). Improving the Fisher kernel for
           large-scale image classification. ECCV 2010.
    .. [2] Sánchez, J., Perronnin, F., Mensink, T., Verbeek, J. (2013). Image classification
           with the Fisher vector: theory and practice. IJCV 105(3).
    """

    _parameter_constraints: ClassVar[dict] = {
        **_Encoder._parameter_constraints,
        "power": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_words: int = 64, power: bool = True, pca: int | None = None,
                 pyramid: Sequence[int] = (1,), max_descriptors: int = 100_000, max_iter: int = 100,
                 random_state=0) -> None:
        self.n_words = n_words
        self.power = power
        self.pca = pca
        self.pyramid = pyramid
        self.max_descriptors = max_descriptors
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit_vocabulary(self, X, rng) -> None:
        floor = 1e-3 * float(X.var(axis=0).mean()) + 1e-9
        centres = self._kmeans(X, rng)
        gmm = GaussianMixture(
            n_components=self.n_words,
            covariance_type="diag",
            reg_covar=floor,
            max_iter=self.max_iter,
            means_init=centres,
            random_state=rng.randint(2**31 - 1),
        )
        _, bad = count_convergence_warnings(lambda: gmm.fit(X))
        self.not_converged_ += bad
        self.means_ = gmm.means_.astype(np.float64)
        self.variances_ = np.maximum(gmm.covariances_, floor).astype(np.float64)
        self.weights_ = np.maximum(gmm.weights_, _EPS).astype(np.float64)
        self.cell_dim_ = 2 * self.n_words * X.shape[1]

    def posteriors(self, X: np.ndarray) -> np.ndarray:
        """Posterior probabilities ``(N, K)`` of the mixture components (no floor applied).

        The log-likelihoods are computed in float32 by two matrix products (relative error about
        1e-6 of the largest term, far below what changes a posterior above the 1e-4 floor).
        """
        check_is_fitted(self, "means_")
        X = np.asarray(X, dtype=np.float32)
        prec = 1.0 / self.variances_  # (K, D)
        const = (np.log(self.weights_) - 0.5 * np.log(self.variances_).sum(axis=1)
                 - 0.5 * (self.means_ ** 2 * prec).sum(axis=1)).astype(np.float32)  # (K,)
        a = (self.means_ * prec).T.astype(np.float32)
        b = (-0.5 * prec).T.astype(np.float32)
        out = np.empty((len(X), self.n_words), dtype=np.float32)
        for start in range(0, len(X), _BLOCK):
            x = X[start : start + _BLOCK]
            log_p = x @ a
            log_p += (x * x) @ b
            log_p += const
            log_p -= log_p.max(axis=1, keepdims=True)
            np.exp(log_p, out=log_p)
            log_p /= log_p.sum(axis=1, keepdims=True)
            out[start : start + _BLOCK] = log_p
        return out

    def _aggregate(self, X, groups, n_groups) -> np.ndarray:
        K, D = self.means_.shape
        gamma = self.posteriors(X)
        desc, comp = np.nonzero(gamma >= _POSTERIOR_FLOOR)  # sorted by descriptor
        X = X.astype(np.float64)
        values = np.concatenate([np.ones((len(X), 1)), X, X * X], axis=1)
        sums = _group_sums(groups, K, desc, comp, gamma[desc, comp], values, n_groups * K)
        sums = sums.reshape(n_groups, K, 1 + 2 * D)
        s0, s1, s2 = sums[:, :, :1], sums[:, :, 1 : 1 + D], sums[:, :, 1 + D :]
        # descriptors per group (all levels of a descriptor count once in each of its groups)
        T = np.bincount(groups.reshape(-1), minlength=n_groups).astype(np.float64).reshape(n_groups, 1, 1)
        T = np.maximum(T, 1.0)
        mu, var, w = self.means_[None], self.variances_[None], self.weights_[None, :, None]
        sigma = np.sqrt(var)
        g_mu = (s1 - s0 * mu) / (sigma * np.sqrt(w) * T)
        g_sigma = ((s2 - 2.0 * mu * s1 + s0 * mu * mu) / var - s0) / (np.sqrt(2.0 * w) * T)
        return np.concatenate([g_mu.reshape(n_groups, -1), g_sigma.reshape(n_groups, -1)], axis=1)

    def _normalise_cells(self, stats) -> np.ndarray:
        if self.power:
            stats = _signed_sqrt(stats)
        return _normalise(stats, "l2")


#: encoder name → class
ENCODERS: dict[str, type[_Encoder]] = {"bovw": BoVW, "vlad": VLAD, "fisher": FisherVector}


def make_encoder(name: str, **params) -> _Encoder:
    """The encoder called ``name`` (``"bovw"``, ``"vlad"`` or ``"fisher"``) with the parameters it accepts.

    Parameters it does not take are ignored, so one set of extractor settings can build any encoder
    (``assignment`` only matters to BoVW, for instance).
    """
    try:
        cls = ENCODERS[name]
    except KeyError:
        raise ConfigError(f"unknown encoding {name!r}; choose one of {', '.join(ENCODERS)}") from None
    accepted = cls._get_param_names()
    return cls(**{k: v for k, v in params.items() if k in accepted})
