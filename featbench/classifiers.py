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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_array, check_is_fitted

from featbench._threads import one_thread
from featbench._warnings import count_convergence_warnings
from featbench.linear_svm import DualPrimalLinearSVC, NewtonLinearSVC
from featbench.registry import register_classifier

__all__ = ["SCALERS", "check_scale", "Classifier", "LinearSVM", "RBFSVM", "LogReg", "WeightedKNN",
           "WeightedKNNClassifier", "DualPrimalLinearSVC", "NewtonLinearSVC", "KernelRBFSVC", "RowSpace", "SearchResult", "search_and_fit", "take_fit_spans", "fit_with_search", "fit_with_c_search"]

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
    #: True for an L2-regularised linear model whose weights lie in the span of the training rows (the
    #: representer theorem): with more features than training images it is fitted on the images'
    #: coordinates in that span (:class:`RowSpace`), the same model at a fraction of the cost.
    row_space: ClassVar[bool] = False

    @classmethod
    def default_grid(cls) -> tuple:
        """The grid searched when the experiment gives none (``default_C`` for ``C``)."""
        return tuple(cls.default_C)

    def estimator(self, random_state: int) -> ClassifierMixin:
        """The final estimator; it must take the parameter named by ``param``."""
        raise NotImplementedError

    def fit_grid(self, estimator: ClassifierMixin, X: np.ndarray, y: np.ndarray,
                 values: Sequence) -> list[tuple[ClassifierMixin, bool]]:
        """``estimator`` fitted on ``(X, y)`` once for each value of the searched parameter, in the grid's
        order, each with whether it did not converge. Override it to share work along the grid (warm starts,
        a Gram matrix computed once); the models must be those of fitting each value alone."""
        out = []
        for value in values:
            out.append(_fit_counted(clone(estimator).set_params(**{self.param: value}), X, y))
        return out

    def refit_params(self, X: np.ndarray, folds: list[tuple[Any, Any]], prepare: Any) -> dict:
        """Fit parameters of the final pipeline (``{"clf__<name>": value}``) drawn from the inner folds'
        models at the chosen value (``folds``: each fold's fitted scaling steps and estimator; ``prepare``:
        the final pipeline's, fitted on ``X``), such as a solver's starting point; they must not change the
        model. None by default."""
        return {}

    def pipeline(self, random_state: int = 0, scale: str = "standard") -> Pipeline:
        """Scaling, then (``row_space``) :class:`RowSpace`, then :meth:`estimator`; step names ``scale``,
        ``span`` and ``clf``.

        ``scale`` is ``"standard"`` (:class:`~sklearn.preprocessing.StandardScaler`) or
        ``"none"`` (features used as they are).
        """
        scaler = StandardScaler() if check_scale(scale) == "standard" else "passthrough"
        span = RowSpace() if self.row_space else "passthrough"
        return Pipeline([("scale", scaler), ("span", span), ("clf", self.estimator(random_state))])


class RowSpace(TransformerMixin, BaseEstimator):
    """Coordinates of the rows in an orthonormal basis of the span of the training rows, when there are
    more features than training rows; otherwise the rows as they are.

    For a linear model whose loss depends on the data only through ``X @ w`` and whose penalty is
    ``||w||²`` (linear SVM, L2 logistic regression), the fitted ``w`` lies in the span of the training
    rows (the representer theorem [1]_; also every gradient and every dual update of their solvers does),
    so fitting on ``Z = X Q``, ``Q`` an orthonormal basis of that span, gives the same model: ``Z Zᵀ =
    X Xᵀ``, the same dual problem, and ``x · w = (x Q) · w_Z`` for any ``x``. With ``d`` features and
    ``n < d`` training rows every solver pass costs ``n`` instead of ``d`` per row. ``Q`` comes from a QR
    decomposition of ``Xᵀ`` (Householder, backward stable), so no small singular value is cut.

    References
    ----------
    .. [1] Schölkopf, B., Herbrich, R., Smola, A. J. (2001). A generalized representer theorem. COLT 2001,
           LNCS 2111, 416-426.
    """

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> RowSpace:
        """Find the basis (``components_``, ``(n, d)``) when ``n < d``; ``None`` otherwise."""
        X = np.asarray(X)
        n, d = X.shape
        self.n_features_in_ = d
        self.components_ = None
        if n < d:
            q = np.linalg.qr(np.asarray(X, dtype=np.float64).T, mode="reduced")[0]
            self.components_ = np.ascontiguousarray(q.T)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``X @ components_.T`` (float64), or ``X`` itself when there was no reduction."""
        check_is_fitted(self, "n_features_in_")
        if self.components_ is None:
            return X
        return np.asarray(X, dtype=np.float64) @ self.components_.T


@register_classifier("linear-svm")
class LinearSVM(Classifier):
    description = "standardise → linear SVM (LinearSVC's squared hinge, solved exactly by finite Newton)"
    default_C = (0.001, 0.01, 0.1, 1.0)

    def estimator(self, random_state: int) -> ClassifierMixin:
        # the exact optimum of LinearSVC's problem; past 2048 unknowns, LIBLINEAR's dual (tol 1e-3)
        return NewtonLinearSVC(random_state=random_state)

    def refit_params(self, X: np.ndarray, folds: list[tuple[Any, Any]], prepare: Any) -> dict:
        """Newton's method on all the training images starts from the folds' models at the chosen C, averaged
        and carried into the final pipeline's scaling (``prepare``, fitted on ``X``): the same optimum, in
        fewer steps."""
        if not folds or not all(isinstance(est, NewtonLinearSVC) for _, est in folds):
            return {}
        if not all(step in ("passthrough", None) or isinstance(step, StandardScaler)
                   for _, step in prepare.steps):
            return {}  # only per-feature affine scalings are carried over (O(d), no d x d matrix)
        # each fold's decision function in the final scaled features z: scalings act feature by feature, so
        # reading them at z = 0 and z = 1 gives their slope and offset per feature
        ends = prepare.inverse_transform(np.vstack([np.zeros(X.shape[1]), np.ones(X.shape[1])]))
        coef = intercept = 0.0
        for prep, est in folds:
            t0, t1 = np.asarray(prep.transform(ends), dtype=np.float64)
            coef = coef + est.coef_ * (t1 - t0)
            intercept = intercept + est.intercept_ + est.coef_ @ t0
        return {"clf__initial_coef": (coef / len(folds), intercept / len(folds))}

    def fit_grid(self, estimator: ClassifierMixin, X: np.ndarray, y: np.ndarray,
                 values: Sequence[float]) -> list[tuple[ClassifierMixin, bool]]:
        """The C path with warm starts (:meth:`NewtonLinearSVC.fit_path`)."""
        if not isinstance(estimator, NewtonLinearSVC):  # a subclass with another estimator
            return super().fit_grid(estimator, X, y, values)
        fitted, _ = count_convergence_warnings(lambda: estimator.fit_path(X, y, values))
        return [(est, est.n_stalled_ > 0) for est in fitted]


@register_classifier("rbf-svm")
class RBFSVM(Classifier):
    description = "standardise → RBF-kernel SVM (libsvm, gamma='scale')"
    family = "kernel"
    default_C = (1.0, 10.0, 100.0)

    def estimator(self, random_state: int) -> ClassifierMixin:
        return KernelRBFSVC(random_state=random_state)

    def fit_grid(self, estimator: ClassifierMixin, X: np.ndarray, y: np.ndarray,
                 values: Sequence[float]) -> list[tuple[ClassifierMixin, bool]]:
        """The kernel matrix computed once for every C (:meth:`KernelRBFSVC.fit_path`)."""
        if not isinstance(estimator, KernelRBFSVC):  # a subclass with another estimator
            return super().fit_grid(estimator, X, y, values)
        fitted, bad = count_convergence_warnings(lambda: estimator.fit_path(X, y, values))
        return [(est, bad > 0) for est in fitted]  # libsvm has no iteration limit here (max_iter=-1): bad is 0


class KernelRBFSVC(ClassifierMixin, BaseEstimator):
    """``SVC(kernel="rbf", gamma="scale")`` fitted on a kernel matrix computed with BLAS.

    libsvm evaluates the RBF kernel one pair of rows at a time, ``d`` multiply-adds each, in a plain loop;
    :func:`~sklearn.metrics.pairwise.rbf_kernel` computes the whole matrix with one matrix product, the
    same formula (``||x||² + ||y||² - 2 x·y``, float64), and :class:`~sklearn.svm.SVC` then solves the
    same problem on it (``kernel="precomputed"``) [1]_. With hundreds of features or more, that is several
    times faster. ``gamma="scale"`` is ``1 / (d · X.var())`` of the training features, as in SVC.

    Parameters
    ----------
    C : float, default=1.0
        Regularisation, as in :class:`~sklearn.svm.SVC`.
    gamma : "scale" or float, default="scale"
        Kernel width, as in :class:`~sklearn.svm.SVC`.
    random_state : int, optional
        Passed to :class:`~sklearn.svm.SVC`.

    References
    ----------
    .. [1] Chang, C.-C., Lin, C.-J. (2011). LIBSVM: a library for support vector machines. ACM TIST 2(3), 27.
    """

    def __init__(self, C: float = 1.0, gamma: str | float = "scale", random_state: int | None = None) -> None:
        self.C = C
        self.gamma = gamma
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> KernelRBFSVC:
        """Fit the SVM on the training kernel matrix; keep the support vectors."""
        return self.fit_path(X, y, [self.C], _into=self)[0]

    def fit_path(self, X: np.ndarray, y: np.ndarray, Cs: Sequence[float], *,
                 _into: KernelRBFSVC | None = None) -> list[KernelRBFSVC]:
        """One fitted copy for each ``C`` in ``Cs``, on one kernel matrix (it does not depend on ``C``): the
        models of :meth:`fit`, each."""
        X = check_array(X, dtype=np.float64)
        if self.gamma == "scale":
            var = X.var()
            gamma = 1.0 / (X.shape[1] * var) if var != 0 else 1.0
        else:
            gamma = float(self.gamma)
        K = rbf_kernel(X, X, gamma=gamma)
        out = []
        for C in Cs:
            est = _into if _into is not None else clone(self).set_params(C=C)
            est.gamma_ = gamma
            est.svc_ = SVC(C=C, kernel="precomputed", random_state=self.random_state).fit(K, y)
            est.classes_ = est.svc_.classes_
            est.n_features_in_ = X.shape[1]
            est.n_fit_ = len(X)
            est.support_vectors_ = X[est.svc_.support_]
            out.append(est)
        return out

    def _kernel(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "svc_")
        X = check_array(X, dtype=np.float64)
        K = np.zeros((len(X), self.n_fit_))  # only the support vectors' columns are read
        K[:, self.svc_.support_] = rbf_kernel(X, self.support_vectors_, gamma=self.gamma_)
        return K

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """As :meth:`sklearn.svm.SVC.decision_function`."""
        return self.svc_.decision_function(self._kernel(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """As :meth:`sklearn.svm.SVC.predict`."""
        return self.svc_.predict(self._kernel(X))


@register_classifier("logreg")
class LogReg(Classifier):
    description = "standardise → multinomial logistic regression (lbfgs)"
    default_C = (0.01, 0.1, 1.0, 10.0)
    # no RowSpace: L-BFGS stops on the largest gradient component, which a rotation of the features changes

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


@dataclass
class SearchResult:
    """What :func:`search_and_fit` did: the refitted pipeline, the chosen value and how the fits went.

    Attributes
    ----------
    model : Pipeline
        Scaling + classifier refitted on all the data with ``chosen``.
    chosen : float or int
        The value of the searched parameter with the best mean inner-CV accuracy (the first such in the
        grid's order on a tie, as :class:`~sklearn.model_selection.GridSearchCV`).
    scores : dict
        Mean inner-CV accuracy of every grid value (empty when no search ran).
    n_fits : int
        Classifier fits run (folds × grid values, + the refit).
    not_converged : int
        Fits that raised a :class:`~sklearn.exceptions.ConvergenceWarning` (stopped at their iteration limit).
    """

    model: Pipeline
    chosen: float | int
    scores: dict = field(default_factory=dict)
    n_fits: int = 0
    not_converged: int = 0


#: Wall-clock (``time.time()``) start and end of every :func:`search_and_fit` run in this process since the
#: last :func:`take_fit_spans`: the runner merges them over its workers into the time the classifier stage
#: took (``run.json`` ``stages.classifier_fit_wall_s``).
_FIT_SPANS: list[tuple[float, float]] = []


def take_fit_spans() -> list[tuple[float, float]]:
    """The spans recorded since the last call (and forget them)."""
    spans = list(_FIT_SPANS)
    _FIT_SPANS.clear()
    return spans


def _validate_all(estimator: Any) -> None:
    """scikit-learn's parameter check (``_validate_params``) of ``estimator`` and of every estimator nested in it
    (pipeline steps, wrapped estimators): an ``InvalidParameterError`` naming the parameter."""
    objects = [estimator] + [v for v in estimator.get_params(deep=True).values() if isinstance(v, BaseEstimator)]
    for obj in objects:
        if hasattr(obj, "_parameter_constraints"):
            obj._validate_params()


def _fit_counted(estimator, X: np.ndarray, y: np.ndarray, **fit_params: Any) -> tuple[Any, bool]:
    """``estimator.fit(X, y)``, and whether it warned that it had not converged (counted, not shown: the
    caller reports the count)."""
    fitted, bad = count_convergence_warnings(lambda: estimator.fit(X, y, **fit_params))
    return fitted, bad > 0


def search_and_fit(
    clf: Classifier,
    X: np.ndarray,
    y: np.ndarray,
    grid: Sequence[float],
    *,
    inner_folds: int = 3,
    random_state: int = 0,
    scale: str = "standard",
) -> SearchResult:
    """Fit ``clf`` on ``(X, y)``, choosing its parameter (``clf.param``: C, k) by inner stratified k-fold CV
    on this data only, and count the fits that did not converge.

    The same search as :class:`~sklearn.model_selection.GridSearchCV` over :meth:`Classifier.pipeline`
    (``StratifiedKFold(folds, shuffle=True, random_state)``, accuracy, ties to the first value of the grid,
    refit on all the data), with the steps before the classifier (scaling, :class:`RowSpace`) fitted once
    per fold instead of once per fold and value: they do not depend on the searched parameter. With a single value, or fewer
    than two samples per class, no search is run.
    """
    started = time.time()
    grid = [int(v) for v in grid] if clf.param_kind == "int" else [float(v) for v in grid]
    X = check_array(X, dtype="numeric", ensure_all_finite=False)  # object arrays become float64 here
    if not np.isfinite(X).all():
        raise ValueError(f"features contain {int((~np.isfinite(X)).sum()):,} non-finite values (NaN or inf); "
                         "a classifier needs finite features")
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    folds = int(min(inner_folds, counts.min()))
    pipe = clf.pipeline(random_state, scale)
    prepare, estimator = pipe[:-1], pipe.steps[-1][1]  # scaling (and row space): fitted once per fold
    key = f"{pipe.steps[-1][0]}__{clf.param}"
    for value in grid:  # every step's parameters (nested estimators too) are checked here, once, not at each fit
        _validate_all(clone(pipe).set_params(**{key: value}))
    n_fits = not_converged = 0
    scores: dict = {}
    # BLAS/OpenMP thread pools make these small fits much slower, not faster (spin-waiting, and
    # oversubscription beside other workers): one thread per fit; cells run in parallel instead. The data
    # (numeric and finite, checked above) and the parameters (checked above) are not validated again at each of
    # the fits and predictions: on small training sets that validation costs as much as the fits.
    with one_thread(), config_context(assume_finite=True, skip_parameter_validation=True):
        if len(grid) > 1 and folds >= 2:
            fold_scores = np.zeros((len(grid), folds))
            cv = StratifiedKFold(folds, shuffle=True, random_state=random_state)
            fold_models: list = []
            # the folds' models are kept (for refit_params) only by a classifier that uses them
            keep_models = type(clf).refit_params is not Classifier.refit_params
            for f, (tr, va) in enumerate(cv.split(X, y)):
                fitted = clone(prepare).fit(X[tr], y[tr])
                X_tr, X_va = fitted.transform(X[tr]), fitted.transform(X[va])
                models = []
                for i, (est, bad) in enumerate(clf.fit_grid(estimator, X_tr, y[tr], grid)):
                    n_fits += 1
                    not_converged += bad
                    fold_scores[i, f] = np.mean(est.predict(X_va) == y[va])  # accuracy
                    models.append(est if keep_models else None)
                fold_models.append((fitted, models))
            mean = fold_scores.mean(axis=1)
            best = int(np.flatnonzero(mean == mean.max())[0])
            chosen = grid[best]
            scores = {v: float(m) for v, m in zip(grid, mean)}
            params = clf.refit_params(X, [(prep, models[best]) for prep, models in fold_models],
                                      clone(prepare).fit(X, y)) if keep_models else {}
        else:
            chosen, params = grid[0], {}
        pipe.set_params(**{key: chosen})
        model, bad = _fit_counted(pipe, X, y, **params)
    _FIT_SPANS.append((started, time.time()))
    return SearchResult(model, chosen, scores, n_fits + 1, not_converged + bad)


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
    """The refitted pipeline and the chosen value of :func:`search_and_fit`."""
    result = search_and_fit(clf, X, y, grid, inner_folds=inner_folds, random_state=random_state, scale=scale)
    return result.model, result.chosen


#: The name :func:`fit_with_search` had when every classifier searched ``C``.
fit_with_c_search = fit_with_search
