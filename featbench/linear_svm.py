"""The L2-regularised squared-hinge linear SVM of LIBLINEAR (:class:`~sklearn.svm.LinearSVC`'s default
problem) solved exactly by the finite Newton method, one-vs-rest, with warm starts along a path of ``C``.

For each class ``c`` (labels ``y_i = +1`` for ``c``, ``-1`` otherwise) the problem is LinearSVC's::

    min_w  ½‖w‖² + C Σ_i max(0, 1 − y_i w·x̃_i)²,   x̃_i = [x_i, intercept_scaling]

(the intercept is the last weight times ``intercept_scaling``, regularised like the others, as in
LIBLINEAR). The objective is piecewise quadratic: on the set ``A`` of images inside the margin
(``y_i w·x̃_i < 1``) it is a quadratic whose minimiser is one linear solve, so Newton's method with an
exact line search reaches the optimum in finitely many steps, the set ``A`` settling after a few
(Keerthi & DeCoste [1]_). With fewer images than features the solve is done on the images' coefficients
(``w = Σ β_i x̃_i``: the Gram matrix ``K`` of the images, ``(K_AA + I / 2C) β_A = y_A`` [2]_), otherwise on
the weights (``(I + 2C X̃_Aᵀ X̃_A) w = 2C X̃_Aᵀ y_A``): the linear systems have ``min(n, d + 1)`` unknowns.

Beside LIBLINEAR's coordinate descent, which stops at a tolerance (and crawls where the problem is badly
conditioned: hundreds of passes for CNN features of a thousand images), this gives the exact optimum,
and the solution at one ``C`` is a close start for the next (:meth:`NewtonLinearSVC.fit_path`). A Newton
step costs a Cholesky factorisation of up to ``min(n, d + 1)`` unknowns (the later steps, where few images
enter or leave the margin set, reuse an earlier factor), so beyond ``max_newton_size`` of
them the problem goes to LIBLINEAR (:class:`DualPrimalLinearSVC`), whose passes cost ``n·d``.

References
----------
.. [1] Keerthi, S. S., DeCoste, D. (2005). A modified finite Newton method for fast solution of large scale
       linear SVMs. JMLR 6, 341-361.
.. [2] Chapelle, O. (2007). Training a support vector machine in the primal. Neural Computation 19(5),
       1155-1178 (section 4: Newton's method on the expansion coefficients).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.linalg import LinAlgWarning, cho_factor, cho_solve, solve
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from featbench._warnings import count_convergence_warnings

__all__ = ["NewtonLinearSVC", "DualPrimalLinearSVC", "exact_line_search"]


def exact_line_search(a: np.ndarray, b: np.ndarray, p: float, q: float, C: float) -> float:
    """The ``t ≥ 0`` minimising ``p t + q t² / 2 + C Σ_i max(0, a_i − t b_i)²``.

    Along a direction ``δ`` from ``w`` the SVM objective is this function of the step ``t`` (``a`` the
    margins' shortfalls ``1 − y_i w·x̃_i``, ``b = y_i δ·x̃_i``, ``p = w·δ``, ``q = δ·δ``): convex and piecewise
    quadratic, its derivative piecewise linear with a break where an image enters or leaves the margin.
    The breaks are sorted and the derivative's root is found on the first piece where it turns
    non-negative ([1]_ of the module, section 3).
    """
    if q <= 0:
        return 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        breaks = np.where(b != 0, a / b, np.inf)
    inside = (a > 0) | ((a == 0) & (b < 0))  # in the margin just after t = 0
    s0 = p - 2 * C * float(a[inside] @ b[inside])  # derivative = s0 + s1 t on the current piece
    s1 = q + 2 * C * float(b[inside] @ b[inside])
    ahead = np.flatnonzero((breaks > 0) & np.isfinite(breaks))
    ahead = ahead[np.argsort(breaks[ahead], kind="stable")]
    t, ak, bk = breaks[ahead], a[ahead], b[ahead]
    sign = np.where(bk > 0, -1.0, 1.0)  # b > 0: leaves the margin at its break; b < 0: enters it
    s0s = s0 + np.concatenate([[0.0], np.cumsum(-sign * 2 * C * ak * bk)])
    s1s = s1 + np.concatenate([[0.0], np.cumsum(sign * 2 * C * bk * bk)])
    with np.errstate(invalid="ignore"):
        at_end = s0s[:-1] + t * s1s[:-1]  # derivative at the end of each bounded piece
    turned = np.flatnonzero(at_end >= 0)
    k = int(turned[0]) if len(turned) else len(t)
    return max(0.0, -s0s[k] / s1s[k]) if s1s[k] > 0 else 0.0


def _gram_of(X: np.ndarray, rows: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``X[rows]ᵀ X[rows]``, from the rows or, when fewer are left out, from ``G = XᵀX`` minus theirs."""
    if rows.sum() <= len(X) // 2:
        XA = X[rows]
        return XA.T @ XA
    XB = X[~rows]
    return G - XB.T @ XB


class _Problem:
    """One training set, shared by every class and every ``C``: the Gram matrix of the images (fewer images
    than features) or of the features."""

    def __init__(self, X: np.ndarray, intercept_scaling: float) -> None:
        self.X = np.hstack([X, np.full((len(X), 1), float(intercept_scaling))])
        n, d = self.X.shape
        self.kernel = n <= d
        self.gram = self.X @ self.X.T if self.kernel else self.X.T @ self.X
        self._full: tuple[float, tuple] | None = None  # kernel form: (C, factor of K + I/2C), shared by the classes

    def solve(self, y: np.ndarray, C: float, start: np.ndarray | None, max_iter: int,
              guess: np.ndarray | None = None) -> tuple[np.ndarray, int, bool]:
        """The optimum for labels ``y`` (±1): expansion coefficients (kernel form) or weights; the Newton
        steps taken; whether the margin set settled within ``max_iter``. ``start``: a solution to start
        from; else ``guess``: decision values whose margin set the first step solves on (from zero)."""
        X, G = self.X, self.gram
        x = np.zeros(G.shape[0]) if start is None else start.copy()
        out = G @ x if self.kernel else X @ x  # decision values of the training images
        inside = y * out < 1 if start is not None or guess is None else y * guess < 1
        state: dict = {}  # the factorised matrix of an earlier margin set
        for step in range(1, max_iter + 1):
            if self.kernel:
                target = self._kernel_step(y, C, inside, state)
                delta = target - x
                change = G @ delta
                reg_slope, reg_curv = float(x @ change), float(delta @ change)
            else:
                target = self._primal_step(y, C, inside, state)
                delta = target - x
                change = X @ delta
                reg_slope, reg_curv = float(x @ delta), float(delta @ delta)
            t = exact_line_search(1 - y * out, y * change, reg_slope, reg_curv, C)
            x += t * delta
            out += t * change
            now = y * out < 1
            # settled: a full Newton step that leaves the margin set as it was is the exact optimum
            if (abs(t - 1) <= 1e-6 and np.array_equal(now, inside)) or \
                    np.linalg.norm(delta) <= 1e-12 * max(1.0, float(np.linalg.norm(x))):
                return x, step, True
            inside = now
        return x, max_iter, False

    def _kernel_step(self, y: np.ndarray, C: float, inside: np.ndarray, state: dict) -> np.ndarray:
        """The minimiser of the quadratic on margin set ``inside`` in the images' coefficients: ``(K_AA + I / 2C)
        β_A = y_A``, ``β = 0`` elsewhere.

        As in :meth:`_primal_step`, the matrix is factorised for a base set ``B`` (the whole training set's
        factor, when computed, is shared by every class at the same ``C``); while few images differ, the system
        on ``A`` is solved with ``B``'s factor: the images that entered border it (a Schur complement), those
        that left are held at zero by Lagrange multipliers. ``(1 + k) m²`` operations for ``k`` images that differ
        instead of ``|A|³ / 3``; the residual is checked.
        """
        G, n = self.gram, len(self.gram)
        ridge = 1.0 / (2 * C)
        beta = np.zeros(n)
        idx = np.flatnonzero(inside)
        if not len(idx):
            return beta
        if not state and self._full is not None and self._full[0] == C:
            state.update(mask=np.ones(n, dtype=bool), factor=self._full[1])
        base = state.get("mask")
        if base is not None:
            entered, left = np.flatnonzero(inside & ~base), np.flatnonzero(~inside & base)
            if len(entered) + len(left) == 0:
                beta[idx] = cho_solve(state["factor"], y[idx], check_finite=False)
                return beta
            if len(entered) + len(left) <= max(8, int(base.sum()) // 8):
                if self._bordered_solve(y, ridge, np.flatnonzero(base), entered, left, state["factor"], beta):
                    residual = (G[idx] @ beta) + ridge * beta[idx] - y[idx]
                    if np.linalg.norm(residual) <= 1e-10 * max(1.0, float(np.linalg.norm(y[idx]))):
                        return beta
                beta[:] = 0.0
        M = G[np.ix_(idx, idx)]
        M[np.diag_indices_from(M)] += ridge
        factor = cho_factor(M, lower=True, check_finite=False)
        state.update(mask=inside, factor=factor)
        if len(idx) == n:
            self._full = (C, factor)
        beta[idx] = cho_solve(factor, y[idx], check_finite=False)
        return beta

    def _bordered_solve(self, y: np.ndarray, ridge: float, base: np.ndarray, entered: np.ndarray,
                        left: np.ndarray, factor: tuple, out: np.ndarray) -> bool:
        """Solve the system on ``(base − left) ∪ entered`` with ``base``'s factor into ``out`` (``False``: a
        singular Schur complement or multiplier system, so the caller refactorises)."""
        G = self.gram
        pos_left = np.searchsorted(base, left)
        m, e, k = len(base), len(entered), len(left)
        rhs_b = np.zeros((m, 1 + k))
        rhs_b[:, 0] = y[base]
        rhs_b[pos_left, 0] = 0.0
        rhs_b[pos_left, 1 + np.arange(k)] = 1.0
        rhs_e = np.zeros((e, 1 + k))
        rhs_e[:, 0] = y[entered]
        with warnings.catch_warnings():
            warnings.simplefilter("error", LinAlgWarning)  # ill-conditioned: refactorise instead
            try:
                # M_U^-1 [rhs_b; rhs_e] for U = base ∪ entered, by block elimination on base's factor
                u_b = cho_solve(factor, rhs_b, check_finite=False)
                if e:
                    M_be = G[np.ix_(base, entered)]
                    Z = cho_solve(factor, M_be, check_finite=False)
                    schur = G[np.ix_(entered, entered)] - M_be.T @ Z
                    schur[np.diag_indices_from(schur)] += ridge
                    u_e = solve(schur, rhs_e - M_be.T @ u_b, assume_a="pos", check_finite=False)
                    u_b = u_b - Z @ u_e
                else:
                    u_e = rhs_e
                sol_b, sol_e = u_b[:, 0], u_e[:, 0]
                if k:  # multipliers that hold the images that left at zero
                    lam = solve(u_b[pos_left, 1:], u_b[pos_left, 0], assume_a="pos", check_finite=False)
                    sol_b = sol_b - u_b[:, 1:] @ lam
                    sol_e = sol_e - u_e[:, 1:] @ lam
            except (np.linalg.LinAlgError, ValueError, LinAlgWarning):
                return False
        out[base] = sol_b
        out[entered] = sol_e
        out[left] = 0.0
        return True

    def _primal_step(self, y: np.ndarray, C: float, inside: np.ndarray, state: dict) -> np.ndarray:
        """The minimiser of the quadratic on margin set ``inside``: ``(I + 2C X_Aᵀ X_A) w = 2C X_Aᵀ y_A``.

        The Hessian is factorised for a base set ``B``; while few images differ between ``A`` and ``B`` (the
        later Newton steps), the solve goes through the Sherman-Morrison-Woodbury identity with the ``k``
        rows that differ (``2k d²`` operations instead of ``d³ / 3``), and its residual is checked.
        """
        X, n = self.X, len(self.X)
        d = X.shape[1]
        rhs = 2 * C * (X.T @ (y * inside))
        base = state.get("mask")
        if base is not None:
            moved = np.flatnonzero(inside != base)
            if 0 < len(moved) <= max(8, d // 8):
                W = X[moved]
                sign = np.where(inside[moved], 2 * C, -2 * C)  # entered: + x xᵀ, left: − x xᵀ
                HinvWt = cho_solve(state["factor"], W.T, check_finite=False)
                z = cho_solve(state["factor"], rhs, check_finite=False)
                cap = np.diag(1.0 / sign) + W @ HinvWt
                try:
                    target = z - HinvWt @ np.linalg.solve(cap, W @ z)
                except np.linalg.LinAlgError:
                    target = None
                if target is not None:
                    residual = target + 2 * C * (X.T @ (inside * (X @ target))) - rhs
                    if np.linalg.norm(residual) <= 1e-10 * max(1.0, float(np.linalg.norm(rhs))):
                        return target
            elif len(moved) == 0:
                return cho_solve(state["factor"], rhs, check_finite=False)
        # (re)factorise on this set; X_Aᵀ X_A from the last base's when fewer rows differ than are in A
        inner = state.get("inner")
        if inner is not None and np.count_nonzero(inside != base) < min(inside.sum(), n - inside.sum()):
            entered, left = X[inside & ~base], X[~inside & base]
            inner = inner + entered.T @ entered - left.T @ left
        else:
            inner = _gram_of(X, inside, self.gram)
        H = inner * (2 * C)
        H[np.diag_indices_from(H)] += 1.0
        state.update(mask=inside, inner=inner, factor=cho_factor(H, lower=True, check_finite=False))
        return cho_solve(state["factor"], rhs, check_finite=False)

    def weights(self, sol: np.ndarray) -> np.ndarray:
        return self.X.T @ sol if self.kernel else sol


class NewtonLinearSVC(ClassifierMixin, BaseEstimator):
    """:class:`~sklearn.svm.LinearSVC`'s default problem (squared hinge, L2, one-vs-rest, regularised
    intercept) solved exactly by the finite Newton method.

    Parameters
    ----------
    C : float, default=1.0
        Regularisation, as in :class:`~sklearn.svm.LinearSVC`.
    intercept_scaling : float, default=1.0
        As in :class:`~sklearn.svm.LinearSVC`: the constant feature whose weight is the intercept.
    max_iter : int, default=100
        Newton steps per class; a class whose margin set has not settled by then warns
        (:class:`~sklearn.exceptions.ConvergenceWarning`). Typical: 5-25.
    max_newton_size : int, default=2048
        Largest ``min(n_samples, n_features + 1)`` solved by Newton's method; larger problems are fitted by
        :class:`DualPrimalLinearSVC` (``tol``, LIBLINEAR's iteration limit 2000).
    tol : float, default=1e-3
        Stopping tolerance of :class:`DualPrimalLinearSVC` (Newton's method needs none).
    random_state : int, optional
        Passed to :class:`DualPrimalLinearSVC`.

    Attributes
    ----------
    coef_, intercept_, classes_ : as in :class:`~sklearn.svm.LinearSVC`.
    n_iter_ : int
        The most Newton steps any class took.
    n_stalled_ : int
        Classes whose fit did not converge (each also warned).
    form_ : str
        ``"kernel"`` (solved on the images' coefficients: fewer images than features), ``"primal"``, or
        ``"liblinear-dual"`` / ``"liblinear-primal"`` (larger than ``max_newton_size``).
    """

    def __init__(self, C: float = 1.0, intercept_scaling: float = 1.0, max_iter: int = 100,
                 max_newton_size: int = 2048, tol: float = 1e-3, random_state: int | None = None) -> None:
        self.C = C
        self.intercept_scaling = intercept_scaling
        self.max_iter = max_iter
        self.max_newton_size = max_newton_size
        self.tol = tol
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray,
            initial_coef: tuple[np.ndarray, np.ndarray] | None = None) -> NewtonLinearSVC:
        """Fit one binary problem per class (one in all for two classes).

        ``initial_coef`` (optional): ``(coef, intercept)`` of a nearby model (the same C fitted on parts of
        ``X``, say; shapes of ``coef_`` and ``intercept_``) from which Newton's method starts. The optimum is
        unique, so it changes the steps taken, not the model."""
        return self.fit_path(X, y, [self.C], _into=self, initial_coef=initial_coef)[0]

    def fit_path(self, X: np.ndarray, y: np.ndarray, Cs: Sequence[float], *,
                 _into: NewtonLinearSVC | None = None,
                 initial_coef: tuple[np.ndarray, np.ndarray] | None = None) -> list[NewtonLinearSVC]:
        """One fitted copy of this estimator for each ``C`` in ``Cs``, each started from the previous
        solution (the Gram matrix is computed once): the models :meth:`fit` gives, at a fraction of the
        cost. ``initial_coef``: as in :meth:`fit`, for the first ``C``."""
        X, y = check_X_y(X, y, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"This solver needs samples of at least 2 classes in the data, but the data "
                             f"contains only one class: {classes[0]!r}")
        if not self.intercept_scaling > 0:
            raise ValueError(f"intercept_scaling must be positive, got {self.intercept_scaling!r}")
        if min(X.shape[0], X.shape[1] + 1) > self.max_newton_size:
            return [self._liblinear(X, y, C, _into if _into is not None else clone(self).set_params(C=C))
                    for C in Cs]
        problem = _Problem(X, self.intercept_scaling)
        targets = [np.where(y == c, 1.0, -1.0) for c in (classes[1:] if len(classes) == 2 else classes)]
        starts: list[np.ndarray | None] = [None] * len(targets)
        guesses: list[np.ndarray | None] = [None] * len(targets)
        if initial_coef is not None:
            coef = np.asarray(initial_coef[0], dtype=np.float64).reshape(len(targets), X.shape[1])
            intercept = np.asarray(initial_coef[1], dtype=np.float64).reshape(len(targets))
            if problem.kernel:  # no weights to start from: the first step solves on their margin sets
                guesses = list((X @ coef.T + intercept).T)
            else:
                starts = list(np.hstack([coef, intercept[:, None] / float(self.intercept_scaling)]))
        fitted = []
        for C in Cs:
            if not C > 0:
                raise ValueError(f"C must be positive, got {C!r}")
            est = _into if _into is not None else clone(self).set_params(C=C)
            W, steps, stalled = [], 0, 0
            for k, target in enumerate(targets):
                sol, n_steps, ok = problem.solve(target, float(C), starts[k], int(self.max_iter), guesses[k])
                starts[k] = sol
                W.append(problem.weights(sol))
                steps = max(steps, n_steps)
                stalled += not ok
            W = np.asarray(W)
            est.coef_ = W[:, :-1].copy()
            est.intercept_ = W[:, -1] * float(self.intercept_scaling)
            est.classes_ = classes
            est.n_features_in_ = X.shape[1]
            est.n_iter_ = steps
            est.form_ = "kernel" if problem.kernel else "primal"
            est.n_stalled_ = stalled
            if stalled:
                warnings.warn(f"Newton's method did not settle within {self.max_iter} steps for {stalled} of "
                              f"{len(targets)} classes (C={C}); increase max_iter", ConvergenceWarning,
                              stacklevel=2)
            fitted.append(est)
        return fitted

    def _liblinear(self, X: np.ndarray, y: np.ndarray, C: float, est: NewtonLinearSVC) -> NewtonLinearSVC:
        svc = DualPrimalLinearSVC(C=C, intercept_scaling=self.intercept_scaling, tol=self.tol, max_iter=2000,
                                  dual=True, random_state=self.random_state)
        _, est.n_stalled_ = count_convergence_warnings(lambda: svc.fit(X, y))
        if est.n_stalled_:
            warnings.warn(f"LIBLINEAR did not converge within 2000 iterations (C={C})", ConvergenceWarning,
                          stacklevel=3)
        est.coef_, est.intercept_, est.classes_ = svc.coef_, svc.intercept_, svc.classes_
        est.n_features_in_, est.n_iter_, est.form_ = X.shape[1], int(svc.n_iter_), f"liblinear-{svc.solver_}"
        return est

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """As :meth:`sklearn.svm.LinearSVC.decision_function`."""
        check_is_fitted(self, "coef_")
        scores = check_array(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        """As :meth:`sklearn.svm.LinearSVC.predict`."""
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]


class DualPrimalLinearSVC(LinearSVC):
    """:class:`~sklearn.svm.LinearSVC` (squared hinge, L2) solved in the dual, and in the primal when the dual
    solver stops at ``max_iter``.

    Dual coordinate descent [1]_ is the fast solver when the classes are nearly separable (as many features
    as images, or more; large ``C``), but crawls where many images sit inside the margin (few features,
    large ``C``): there the primal trust-region Newton method [2]_ converges in a few iterations. Both solve
    the same problem, so the model is the same up to the solvers' tolerance. The solver that produced the
    fit is ``solver_``; a primal fit that does not converge either warns (``ConvergenceWarning``) as usual.

    References
    ----------
    .. [1] Hsieh, C.-J., Chang, K.-W., Lin, C.-J., Keerthi, S. S., Sundararajan, S. (2008). A dual coordinate
           descent method for large-scale linear SVM. ICML 2008.
    .. [2] Lin, C.-J., Weng, R. C., Keerthi, S. S. (2008). Trust region Newton method for large-scale
           logistic regression. JMLR 9, 627-650 (the primal solver of LIBLINEAR).
    """

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> DualPrimalLinearSVC:
        """Fit the dual problem; refit the primal one if the dual solver did not converge."""
        if self.dual is not True:
            self.solver_ = "primal" if self.dual is False else "auto"
            return super().fit(X, y, sample_weight)
        _, stalled = count_convergence_warnings(lambda: super(DualPrimalLinearSVC, self).fit(X, y, sample_weight))
        self.solver_ = "dual"
        if stalled:
            self.dual = False
            try:
                super().fit(X, y, sample_weight)
            finally:
                self.dual = True
            self.solver_ = "primal"
        return self
