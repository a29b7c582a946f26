"""Tasks that ask the feature stage for more than the split's features (FeatureRequest): changed copies of
images (views) and extractors fitted on other images, computed once, cached, and handed to the task."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from featbench import register_task, run
from featbench.datasets import load_dataset
from featbench.registry import TASKS, create_extractor
from featbench.tasks import FeatureRequest, Task

EXP = """
name = "requests"
[protocol]
repeats = 2
test_size = 0.3
[[datasets]]
name = "digits"
limit_per_class = 12
[[extractors]]
name = "{extractor}"
{params}
[[tasks]]
name = "test-requests"
"""

SEEN: dict = {}


class Requests(Task):
    """Records what the feature stage handed over (the arrays go to SEEN: the test runs with n_jobs = 1)."""

    description = "requests (test)"
    metrics = ("n_extra",)

    def feature_requests(self, train, test, labels, seed):
        few = train[:20]
        return [FeatureRequest("flipped", test, view={"flip": 1}),
                FeatureRequest("same", test),
                FeatureRequest("few", test, fit_positions=few)]

    def view_image(self, image, view, seed):
        SEEN.setdefault("seeds", []).append(seed)
        return np.ascontiguousarray(image[:, ::-1])

    def run(self, cell, data):
        SEEN[data.split_id] = data
        return {"n_extra": len(data.extra)}


@pytest.fixture(autouse=True)
def _task(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    SEEN.clear()
    register_task("test-requests")(Requests)
    yield
    TASKS.unregister("test-requests")


def _run(tmp_path, extractor: str, params: str = "", **kw):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(EXP.format(extractor=extractor, params=params)))
    return run(cfg, tmp_path / "out", n_jobs=1, **kw)


@pytest.mark.parametrize("extractor, params", [("pixels", "size = 8"), ("pca", "size = 8\nn_components = 5")])
def test_requested_features_equal_the_extractor_on_those_images(tmp_path, extractor, params):
    result = _run(tmp_path, extractor, params)
    assert [r["status"] for r in result.records] == ["ok", "ok"]
    images = load_dataset("digits", limit_per_class=12)
    kw = dict(size=8, **({"n_components": 5} if extractor == "pca" else {}))
    splits = [SEEN[r["split"]] for r in result.records]
    for data in splits:
        split = type("Split", (), {"train": data.train_positions, "test": data.test_positions})
        np.testing.assert_array_equal(data.extra["same"], data.test)  # the split's own fitted extractor
        ext = create_extractor(extractor, **kw)
        train = images.subset(split.train)
        ext.fit(train, train.labels)
        flipped = np.stack([np.ascontiguousarray(im[:, ::-1]) for im in images.subset(split.test)])
        # the same computation on the same images; float32 sums of PCA may differ in the last bits (BLAS)
        np.testing.assert_allclose(data.extra["flipped"], ext.transform(flipped), rtol=1e-5, atol=1e-5)
        few = images.subset(split.train[:20])
        ext.fit(few, few.labels)
        np.testing.assert_allclose(data.extra["few"], ext.transform(images.subset(split.test)), rtol=1e-5, atol=1e-5)
        if extractor == "pca":  # fitted on 20 images, not on the split's training part
            assert not np.allclose(data.extra["few"], data.test, atol=1e-3)
        assert set(data.labels[split.test]) <= set(range(10)) and len(data.labels) == len(images)
    rec = result.records[0]
    assert rec["requested_features"] == 3 and rec["requested_features_computed"] == (3 if extractor == "pca" else 1)
    # the seed of a view is fixed by the image's position: the same image gets the same seed in both splits
    assert len(set(SEEN["seeds"])) == len(set(np.concatenate([s.test_positions for s in splits]).tolist()))


def test_requested_features_come_from_the_cache_the_second_time(tmp_path):
    _run(tmp_path, "pca", "size = 8\nn_components = 5")
    first = {k: v.extra for k, v in SEEN.items() if k != "seeds"}
    SEEN.clear()
    again = _run(tmp_path, "pca", "size = 8\nn_components = 5", skip_existing=False)
    assert all(r["requested_features_computed"] == 0 for r in again.records)
    assert "seeds" not in SEEN  # no image was changed again
    for split_id, extra in first.items():
        for name, X in extra.items():
            np.testing.assert_array_equal(SEEN[split_id].extra[name], X)


def test_a_failing_request_fails_only_that_tasks_cells(tmp_path):
    class Broken(Requests):
        def view_image(self, image, view, seed):
            raise RuntimeError("no such view")

    TASKS.unregister("test-requests")
    register_task("test-requests")(Broken)
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(EXP.format(extractor="pixels", params="size = 8"))
                   + '[[tasks]]\nname = "classification"\n[[classifiers]]\nname = "logreg"\nC = [1.0]\n')
    result = run(cfg, tmp_path / "out", n_jobs=1)
    status = {(r["task"], r["split"]): r["status"] for r in result.records}
    assert all(s.startswith("failed: RuntimeError: no such view") for (t, _), s in status.items() if t == "test-requests")
    assert all(s == "ok" for (t, _), s in status.items() if t == "classification")
