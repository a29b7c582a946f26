"""Named classifier pipelines (scaler → linear SVM / RBF SVM / logistic regression / weighted kNN) and the
grid of the parameter each searches (``C``, or ``k`` for the kNN).

Features are standardised (zero mean, unit variance per dimension, fitted on the
training part) unless the experiment says ``scale = "none"``: histogram features
that are already normalised (HOG, bag of words), especially after a square root
(Hellinger kernel), often do better with the RBF kernel on their own scale, since
standardising inflates the weight of nearly constant dimensions.

The searched parameter (the regularisation strength ``C``, the kNN's ``k``) is
chosen by an inner stratified cross-validation on the training part only
(:func:`fit_with_search`); the test part is never seen until prediction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from featbench.registry import register_classifier

__all__ = ["SCALERS", "check_scale", "Classifier", "LinearSVM", "RBFSVM", "LogReg", "WeightedKNN",
           "WeightedKNNClassifier", "fit_with_search", "fit_with_c_search"]

#: Accepted values of a classifier's ``scale`` key: what is done to the features before the classifier.
SCALERS = ("standard", "none")


def check_scale(scale: object) -> str:
    """``scale`` if it is one of :data:`SCALERS`, else a ``ValueError`` naming the accepted values."""
    if scale not in SCALERS:
        raise ValueError(f"scale must be one of {', '.join(map(repr, SCALERS))}, got {scale!r}")
    return scale  # type: ignore[return-value]


class Classifier:
    """A named classifier: how to build its pipeline, the parameter it searches and its default grid.

    Subclass it, set ``description`` and ``default_C`` (or ``param`` and ``default_grid`` for a parameter
    other than ``C``), implement :meth:`estimator`, and register it with :func:`featbench.register_classifier`.
    """

    description: ClassVar[str] = ""
    family: ClassVar[str] = "linear"
    #: The estimator's parameter searched by inner cross-validation, and the key of its grid in the experiment.
    param: ClassVar[str] = "C"
    #: ``"real"`` (positive numbers, like C) or ``"int"`` (positive integers, like k).
    param_kind: ClassVar[str] = "real"
    default_C: ClassVar[tuple[float, ...]] = (0.01, 0.1, 1.0, 10.0, 100.0)
    #: What is done to the features first when the experiment does not say (``scale``).
    default_scale: ClassVar[str] = "standard"

    @classmethod
    def default_grid(cls) -> tuple:
        """The grid searched when the experiment gives none (``default_C`` for ``C``)."""
        return tuple(cls.default_C)

    def estimator(self, random_state: int) -> ClassifierMixin:
        """The final estimator; it must take the parameter named by ``param``."""
        raise NotImplementedError

    def pipeline(self, random_state: int = 0, scale: str = "standard") -> Pipeline:
        """Scaling followed by :meth:`estimator`, step names ``scale`` and ``clf``.

        ``scale`` is ``"standard"`` (:class:`~sklearn.preprocessing.StandardScaler`) or
        ``"none"`` (features used as they are).
        """
        scaler = StandardScaler() if check_scale(scale) == "standard" else "passthrough"
        return Pipeline([("scale", scaler), ("clf", self.estimator(random_state))])


@register_classifier("linear-svm")
class LinearSVM(Classifier):
    description = "standardise → linear SVM (liblinear dual, squared hinge)"
    default_C = (0.001, 0.01, 0.1, 1.0)

    def estimator(self, random_state: int) -> ClassifierMixin:
        # The dual solver converges much faster than the primal one at large C on standardised features.
        return LinearSVC(dual=True, max_iter=2000, random_state=random_state)


@register_classifier("rbf-svm")
class RBFSVM(Classifier):
    description = "standardise → RBF-kernel SVM (libsvm, gamma='scale')"
    family = "kernel"
    default_C = (1.0, 10.0, 100.0)

    def estimator(self, random_state: int) -> ClassifierMixin:
        return SVC(kernel="rbf", gamma="scale", random_state=random_state)


@register_classifier("logreg")
class LogReg(Classifier):
    description = "standardise → multinomial logistic regression (lbfgs)"
    default_C = (0.01, 0.1, 1.0, 10.0)

    def estimator(self, random_state: int) -> ClassifierMixin:
        return LogisticRegression(max_iter=2000, random_state=random_state)


class WeightedKNNClassifier(ClassifierMixin, BaseEstimator):
    """Weighted k-nearest neighbours on cosine similarity, as the k-NN probe of Caron et al. [1]_.

    Features are L2-normalised; each of the ``k`` training images most similar to a test image
    votes for its class with weight ``exp(similarity / temperature)``; the class with the largest
    total wins (ties: the smaller class index). A zero vector has similarity 0 to everything.

    Parameters
    ----------
    k : int, default=20
        Number of neighbours that vote (capped at the number of training images).
    temperature : float, default=0.07
        ``T`` of the vote weights ``exp(sim / T)``.
    chunk_size : int, default=1024
        Test images compared with the training set at a time (memory: ``chunk_size × n_train`` floats).

    References
    ----------
    .. [1] Caron, M., Touvron, H., Misra, I., Jégou, H., Mairal, J., Bojanowski, P., Joulin, A. (2021).
           Emerging properties in self-supervised vision transformers. ICCV 2021 (DINO), section 4.1 and
           its code's ``knn_classifier``. Also Wu, Z. et al. (2018), Unsupervised feature learning via
           non-parametric instance discrimination, CVPR 2018.
    """

    def __init__(self, k: int = 20, temperature: float = 0.07, chunk_size: int = 1024) -> None:
        self.k = k
        self.temperature = temperature
        self.chunk_size = chunk_size

    def fit(self, X: np.ndarray, y: np.ndarray) -> WeightedKNNClassifier:
        """Store the L2-normalised training features and their labels."""
        if not (isinstance(self.k, (int, np.integer)) and self.k >= 1):
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature!r}")
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        self._y = self._encoder.transform(y)
        self._X = _l2_normalise(np.asarray(X, dtype=np.float32))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Vote shares of each class (rows sum to 1)."""
        check_is_fitted(self, "classes_")
        X = _l2_normalise(np.asarray(X, dtype=np.float32))
        k = min(int(self.k), len(self._X))
        n_classes = len(self.classes_)
        out = np.zeros((len(X), n_classes), dtype=np.float64)
        for start in range(0, len(X), self.chunk_size):
            sim = X[start:start + self.chunk_size] @ self._X.T
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            top_sim = np.take_along_axis(sim, top, axis=1).astype(np.float64)
            weights = np.exp(top_sim / self.temperature)
            votes = out[start:start + self.chunk_size]
            rows = np.repeat(np.arange(len(top)), k)
            np.add.at(votes, (rows, self._y[top].ravel()), weights.ravel())
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class with the largest weighted vote."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _l2_normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0).astype(X.dtype)


@register_classifier("knn")
class WeightedKNN(Classifier):
    description = "weighted k-NN on cosine similarity, votes exp(sim / 0.07) (DINO's k-NN probe)"
    family = "neighbours"
    param = "k"
    param_kind = "int"
    default_scale = "none"  # DINO's protocol: L2-normalised features, nothing else

    @classmethod
    def default_grid(cls) -> tuple:
        return (10, 20)

    def estimator(self, random_state: int) -> ClassifierMixin:
        return WeightedKNNClassifier()


def fit_with_search(
    clf: Classifier,
    X: np.ndarray,
    y: np.ndarray,
    grid: Sequence[float],
    *,
    inner_folds: int = 3,
    random_state: int = 0,
    scale: str = "standard",
) -> tuple[Pipeline, float]:
    """Fit ``clf`` on ``(X, y)``, choosing its parameter (``clf.param``: C, k) by inner stratified k-fold CV
    on this data only.

    Returns the refitted pipeline and the chosen value. With a single value, or fewer
    than two samples per class for a split, no search is run. ``scale`` is passed to
    :meth:`Classifier.pipeline`.
    """
    key = f"clf__{clf.param}"
    grid = [int(v) for v in grid] if clf.param_kind == "int" else [float(v) for v in grid]
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    folds = int(min(inner_folds, counts.min()))
    pipe = clf.pipeline(random_state, scale)
    # BLAS/OpenMP thread pools make these small fits much slower, not faster (spin-waiting, and
    # oversubscription beside extraction workers): one thread per fit.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(grid) == 1 or folds < 2:
            pipe.set_params(**{key: grid[0]})
            return pipe.fit(X, y), grid[0]
        search = GridSearchCV(
            pipe,
            {key: grid},
            cv=StratifiedKFold(folds, shuffle=True, random_state=random_state),
            scoring="accuracy",
            n_jobs=1,
            refit=True,
        )
        search.fit(X, y)
    best = search.best_params_[key]
    return search.best_estimator_, (int(best) if clf.param_kind == "int" else float(best))


#: The name :func:`fit_with_search` had when every classifier searched ``C``.
fit_with_c_search = fit_with_search
