"""The classifier stage's shortcuts give the models of the textbook pipelines they replace.

- :func:`search_and_fit` is ``GridSearchCV`` over :meth:`Classifier.pipeline` (same folds, scores, choice
  and refit) with the scaler fitted once per fold;
- :class:`RowSpace` (linear models fitted in the span of the training rows when d > n) gives the same
  decision function as fitting on the features themselves;
- :class:`KernelRBFSVC` (libsvm on a BLAS kernel matrix) gives the model of ``SVC(kernel="rbf")``;
- the linear SVM's warm-started C path (:meth:`Classifier.fit_grid`) gives the models of fitting each C alone
  (its solver against LinearSVC: ``tests/test_linear_svm.py``);
- :class:`DualPrimalLinearSVC` converges where the dual solver alone stops at ``max_iter``, and a fit that
  does not converge is counted, not hidden.

Floating-point tolerances: the shortcuts sum the same products in another order (BLAS blocking, a
rotation of the features), so decision values agree to ~1e-6 of their scale, not bit for bit; predictions
are compared exactly on data without near-ties at that scale.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC, LinearSVC

from featbench._memory import PeakMemory
from featbench.classifiers import (
    RBFSVM,
    DualPrimalLinearSVC,
    KernelRBFSVC,
    LinearSVM,
    LogReg,
    RowSpace,
    WeightedKNN,
    search_and_fit,
)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))[:400]
    return X[idx].astype(np.float32), y[idx]


def _wide(digits, d: int = 600):
    """More features than training rows (400): random ReLU features of the digits, as a random CNN gives."""
    X, y = digits
    W = np.random.default_rng(1).standard_normal((X.shape[1], d)).astype(np.float32)
    return np.maximum(X @ W, 0) / 100, y


@pytest.mark.parametrize("clf", [LinearSVM(), RBFSVM(), LogReg(), WeightedKNN()], ids=lambda c: type(c).__name__)
def test_search_is_gridsearchcv_over_the_pipeline(digits, clf):
    X, y = digits
    X_tr, y_tr, X_te = X[:300], y[:300], X[300:]
    grid = list(clf.default_grid())
    result = search_and_fit(clf, X_tr, y_tr, grid, inner_folds=3, random_state=0, scale=clf.default_scale)
    pipe = clf.pipeline(0, clf.default_scale)
    ref = GridSearchCV(pipe, {f"clf__{clf.param}": grid}, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                       scoring="accuracy", n_jobs=1).fit(X_tr, y_tr)
    assert result.chosen == ref.best_params_[f"clf__{clf.param}"]
    np.testing.assert_allclose(list(result.scores.values()), ref.cv_results_["mean_test_score"], atol=1e-12)
    np.testing.assert_array_equal(result.model.predict(X_te), ref.best_estimator_.predict(X_te))
    assert result.n_fits == 3 * len(grid) + 1
    assert result.not_converged == 0


def test_row_space_gives_the_same_linear_models(digits):
    X, y = _wide(digits)
    X_tr, y_tr, X_te = X[:400], y[:400], X
    span = RowSpace().fit(X_tr)
    assert span.components_.shape == (400, X.shape[1])
    np.testing.assert_allclose(span.components_ @ span.components_.T, np.eye(400), atol=1e-10)
    np.testing.assert_allclose(span.transform(X_tr) @ span.transform(X_tr).T, X_tr.astype(np.float64) @ X_tr.T,
                               rtol=1e-9, atol=1e-9 * float(np.abs(X_tr).max()) ** 2 * X.shape[1])
    for est in (LinearSVC(C=0.01, tol=1e-6, max_iter=20000, random_state=0),):
        direct = LinearSVC(**est.get_params()).fit(X_tr, y_tr)
        reduced = LinearSVC(**est.get_params()).fit(span.transform(X_tr), y_tr)
        a, b = direct.decision_function(X_te), reduced.decision_function(span.transform(X_te))
        np.testing.assert_allclose(a, b, atol=1e-3 * np.abs(a).max())  # two solvers' tolerances apart
        assert (direct.predict(X_te) == reduced.predict(span.transform(X_te))).mean() >= 0.995
    narrow = RowSpace().fit(X_tr[:, :50])
    assert narrow.components_ is None and narrow.transform(X_tr[:, :50]) is not None


def test_row_space_changes_no_prediction_of_a_linear_svm(digits):
    """A classifier that asks for the row-space step (``row_space = True``, here LIBLINEAR's LinearSVC) and the
    same classifier without it: the same C and the same test predictions."""
    X, y = _wide(digits)
    X_tr, y_tr, X_te = X[:300], y[:300], X[300:]

    class Spanned(LinearSVM):
        row_space = True

        def estimator(self, random_state):
            return LinearSVC(tol=1e-6, max_iter=20000, random_state=random_state)

    class Plain(Spanned):
        row_space = False

    with_span = search_and_fit(Spanned(), X_tr, y_tr, LinearSVM.default_C)
    without = search_and_fit(Plain(), X_tr, y_tr, LinearSVM.default_C)
    assert with_span.model.named_steps["span"].components_ is not None
    assert with_span.chosen == without.chosen
    np.testing.assert_array_equal(with_span.model.predict(X_te), without.model.predict(X_te))


def test_kernel_rbf_svc_is_svc_rbf(digits):
    X, y = digits
    X_tr, y_tr, X_te = X[:300] / 16, y[:300], X[300:] / 16
    for C in (1.0, 10.0):
        ours = KernelRBFSVC(C=C).fit(X_tr, y_tr)
        ref = SVC(C=C, kernel="rbf", gamma="scale").fit(X_tr, y_tr)
        assert ours.gamma_ == pytest.approx(ref._gamma, rel=1e-12)
        np.testing.assert_array_equal(ours.svc_.support_, ref.support_)
        a, b = ours.decision_function(X_te), ref.decision_function(X_te)
        np.testing.assert_allclose(a, b, atol=1e-6 * np.abs(b).max())
        np.testing.assert_array_equal(ours.predict(X_te), ref.predict(X_te))


def test_dual_solver_that_stalls_is_replaced_by_the_primal(digits):
    X, y = digits
    X = (X - X.mean(0)) / (X.std(0) + 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # nothing may leak: the stalled dual fit is redone
        model = DualPrimalLinearSVC(dual=True, C=1.0, max_iter=500, random_state=0).fit(X, y)  # dual: 885 iterations
    assert model.solver_ == "primal" and model.dual is True
    ref = LinearSVC(dual=False, C=1.0, max_iter=500, random_state=0).fit(X, y)  # primal: 281
    np.testing.assert_array_equal(model.coef_, ref.coef_)
    fast = DualPrimalLinearSVC(dual=True, C=0.001, max_iter=2000, random_state=0).fit(X, y)
    assert fast.solver_ == "dual"


def test_fits_that_do_not_converge_are_counted(digits):
    X, y = digits

    class Starved(LogReg):
        def estimator(self, random_state):
            return super().estimator(random_state).set_params(max_iter=2)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # counted, not shown
        result = search_and_fit(Starved(), X[:300], y[:300], [0.1, 1.0])
    assert result.n_fits == 3 * 2 + 1
    assert result.not_converged == result.n_fits


def test_peak_memory_is_the_peak_of_the_block():
    with PeakMemory() as before:
        pass
    with PeakMemory() as big:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    with PeakMemory() as after:
        pass
    if big.lifetime:
        pytest.skip("this system cannot reset a process's peak memory (no /proc/self/clear_refs)")
    assert big.mb >= before.mb + 60
    assert after.mb < big.mb - 40  # the reset forgot the earlier peak


def test_search_refuses_non_finite_features(digits):
    X, y = digits
    X = X[:300].copy()
    X[5, 3] = np.nan
    X[7, 1] = np.inf
    with pytest.raises(ValueError, match="2 non-finite values"):
        search_and_fit(LogReg(), X, y[:300], [0.1, 1.0])


def test_bad_estimator_parameter_is_named_although_fits_skip_validation(digits):
    """The fits run without scikit-learn's per-call parameter validation; a bad value is still refused, once,
    naming the parameter."""
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = digits

    class Broken(LogReg):
        def estimator(self, random_state):
            return super().estimator(random_state).set_params(max_iter=-3)

    with pytest.raises(InvalidParameterError, match="max_iter"):
        search_and_fit(Broken(), X[:300], y[:300], [0.1, 1.0])
    with pytest.raises(InvalidParameterError, match="'C'"):
        search_and_fit(LogReg(), X[:300], y[:300], [0.1, -1.0])


def test_search_refuses_non_finite_features_in_an_object_array(digits):
    X, y = digits
    X = X[:300].astype(object)
    X[5, 3] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite value"):
        search_and_fit(LogReg(), X, y[:300], [0.1, 1.0])


def test_bad_parameter_of_a_nested_estimator_is_named(digits):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.utils._param_validation import InvalidParameterError

    from featbench.classifiers import Classifier

    class Wrapped(Classifier):
        param = "estimator__C"

        def estimator(self, random_state):
            return OneVsRestClassifier(LogisticRegression(max_iter=200))

    X, y = digits
    with pytest.raises(InvalidParameterError, match="'C'"):
        search_and_fit(Wrapped(), X[:300], y[:300], [0.1, -1.0])
