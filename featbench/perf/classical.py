"""Speed of the classical extractors against plain OpenCV loops on the same images, in the same run.

For ``sift`` and ``orb`` the comparison that has a target is the descriptor stage:
featbench's :meth:`~featbench.extractors.keypoints.LocalFeatures.describe` (gray
conversion, size check, OpenCV ``detectAndCompute``, conversion to float32 and to
normalised keypoint positions) against ``detectAndCompute`` called in a plain loop.
The full ``transform`` (descriptors *and* the BoVW encoding featbench adds on top)
is reported beside it without a target, as is the encoding's share. ``hog`` compares
featbench's whole ``transform`` with ``HOGDescriptor.compute`` in a loop.

Parallel extraction: ``sift``, ``sift-dense`` (``experiments/default.toml``'s dense-sift-fisher)
and ``hog`` report the *efficiency per core* of
:func:`~featbench.features.transform_parallel` with ``n_jobs=-1``: the time of the same work
on one core (one process, ``cv2.setNumThreads(1)``, BLAS at one thread) divided by the
parallel time and by the number of cores, target >= 0.85, on a set large enough for
parallel work to pay (see :func:`_efficiency_rows`). Beside it, informative, the speed-up
over ``n_jobs=1``, which is one process *with* OpenCV's own threads: that serial run
already uses several cores for SIFT, so its speed-up understates what the workers buy.
``orb`` keeps only that informative speed-up, on 256 images.

Images: 200 photos of ``$FEATBENCH_DATA/clothing-dataset-small-subset`` (40 in quick
mode), converted to gray and resized to a longer side of 256 px (64 × 64 for HOG)
*before* timing, so both sides get identical arrays; the efficiency rows take 600 of
the photos (SIFT, dense SIFT) and 70,000 64 × 64 windows cut from 200 of them (HOG);
without ``FEATBENCH_DATA``, a deterministic synthetic set of the same sizes.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from joblib import effective_n_jobs

from featbench._paths import featbench_data
from featbench.perf import Measurement, benchmark, best_time

__all__ = ["photos"]

_LONGER_SIDE = 256
_HOG_SIZE = 64
# Sets of the efficiency-per-core rows (quick mode in brackets): each a few seconds of work on one core.
_SIFT_IMAGES, _SIFT_QUICK = 600, 256
_DENSE_IMAGES, _DENSE_QUICK = 600, 256
_HOG_WINDOWS, _HOG_QUICK = 70_000, 10_000


def photos(n: int, longer_side: int = _LONGER_SIDE) -> tuple[list[np.ndarray], str]:
    """``n`` gray uint8 images with the given longer side, and a description of where they come from."""
    data = featbench_data()
    root = data / "clothing-dataset-small-subset" if data is not None else None
    if root is not None and root.is_dir():
        from featbench.datasets import load_dataset

        ds = load_dataset("folder", root=str(root))
        picks = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
        imgs = [_gray_longer(ds[int(i)], longer_side) for i in picks]
        return imgs, f"{len(imgs)} clothing photos, gray, longer side {longer_side} px"
    rng = np.random.default_rng(0)
    imgs = []
    for _ in range(n):
        img = rng.integers(0, 256, (longer_side * 3 // 4, longer_side), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (0, 0), 2.0)
        for _ in range(6):  # rectangles and discs: corners and blobs for the detectors
            x, y = (int(v) for v in rng.integers(0, longer_side * 3 // 4 - 20, 2))
            colour = int(rng.integers(0, 256))
            if rng.random() < 0.5:
                cv2.rectangle(img, (x, y), (x + int(rng.integers(8, 40)), y + int(rng.integers(8, 40))), colour, -1)
            else:
                cv2.circle(img, (x + 10, y + 10), int(rng.integers(4, 20)), colour, -1)
        imgs.append(img)
    return imgs, f"{n} synthetic images (FEATBENCH_DATA unset), longer side {longer_side} px"


def _gray_longer(image: np.ndarray, longer_side: int) -> np.ndarray:
    from featbench.extractors import to_gray

    gray = to_gray(image)
    h, w = gray.shape
    s = longer_side / max(h, w)
    return cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _paired(reference, ours, rounds: int) -> tuple[float, float]:
    """Best times of ``reference()`` and ``ours()``, measured in alternation (the order flips every
    round) so that a busy spell of the machine cannot favour one side. OpenCV runs single-threaded
    meanwhile on both sides: its internal threads make timings on a shared machine jumpy, and the
    comparison is about per-image cost, not about OpenCV's threading."""
    t_ref = t_ours = float("inf")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for r in range(rounds):
            if r % 2:
                t_ours = min(t_ours, best_time(ours, repeats=1, min_time=0))
            t_ref = min(t_ref, best_time(reference, repeats=1, min_time=0))
            if not r % 2:
                t_ours = min(t_ours, best_time(ours, repeats=1, min_time=0))
    finally:
        cv2.setNumThreads(threads)
    return t_ref, t_ours


def _paired_per_image(reference, ours, images: list[np.ndarray], rounds: int) -> tuple[float, float]:
    """Per-image times of ``reference(img)`` and ``ours(img)``, summed over the images.

    Each image is timed on both sides in turn (the order flips every image and every
    round); each side keeps, per image, its best time over the rounds. A disturbance
    from another process then spoils one image's timing in one round, not a whole pass.
    Both sides keep their outputs until the end of the round. OpenCV is single-threaded
    meanwhile, as in :func:`_paired`.
    """
    n = len(images)
    best = {"ref": np.full(n, np.inf), "ours": np.full(n, np.inf)}
    fns = {"ref": reference, "ours": ours}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for r in range(rounds + 1):  # round 0 warms up and is not counted
            kept: list = []
            for i, img in enumerate(images):
                for side in (("ref", "ours") if (r + i) % 2 else ("ours", "ref")):
                    t0 = time.perf_counter()
                    out = fns[side](img)
                    dt = time.perf_counter() - t0
                    kept.append(out)
                    if r:
                        best[side][i] = min(best[side][i], dt)
            del kept
    finally:
        cv2.setNumThreads(threads)
    return float(best["ref"].sum()), float(best["ours"].sum())


def _parallel_row(name: str, extractor, images: list[np.ndarray], quick: bool, source: str) -> Measurement:
    from featbench import features
    from featbench.features import MIN_PARALLEL_IMAGES, transform_parallel

    # Enough images for transform_parallel to split the work at all.
    many = [images[i % len(images)] for i in range(max(MIN_PARALLEL_IMAGES, len(images)))]
    repeats = 1 if quick else 5
    serial = parallel = float("inf")
    for _ in range(repeats):  # alternating, best of each: a busy spell of the machine hits both sides
        serial = min(serial, best_time(lambda: transform_parallel(extractor, many, n_jobs=1), repeats=1, min_time=0))
        parallel = min(parallel, best_time(lambda: transform_parallel(extractor, many, n_jobs=-1), repeats=1,
                                           min_time=0))
    cores = effective_n_jobs(-1)
    if serial >= features.MIN_PARALLEL_SECONDS:
        how = "loky workers (warm pool), one OpenCV thread each; n_jobs=1 is one process with OpenCV's own threads"
    else:
        how = (f"serial: {1000 * serial:.0f} ms of work in all is below features.MIN_PARALLEL_SECONDS = "
               f"{features.MIN_PARALLEL_SECONDS:g} s, where shipping images to workers costs more than it saves")
    return Measurement(
        benchmark=name, subject="transform_parallel(n_jobs=-1)", reference="n_jobs=1 (OpenCV's own threads)",
        value=len(many) / parallel, reference_value=len(many) / serial, unit="images/s", target=None,
        note=f"speed-up on {cores} cores, {len(many)} images from {source} ({1000 * serial / len(many):.3g} "
             f"ms/image serially); {how}; informative (the figure with a target is the efficiency per core, "
             f"measured against one core)",
    )


def _cores() -> tuple[int, str]:
    """Cores ``n_jobs=-1`` uses (joblib's count: CPU affinity and cgroup quota), and how they were counted."""
    cores = effective_n_jobs(-1)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores, f"{cores} cores (joblib.effective_n_jobs(-1); {usable} usable, os.cpu_count() {os.cpu_count()})"


def _efficiency_rows(name: str, extractor, images, what: str, quick: bool, rounds: int = 3) -> list[Measurement]:
    """Efficiency per core of :func:`~featbench.features.transform_parallel` on ``images``.

    Three ways to transform the same images, measured in alternation (the order rotates every
    round), best of each:

    * **one core**: ``extractor.transform`` in this process with ``cv2.setNumThreads(1)`` and the
      BLAS pools at one thread -- the work as one core does it;
    * ``transform_parallel(n_jobs=1)``: one process, OpenCV's own threads (what ``n_jobs = 1`` does);
    * ``transform_parallel(n_jobs=-1)``: loky workers, one OpenCV thread each, as in a run.

    The worker pool is started first by :func:`~featbench.features.parallel_backend`, as the runner
    starts it before any extractor is timed; everything else ``transform_parallel`` does (the serial
    probe, shipping images and the fitted extractor to the workers, the results back, the
    concatenation) is inside the timing, and each result is checked against the one-core one
    (float32 rounding aside). Efficiency per core = one-core time / parallel time / cores;
    the row's ``value`` is the parallel throughput per core, its ``reference_value`` one core's
    throughput, so that its ratio is the efficiency.
    """
    from threadpoolctl import threadpool_limits

    from featbench import features
    from featbench.features import parallel_backend, transform_parallel

    cores, cores_text = _cores()
    n = len(images)

    def one_core():
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            with threadpool_limits(limits=1):
                return extractor.transform(images)
        finally:
            cv2.setNumThreads(threads)

    runs = {"one core": one_core,
            "n_jobs=1": lambda: transform_parallel(extractor, images, n_jobs=1),
            "n_jobs=-1": lambda: transform_parallel(extractor, images, n_jobs=-1)}
    best = dict.fromkeys(runs, float("inf"))
    rounds = 2 if quick else rounds
    order = list(runs)
    with parallel_backend("loky", None, -1):  # the pool starts here, as in a run, before any timing
        for r in range(rounds):
            for key in order[r % 3:] + order[:r % 3]:
                t0 = time.perf_counter()
                out = runs[key]()
                best[key] = min(best[key], time.perf_counter() - t0)
                if key == "one core":
                    expected = out
                elif not np.allclose(out, expected, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(expected).max()))):
                    # float32 sums in another order (BLAS threads, batch sizes) differ by ~1e-5; more is a defect
                    raise AssertionError(f"{name}: transform_parallel ({key}) differs from the serial transform")
                del out
    t1, tp, tt = best["one core"], best["n_jobs=-1"], best["n_jobs=1"]
    size = f"{n:,} images ({what})"
    target = None if quick or cores < 2 else ">= 0.85"
    caveats = ""
    if quick:
        caveats += "; quick mode: a smaller set and fewer rounds, informative only"
    if cores < 2:
        caveats += "; one core only: nothing to run in parallel, informative only"
    if t1 < features.MIN_PARALLEL_SECONDS:
        caveats += (f"; {t1:.2f} s of work is below features.MIN_PARALLEL_SECONDS = "
                    f"{features.MIN_PARALLEL_SECONDS:g} s, so transform_parallel stays serial")
    return [
        Measurement(
            benchmark=name, subject=f"efficiency per core: transform_parallel(n_jobs=-1) on {cores} cores",
            reference="one core: one process, cv2.setNumThreads(1), BLAS 1 thread",
            value=n / tp / cores, reference_value=n / t1, unit="images/s per core", target=target,
            note=f"ratio = one-core time / parallel time / cores = {t1:.2f} s / {tp:.2f} s / {cores}; {cores_text}; "
                 f"{size}, {1000 * t1 / n:.3g} ms/image on one core; the three ways alternate, best of {rounds} "
                 f"rounds; worker pool started before timing (as the runner does), all else timed{caveats}",
        ),
        Measurement(
            benchmark=name, subject=f"transform_parallel(n_jobs=-1) on {cores} cores",
            reference="transform_parallel(n_jobs=1): one process, OpenCV's own threads",
            value=n / tp, reference_value=n / tt, unit="images/s", target=None,
            note=f"informative: what n_jobs=-1 buys over n_jobs=1, whose OpenCV already uses the cores it can "
                 f"({tt:.2f} s vs {tp:.2f} s); same images and rounds as the efficiency row",
        ),
    ]


def _local(name: str, quick: bool) -> list[Measurement]:
    from featbench import create_extractor

    images, source = photos(40 if quick else 200)
    n_features = 500
    ext = create_extractor(name, n_features=n_features, max_size=None, n_words=64, encoding="bovw",
                           max_descriptors=20_000)
    detector = cv2.SIFT_create(nfeatures=n_features) if name == "sift" else cv2.ORB_create(nfeatures=n_features)

    def opencv_loop():
        return [detector.detectAndCompute(img, None) for img in images]

    rounds = 2 if quick else 5
    ref, ours = (t / len(images) for t in _paired_per_image(
        lambda img: detector.detectAndCompute(img, None), ext.describe_one, images, rounds))
    ext.fit(images)
    ref_loop, full = (t / len(images) for t in _paired(opencv_loop, lambda: ext.transform(images),
                                                       2 if quick else 3))
    per = f"{len(images)} images ({source}), serial (n_jobs=1)"
    rows = [
        Measurement(
            benchmark=name, subject=f"featbench {name} descriptors (describe)",
            reference=f"cv2.{'SIFT' if name == 'sift' else 'ORB'}_create().detectAndCompute loop",
            value=1000 * ours, reference_value=1000 * ref, unit="ms/image", target="<= 1.2",
            note=f"descriptor stage only (featbench's describe_one vs detectAndCompute), nfeatures={n_features}, "
                 f"each image timed on both sides in turn, best of {rounds} rounds per image, outputs kept, "
                 f"OpenCV single-threaded on both sides; {per}",
        ),
        Measurement(
            benchmark=name, subject=f"featbench {name} transform (descriptors + BoVW, 64 words)",
            reference="detectAndCompute loop (outputs kept)", value=1000 * full, reference_value=1000 * ref_loop,
            unit="ms/image", target=None,
            note=f"informative: whole passes over the images, alternating, best of {2 if quick else 3}; the "
                 f"encoding is work OpenCV does not do; {per}",
        ),
    ]
    if name == "sift":
        many, many_source = photos(_SIFT_QUICK if quick else _SIFT_IMAGES)
        rows += _efficiency_rows(name, ext, many, f"{many_source}; SIFT {n_features} keypoints, BoVW 64 words: "
                                 f"a folder of photos, seconds of work on one core",
                                 quick)
    else:
        rows.append(_parallel_row(name, ext, images, quick, source))
    return rows


@benchmark("sift")
def sift_speed(quick: bool = False) -> list[Measurement]:
    """featbench SIFT against OpenCV's SIFT on the same images."""
    return _local("sift", quick)


@benchmark("orb")
def orb_speed(quick: bool = False) -> list[Measurement]:
    """featbench ORB against OpenCV's ORB on the same images."""
    return _local("orb", quick)


@benchmark("hog")
def hog_speed(quick: bool = False) -> list[Measurement]:
    """featbench HOG against ``cv2.HOGDescriptor.compute`` on the same 64 x 64 images."""
    from featbench import create_extractor

    photos_, source = photos(40 if quick else 200)
    images = [cv2.resize(p, (_HOG_SIZE, _HOG_SIZE), interpolation=cv2.INTER_AREA) for p in photos_]
    ext = create_extractor("hog", size=_HOG_SIZE).fit(images[:0])
    hog = cv2.HOGDescriptor((_HOG_SIZE, _HOG_SIZE), (16, 16), (8, 8), (8, 8), 9)

    def opencv_loop():
        for img in images:
            hog.compute(img)

    ref, ours = (t / len(images) for t in _paired(opencv_loop, lambda: ext.transform(images), 5 if quick else 10))
    rows = [
        Measurement(
            benchmark="hog", subject="featbench hog transform", reference="cv2.HOGDescriptor.compute loop",
            value=1000 * ours, reference_value=1000 * ref, unit="ms/image", target="<= 1.2",
            note=f"whole transform (gray check, size check, compute, copy into the float32 matrix), OpenCV "
                 f"single-threaded on both sides; "
                 f"{len(images)} images {_HOG_SIZE}x{_HOG_SIZE} ({source}), serial",
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="featbench-perf-") as tmp:
        windows, what = _hog_windows(_HOG_QUICK if quick else _HOG_WINDOWS, Path(tmp))
        rows += _efficiency_rows("hog", ext, windows, what, quick, rounds=8)  # ~14 s a round
    return rows


@benchmark("sift-dense")
def dense_sift_speed(quick: bool = False) -> list[Measurement]:
    """Efficiency per core of parallel dense SIFT + Fisher vectors (``default.toml``'s dense-sift-fisher)."""
    from featbench import create_extractor

    images, source = photos(_DENSE_QUICK if quick else _DENSE_IMAGES)
    ext = create_extractor("sift", mode="dense", min_size=64, step=8, scales=[16, 24], encoding="fisher", n_words=16,
                           pca=32, max_descriptors=30_000)
    ext.fit(images[:100])
    return _efficiency_rows("sift-dense", ext, images,
                            f"{source}; dense SIFT step 8, scales 16 and 24, Fisher vectors of 16 words after PCA "
                            f"to 32, fitted on the first 100, as experiments/default.toml's dense-sift-fisher: a folder of "
                            f"photos, seconds of work on one core", quick)


def _hog_windows(n: int, folder: Path):
    """``n`` distinct 64 x 64 windows cut every 8 px from the photos, as a memory-mapped set.

    They are written to one uint8 ``.npy`` file in ``folder`` and opened as a
    :class:`~featbench.datasets.MappedImageSet`, the form the ``idx`` and ``keras`` loaders give
    MNIST-sized sets: workers reopen the file instead of receiving copies of the images.
    """
    from featbench.datasets.mapped import MappedImageSet, npy_part

    photos_, source = photos(200)
    windows = np.concatenate([
        np.lib.stride_tricks.sliding_window_view(p, (_HOG_SIZE, _HOG_SIZE))[::8, ::8].reshape(-1, _HOG_SIZE, _HOG_SIZE)
        for p in photos_])
    picks = np.linspace(0, len(windows) - 1, n).round().astype(int)
    path = folder / "windows.npy"
    np.save(path, np.ascontiguousarray(windows[picks]))
    ds = MappedImageSet("hog-windows", [npy_part(path)], np.zeros(n, dtype=np.int64), ["window"])
    what = (f"{_HOG_SIZE}x{_HOG_SIZE} windows cut every 8 px from {source}, in a memory-mapped .npy as the idx and "
            f"keras loaders give MNIST-sized sets (70,000 images); HOG is ~0.05 ms/image, so parallel work pays "
            f"only on sets of that size")
    return ds, what
