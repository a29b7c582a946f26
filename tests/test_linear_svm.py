"""The finite Newton linear SVM solves LinearSVC's problem: the same optimum as LIBLINEAR run to a tight
tolerance, for both of its forms (fewer images than features: the images' coefficients; more: the
weights), two classes and several, with warm starts along a C path, and the exact line search is the
minimiser a generic scalar method finds.

Tolerances: LIBLINEAR at ``tol=1e-9`` stops within ~1e-7 of the optimum's objective; the weights of two
solvers that both reach it agree to ~1e-5 of their scale, not bit for bit. Predictions are compared exactly
on data without near-ties at that scale.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from featbench.classifiers import LinearSVM, search_and_fit
from featbench.linear_svm import NewtonLinearSVC, exact_line_search


@pytest.fixture(scope="module")
def narrow():
    """More images (300) than features (64): the primal form."""
    X, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(X))[:400]
    X = StandardScaler().fit_transform(X[idx])
    return X[:300], y[idx][:300], X[300:]


@pytest.fixture(scope="module")
def wide(narrow):
    """Fewer images (300) than features (500): random ReLU features, as a random CNN gives (the kernel form)."""
    X_tr, y_tr, X_te = narrow
    W = np.random.default_rng(1).standard_normal((X_tr.shape[1], 500))
    return np.maximum(X_tr @ W, 0) / 10, y_tr, np.maximum(X_te @ W, 0) / 10


def _objective(coef, intercept, X, y, classes, C):
    """LinearSVC's objective summed over the one-vs-rest problems (intercept_scaling 1)."""
    total = 0.0
    targets = classes[1:] if len(classes) == 2 else classes
    for k, c in enumerate(targets):
        t = np.where(y == c, 1.0, -1.0)
        margin = 1 - t * (X @ coef[k] + intercept[k])
        total += 0.5 * (coef[k] @ coef[k] + intercept[k] ** 2) + C * np.sum(np.maximum(margin, 0) ** 2)
    return total


@pytest.mark.parametrize("shape", ["narrow", "wide"])
@pytest.mark.parametrize("n_classes", [2, 10])
@pytest.mark.parametrize("C", [0.001, 0.1, 10.0])
def test_newton_is_liblinear_at_its_optimum(request, shape, n_classes, C):
    X_tr, y_tr, X_te = request.getfixturevalue(shape)
    if n_classes == 2:
        y_tr = (y_tr >= 5).astype(int)
    ours = NewtonLinearSVC(C=C).fit(X_tr, y_tr)
    assert ours.form_ == ("primal" if shape == "narrow" else "kernel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # large C, wide: LIBLINEAR needs many passes
        ref = LinearSVC(C=C, tol=1e-9, max_iter=200000, dual=True, random_state=0).fit(X_tr, y_tr)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-5 * scale)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-5 * scale)
    f_ours = _objective(ours.coef_, ours.intercept_, X_tr, y_tr, ours.classes_, C)
    f_ref = _objective(ref.coef_, ref.intercept_, X_tr, y_tr, ref.classes_, C)
    assert f_ours <= f_ref * (1 + 1e-9)  # the exact optimum: never worse than a tolerance-stopped solver
    np.testing.assert_allclose(ours.decision_function(X_te), ref.decision_function(X_te),
                               atol=1e-4 * np.abs(ref.decision_function(X_te)).max())
    np.testing.assert_array_equal(ours.predict(X_te), ref.predict(X_te))


@pytest.mark.parametrize("shape", ["narrow", "wide"])
def test_warm_started_path_gives_the_models_of_separate_fits(request, shape):
    X_tr, y_tr, X_te = request.getfixturevalue(shape)
    Cs = [0.001, 0.01, 0.1, 1.0]
    path = NewtonLinearSVC().fit_path(X_tr, y_tr, Cs)
    assert [m.C for m in path] == Cs
    for model, C in zip(path, Cs):
        alone = NewtonLinearSVC(C=C).fit(X_tr, y_tr)
        np.testing.assert_allclose(model.coef_, alone.coef_, atol=1e-8 * np.abs(alone.coef_).max())
        np.testing.assert_array_equal(model.predict(X_te), alone.predict(X_te))
    # the warm start saves Newton steps: the last C from the previous solution vs from zero
    assert path[-1].n_iter_ < NewtonLinearSVC(C=Cs[-1]).fit(X_tr, y_tr).n_iter_


def test_exact_line_search_is_the_minimiser():
    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(1, 40))
        a, b = rng.standard_normal(n), rng.standard_normal(n)
        b[rng.random(n) < 0.1] = 0.0  # images the direction does not move
        q = float(rng.uniform(0.01, 3))
        p = float(rng.standard_normal())
        C = float(10 ** rng.uniform(-2, 1))

        def phi(t, a=a, b=b, p=p, q=q, C=C):
            return p * t + q * t * t / 2 + C * np.sum(np.maximum(a - t * b, 0) ** 2)

        t = exact_line_search(a, b, p, q, C)
        ref = minimize_scalar(phi, bounds=(0, 100), method="bounded", options={"xatol": 1e-12}).x
        assert t >= 0
        assert phi(t) <= phi(ref) + 1e-9 * max(1.0, abs(phi(ref))), trial
        assert t == pytest.approx(ref, abs=1e-5), trial


def test_large_problems_go_to_liblinear(narrow):
    X_tr, y_tr, X_te = narrow
    big = NewtonLinearSVC(C=0.1, max_newton_size=32).fit(X_tr, y_tr)  # min(300, 65) > 32
    assert big.form_.startswith("liblinear")
    exact = NewtonLinearSVC(C=0.1).fit(X_tr, y_tr)
    assert exact.form_ == "primal"
    assert (big.predict(X_te) == exact.predict(X_te)).mean() >= 0.99  # LIBLINEAR stops at tol 1e-3


def test_a_fit_that_does_not_settle_warns_and_is_counted(wide):
    X_tr, y_tr, _ = wide
    with pytest.warns(ConvergenceWarning, match="did not settle"):
        model = NewtonLinearSVC(C=1.0, max_iter=1).fit(X_tr, y_tr)
    assert model.n_stalled_ > 0
    assert NewtonLinearSVC(C=1.0).fit(X_tr, y_tr).n_stalled_ == 0

    class Starved(LinearSVM):
        def estimator(self, random_state):
            return NewtonLinearSVC(max_iter=1)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # counted, not shown
        result = search_and_fit(Starved(), X_tr, y_tr, [0.1, 1.0])
    assert result.n_fits == 3 * 2 + 1
    assert 0 < result.not_converged <= result.n_fits


def test_bad_input_is_refused(narrow):
    X_tr, y_tr, _ = narrow
    with pytest.raises(ValueError, match="at least 2 classes"):
        NewtonLinearSVC().fit(X_tr, np.zeros(len(X_tr)))
    with pytest.raises(ValueError, match="C must be positive"):
        NewtonLinearSVC(C=0.0).fit(X_tr, y_tr)


def test_the_refit_started_from_the_folds_is_the_cold_fit(narrow):
    """search_and_fit starts the final fit from the folds' models (refit_params): the same optimum as a fit
    from zero on the same scaled features."""
    X_tr, y_tr, X_te = narrow
    X_raw = X_tr * 3.0 + 1.0  # something for the scaler to undo
    result = search_and_fit(LinearSVM(), X_raw, y_tr, [0.01, 0.1, 1.0])
    scaled = result.model.named_steps["scale"].transform(X_raw)
    cold = NewtonLinearSVC(C=result.chosen).fit(scaled, y_tr)
    warm = result.model.named_steps["clf"]
    params = LinearSVM().refit_params(X_raw, [], result.model[:-1])
    assert params == {}  # nothing to start from without folds
    np.testing.assert_allclose(warm.coef_, cold.coef_, atol=1e-8 * np.abs(cold.coef_).max())
    np.testing.assert_allclose(warm.intercept_, cold.intercept_, atol=1e-8 * np.abs(cold.coef_).max())
    assert warm.n_iter_ < cold.n_iter_  # and it did start closer


@pytest.mark.parametrize("C", [0.01, 10.0])
def test_kernel_step_on_an_earlier_factor_is_the_direct_solve(wide, C):
    """A margin set a few images away from the factorised one is solved on that factor (images entered:
    bordering; images left: multipliers): the solution of the system factorised afresh."""
    from featbench.linear_svm import _Problem

    X, y, _ = wide
    problem = _Problem(X, 1.0)
    assert problem.kernel
    t = np.where(y == 3, 1.0, -1.0)
    rng = np.random.default_rng(0)
    base = rng.random(len(X)) < 0.6
    state: dict = {}
    problem._kernel_step(t, C, base, state)
    assert state["mask"] is base
    for n_in, n_out in [(0, 3), (4, 0), (3, 5)]:
        A = base.copy()
        A[rng.choice(np.flatnonzero(~base), n_in, replace=False)] = True
        A[rng.choice(np.flatnonzero(base), n_out, replace=False)] = False
        beta = problem._kernel_step(t, C, A, state)
        assert state["mask"] is base  # solved on the base's factor, not refactorised
        idx = np.flatnonzero(A)
        M = problem.gram[np.ix_(idx, idx)] + np.eye(len(idx)) / (2 * C)
        expected = np.zeros(len(X))
        expected[idx] = np.linalg.solve(M, t[idx])
        # both solves are backward stable: they agree to the conditioning of M times machine precision
        np.testing.assert_allclose(beta, expected, rtol=0, atol=1e-8 * np.abs(expected).max())
