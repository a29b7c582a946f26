"""The efficiency-per-core rows of the classical perf benchmarks (the timings themselves run in `make perf`)."""

from __future__ import annotations

import numpy as np
import pytest

from featbench import create_extractor
from featbench.perf import classical


def test_efficiency_rows_measure_against_one_core(monkeypatch):
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)  # the synthetic photos: no data needed
    images, _ = classical.photos(300, longer_side=64)
    ext = create_extractor("hog", size=32).fit(images[:0])
    eff, speedup = classical._efficiency_rows("hog", ext, images, "test images", quick=True)
    cores = classical._cores()[0]
    assert eff.reference.startswith("one core") and "setNumThreads(1)" in eff.reference
    assert eff.unit == "images/s per core" and eff.ratio > 0
    # ratio = one-core time / parallel time / cores: value is the parallel throughput per core
    assert eff.value * cores == pytest.approx(speedup.value)
    assert "one-core time / parallel time / cores" in eff.note
    assert eff.target is None and "quick mode" in eff.note  # quick sets are too small for the target
    assert "OpenCV's own threads" in speedup.reference and speedup.target is None


def test_efficiency_rows_have_the_target_outside_quick_mode(monkeypatch):
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    monkeypatch.setattr(classical, "_cores", lambda: (2, "2 cores"))
    images, _ = classical.photos(20, longer_side=64)
    ext = create_extractor("hog", size=32).fit(images[:0])
    eff, _ = classical._efficiency_rows("hog", ext, images, "test images", quick=False, rounds=1)
    assert eff.target == ">= 0.85"
    assert "stays serial" in eff.note  # 20 tiny images: below MIN_PARALLEL_SECONDS, and the note says so


def test_efficiency_rows_reject_a_parallel_result_that_differs(monkeypatch):
    from featbench import features

    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    images, _ = classical.photos(20, longer_side=64)
    ext = create_extractor("hog", size=32).fit(images[:0])
    monkeypatch.setattr(features, "transform_parallel", lambda e, imgs, n_jobs: e.transform(imgs) + 1.0)
    with pytest.raises(AssertionError, match="differs from the serial transform"):
        classical._efficiency_rows("hog", ext, images, "test images", quick=True)


def test_hog_windows_are_a_memory_mapped_set(monkeypatch, tmp_path):
    from featbench.datasets.mapped import MappedImageSet

    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    ds, what = classical._hog_windows(500, tmp_path)
    assert isinstance(ds, MappedImageSet) and len(ds) == 500
    assert ds[0].shape == (64, 64) and ds[0].dtype == np.uint8
    assert len({ds[i].tobytes() for i in range(0, 500, 50)}) == 10  # distinct windows, not one image repeated
    assert "memory-mapped" in what
