"""One battery over every registered extractor (like scikit-learn's parametrize_with_checks).

A new extractor is tested the day it is registered. Extractors that need small
settings to stay fast in tests declare them in their class attribute ``test_params``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

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
    # one image alone gives the same row as inside a batch
    assert np.allclose(ext.transform(imgs[4:5])[0], X[4], atol=1e-5)
    # gray and RGB versions of the same content both work and keep the dimension
    rgb = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in imgs]
    assert ext.transform(rgb).shape == X.shape


def test_deterministic(name):
    imgs = _images(1)
    a = make(name).fit(imgs, LABELS).transform(imgs)
    b = make(name).fit(imgs, LABELS).transform(imgs)
    np.testing.assert_array_equal(a, b)


def test_invalid_parameter_rejected_at_fit(name):
    cls = get_extractor(name)
    constraints = cls._parameter_constraints
    if not constraints:
        pytest.skip(f"{name} declares no parameter constraints")
    param = sorted(constraints)[0]
    ext = make(name).set_params(**{param: object()})  # accepted by __init__ (it stores only) ...
    with pytest.raises(ValueError, match=param):  # ... and refused at fit, naming the parameter
        ext.fit(_images()[:2], LABELS[:2])
