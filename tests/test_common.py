"""One battery over every registered extractor (like scikit-learn's parametrize_with_checks).

A new extractor is tested the day it is registered. Extractors that need small
settings to stay fast in tests declare them in their class attribute ``test_params``.
"""

from __future__ import annotations

import copy
import inspect
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError, generate_invalid_param_val, make_constraint

from featbench import create_extractor, list_extractors
from featbench.extractors import Extractor, ExtractorSpec
from featbench.registry import get_extractor


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(12):
        shape = (32, 32) if i % 3 == 0 else ((40, 30, 3) if i % 3 == 1 else (24, 36))
        base = rng.integers(0, 256, size=shape, dtype=np.uint8)
        # add structure (a bright square) so keypoint detectors find something on most images
        base[4:14, 6:16] = 255 - base[4:14, 6:16] // 4
        imgs.append(base)
    return imgs


LABELS = np.arange(12) % 2


@pytest.fixture(params=list_extractors())
def name(request) -> str:
    return request.param


def make(name: str) -> Extractor:
    return create_extractor(name, **get_extractor(name).test_params)


#: Deep features are sums of thousands of float32 products through tens of layers (oneDNN); a
#: different blocking of the batch (or of the rows of a BLAS product, in the encodings) re-associates
#: those sums, which moves each feature by a few float32 ulps of the layer scale (measured: at most
#: 3e-7 of the largest feature). 1e-4 of the largest feature (~800 ulps) covers that with wide
#: headroom and is still far below what a real bug does (a grey level more on one image moves
#: ResNet50 features by 5e-3 of the largest one; swapped rows by more than 0.1 of it).
REASSOCIATION_TOL = 1e-4


def assert_close_to_float32_reassociation(actual: np.ndarray, expected: np.ndarray, err_msg: str = "") -> None:
    """``actual`` equals ``expected`` up to :data:`REASSOCIATION_TOL` of the largest ``|expected|``."""
    assert actual.shape == expected.shape, err_msg
    np.testing.assert_allclose(actual, expected, rtol=0, atol=REASSOCIATION_TOL * float(np.abs(expected).max()),
                               err_msg=err_msg)


def assert_same_run_to_run(name: str, actual: np.ndarray, expected: np.ndarray, err_msg: str = "") -> None:
    """Two computations of the same features on the same images, in the same batches, in this process.

    Classical extractors run the same single-threaded code (fits under ``threadpool_limits(1)`` or
    ``n_jobs=1``; OpenCV's parallel loops write each output from one thread): bit-identical.
    Deep extractors run TensorFlow with several threads, which guarantees no bit-identity unless op
    determinism is on; they are compared up to float32 re-association (see above).
    """
    if get_extractor(name).spec.family == "deep":
        assert_close_to_float32_reassociation(actual, expected, err_msg)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)


def test_is_extractor_with_spec_and_docs(name):
    cls = get_extractor(name)
    assert issubclass(cls, Extractor)
    spec = cls.spec
    assert isinstance(spec, ExtractorSpec)
    assert spec.family in {"classical", "deep"}
    assert spec.color in {"gray", "rgb"}
    assert spec.description and len(spec.description) < 100
    assert spec.references, f"{name} spec names no reference"
    assert "References" in (cls.__doc__ or ""), f"{name} docstring lacks a References section"
    assert "Parameters" in (cls.__doc__ or "") or not cls._get_param_names()


def test_init_only_stores_params(name):
    cls = get_extractor(name)
    sig = inspect.signature(cls.__init__)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    assert all(p.default is not p.empty for p in params), "every parameter needs a default"
    ext = cls()
    assert ext.get_params() == {p.name: p.default for p in params}
    assert not [k for k in vars(ext) if k.endswith("_")], "__init__ must not set fitted attributes"


def test_clone_and_set_params(name):
    ext = make(name)
    twin = clone(ext)
    assert twin is not ext
    assert twin.get_params() == ext.get_params()
    twin.set_params(**ext.get_params())
    assert twin.get_params() == ext.get_params()


def test_not_fitted_error(name):
    with pytest.raises(NotFittedError):
        make(name).transform(_images()[:2])


def test_output_contract(name):
    imgs = _images()
    ext = make(name).fit(imgs, LABELS)
    X = ext.transform(imgs)
    assert isinstance(X, np.ndarray)
    assert X.dtype == np.float32
    assert X.flags["C_CONTIGUOUS"]
    assert X.ndim == 2 and X.shape[0] == len(imgs) and X.shape[1] > 0
    assert np.isfinite(X).all()
    # one image alone gives the same row as inside a batch (up to float32 re-association: a
    # different number of rows changes the blocking of BLAS / oneDNN sums)
    assert_close_to_float32_reassociation(ext.transform(imgs[4:5]), X[4:5])
    # gray and RGB versions of the same content both work and keep the dimension
    rgb = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in imgs]
    assert ext.transform(rgb).shape == X.shape


def test_deterministic(name):
    imgs = _images(1)
    a = make(name).fit(imgs, LABELS).transform(imgs)
    b = make(name).fit(imgs, LABELS).transform(imgs)
    assert_same_run_to_run(name, b, a)


def test_fit_is_idempotent(name):
    """Fitting again on the same data gives the same transform (sklearn's check_fit_idempotent):
    nothing learnt in the first fit leaks into the second."""
    train, test = _images(2), _images(3)[:4]
    ext = make(name).fit(train, LABELS)
    first = ext.transform(test)
    again = ext.fit(train, LABELS).transform(test)
    assert_same_run_to_run(name, again, first)


def test_fitted_extractor_pickles_and_transforms_identically(name):
    """A fitted extractor survives a pickle round trip (sklearn's check_estimators_pickle): what the
    runner's worker processes and the feature cache rely on."""
    imgs = _images(4)
    ext = make(name).fit(imgs, LABELS)
    before = ext.transform(imgs)
    twin = pickle.loads(pickle.dumps(ext))
    assert type(twin) is type(ext) and twin.get_params() == ext.get_params()
    assert_same_run_to_run(name, twin.transform(imgs), before)


def _public_state(ext: Extractor) -> dict:
    return {k: v for k, v in vars(ext).items() if not k.startswith("_") and not k.endswith("_")}


def test_fit_and_transform_do_not_change_parameters(name):
    """Parameters are the user's (sklearn's check_dont_overwrite_parameters): fit and transform add no
    public attribute, rebind none, and mutate none in place (deep-compared with a copy)."""
    ext = make(name)
    before = _public_state(ext)
    snapshot = copy.deepcopy(before)
    imgs = _images(5)
    ext.fit(imgs, LABELS)
    ext.transform(imgs[:3])
    after = _public_state(ext)
    assert after.keys() == before.keys(), f"fit added public attributes {sorted(after.keys() - before.keys())}"
    rebound = sorted(k for k in before if after[k] is not before[k])
    assert not rebound, f"fit or transform replaced parameters {rebound}"
    changed = sorted(k for k in before if not _deep_equal(after[k], snapshot[k]))
    assert not changed, f"fit or transform mutated parameters {changed} in place"
    assert ext.get_params(deep=False) == snapshot


def _deep_equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_every_parameter_has_a_constraint(name):
    """As in sklearn's check_param_validation: the constraints cover exactly the parameters."""
    cls = get_extractor(name)
    params = set(cls().get_params(deep=False))
    constraints = set(cls._parameter_constraints)
    assert constraints == params, (f"{name}: parameters without a constraint {sorted(params - constraints)}, "
                                   f"constraints of no parameter {sorted(constraints - params)}")


def _invalid_values(name: str) -> list[tuple[str, str, object]]:
    """(parameter, what, value) for every declared constraint of extractor ``name``: a value of a
    type no constraint accepts, then per constraint a value of the right type that breaks it
    (scikit-learn's ``generate_invalid_param_val``, as check_param_validation does)."""
    cases = []
    for param, constraints in sorted(get_extractor(name)._parameter_constraints.items()):
        cases.append((param, "a value of a wrong type", type("BadType", (), {})()))
        for constraint in constraints:
            try:
                bad = generate_invalid_param_val(make_constraint(constraint))
            except NotImplementedError:  # a pure type constraint: covered by the wrong type above
                continue
            cases.append((param, f"{bad!r} (breaks {constraint})", bad))
    return cases


def test_every_invalid_parameter_is_rejected_at_fit_naming_it(name):
    cls = get_extractor(name)
    cases = _invalid_values(name)
    if not cases:
        pytest.skip(f"{name} declares no parameter constraints")
    imgs = _images()[:2]
    for param, what, value in cases:
        ext = make(name).set_params(**{param: value})  # accepted by __init__ (it stores only) ...
        message = rf"The '{param}' parameter of {cls.__name__} must be .* Got .* instead\."
        with pytest.raises(InvalidParameterError, match=message):  # ... and refused by validate ...
            ext.validate()
            pytest.fail(f"{name}: validate accepted {param} = {what}")
        with pytest.raises(InvalidParameterError, match=message):  # ... and by fit, naming the parameter
            ext.fit(imgs, LABELS[:2])
            pytest.fail(f"{name}: fit accepted {param} = {what}")


def test_spread_names_the_splits_a_row_averages_when_fewer_than_the_others():
    from featbench._text import spread

    row = {"splits": 2, "accuracy_std": 0.0123}
    assert spread(row, "accuracy") == " ± 0.012"
    assert spread(row, "accuracy", 2) == " ± 0.012"
    assert spread(row, "accuracy", 3) == " ± 0.012 (2 of 3 splits)"
    assert spread({"splits": 1, "accuracy_std": 0.0}, "accuracy") == " (1 split)"
    assert spread({"splits": 1, "accuracy_std": 0.0}, "accuracy", 3) == " (1 of 3 splits)"


def test_overview_compares_a_row_with_the_splits_of_its_own_dataset():
    """A dataset with one official split beside one with three hold-out splits: neither is 'missing' splits."""
    from featbench.reporting.answer import overview_lines
    from featbench.reporting.tables import results_table

    records = []
    for dataset, n_splits in (("official", 1), ("holdout", 3)):
        for s in range(n_splits):
            for ext, acc in (("a", 0.9), ("b", 0.8)):
                records.append({"dataset": dataset, "task": "classification", "task_name": "classification",
                                "extractor": ext, "classifier": "logreg", "split": f"s{s}", "status": "ok",
                                "accuracy": acc + 0.01 * s, "dim": 4, "family": "classical"})
    # one cell of dataset 'holdout' is missing from the run
    records = [r for r in records if not (r["dataset"] == "holdout" and r["extractor"] == "b" and r["split"] == "s2")]
    text = "\n".join(overview_lines(results_table(records)))
    assert "of 3 splits" in text and text.count("of 3 splits") == 1  # only holdout's 'b'
    assert "(1 split)" in text and "(1 of" not in text
