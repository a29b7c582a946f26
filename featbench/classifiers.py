"""Named classifier pipelines (scaler → linear SVM / RBF SVM / logistic regression) and their C grids.

Features are standardised (zero mean, unit variance per dimension, fitted on the
training part) unless the experiment says ``scale = "none"``: histogram features
that are already normalised (HOG, bag of words), especially after a square root
(Hellinger kernel), often do better with the RBF kernel on their own scale, since
standardising inflates the weight of nearly constant dimensions.

The regularisation strength ``C`` is chosen by an inner stratified
cross-validation on the training part only (:func:`fit_with_c_search`); the test
part is never seen until prediction.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from threadpoolctl import threadpool_limits

from featbench.registry import register_classifier

__all__ = ["SCALERS", "check_scale", "Classifier", "LinearSVM", "RBFSVM", "LogReg", "fit_with_c_search"]

#: Accepted values of a classifier's ``scale`` key: what is done to the features before the classifier.
SCALERS = ("standard", "none")


def check_scale(scale: object) -> str:
    """``scale`` if it is one of :data:`SCALERS`, else a ``ValueError`` naming the accepted values."""
    if scale not in SCALERS:
        raise ValueError(f"scale must be one of {', '.join(map(repr, SCALERS))}, got {scale!r}")
    return scale  # type: ignore[return-value]


class Classifier:
    """A named classifier: how to build its pipeline and the default C grid.

    Subclass it, set ``description`` and ``default_C``, implement :meth:`estimator`,
    and register it with :func:`featbench.register_classifier`.
    """

    description: ClassVar[str] = ""
    family: ClassVar[str] = "linear"
    default_C: ClassVar[tuple[float, ...]] = (0.01, 0.1, 1.0, 10.0, 100.0)

    def estimator(self, random_state: int) -> ClassifierMixin:
        """The final estimator; it must take a ``C`` parameter."""
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


def fit_with_c_search(
    clf: Classifier,
    X: np.ndarray,
    y: np.ndarray,
    C_grid: Sequence[float],
    *,
    inner_folds: int = 3,
    random_state: int = 0,
    scale: str = "standard",
) -> tuple[Pipeline, float]:
    """Fit ``clf`` on ``(X, y)``, choosing C by inner stratified k-fold CV on this data only.

    Returns the refitted pipeline and the chosen C. With a single C, or fewer than
    two samples per class for a split, no search is run. ``scale`` is passed to
    :meth:`Classifier.pipeline`.
    """
    grid = [float(c) for c in C_grid]
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    folds = int(min(inner_folds, counts.min()))
    pipe = clf.pipeline(random_state, scale)
    # BLAS/OpenMP thread pools make these small fits much slower, not faster (spin-waiting, and
    # oversubscription beside extraction workers): one thread per fit.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(grid) == 1 or folds < 2:
            pipe.set_params(clf__C=grid[0])
            return pipe.fit(X, y), grid[0]
        search = GridSearchCV(
            pipe,
            {"clf__C": grid},
            cv=StratifiedKFold(folds, shuffle=True, random_state=random_state),
            scoring="accuracy",
            n_jobs=1,
            refit=True,
        )
        search.fit(X, y)
    return search.best_estimator_, float(search.best_params_["clf__C"])
