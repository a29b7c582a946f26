"""Deep extractors: streaming memory, throughput against Keras's own ``predict``, and GFLOP/s.

``deep-memory``
    Peak resident memory of a fresh process that extracts features of ``4n``
    JPEG files against one that extracts ``n`` (separate subprocesses, so the
    peaks are separate). featbench streams batches, so the peak must not grow by
    more than 20 %: target ``<= 1.2``. Model: MobileNet (random weights) at 224;
    the network does not matter, the streaming does.
``deep-throughput``
    Images/s of featbench's ``vgg16`` and ``resnet50`` (``weights="random"``, 224 ×
    224, default ``batch_size="auto"``) from JPEG files on disk (read through the
    ``folder`` dataset: decoding, resizing and preprocessing included) against Keras
    ``model.predict`` on the same images already decoded, resized and preprocessed
    in memory, at its best batch size among 8, 16, 32 and 64 (those up to the 32
    VGG16 or 64 ResNet50 images timed); same process, same run. featbench's batch-size
    search runs first, on other images, and the row states what it tried, chose and
    cost. Target ``>= 0.95``. An informative row compares featbench with the floor:
    the same network called batch by batch through one ``tf.function`` on the ready
    arrays, at featbench's chosen batch (on this TensorFlow, ``predict`` is slower
    than that for ResNet50).
``deep-flops``
    GFLOPs per image (featbench's count from the layers) beside the published
    multiply-add counts, and the GFLOP/s featbench achieves beside this machine's
    float32 matrix-multiply GFLOP/s (the best of NumPy and TensorFlow on 3072 ×
    3072 matrices, best of 5). Informative: no targets.

Images: photos of ``$FEATBENCH_DATA/clothing-dataset-small-subset`` copied to a
temporary folder (typically 400 × 533 JPEGs); without ``FEATBENCH_DATA``,
synthetic 400 × 533 JPEGs. Default mode takes about 6 minutes on 2 cores, quick
mode about 3 (more when other processes load the machine).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from featbench._paths import featbench_data
from featbench.perf import Measurement, benchmark

__all__ = ["jpeg_folder"]

#: Published multiply-adds per image at 224 (with the classifier top, which adds < 1 %).
_PUBLISHED_GMACS = {
    "vgg16": (15.5, "Simonyan & Zisserman 2015 (15.5 G mult-adds)"),
    "resnet50": (3.8, "He et al. 2016, Table 1 (3.8e9 FLOPs, i.e. mult-adds)"),
}
#: Batch sizes ``predict`` is timed at (those up to the number of timed images).
_REFERENCE_BATCHES = (8, 16, 32, 64)


def jpeg_folder(root: Path, n: int) -> str:
    """Fill ``root`` with ``n`` JPEG files in two class folders; returns where they come from."""
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    data = featbench_data()
    source = data / "clothing-dataset-small-subset" if data is not None else None
    files = sorted(source.rglob("*.jpg")) if source is not None and source.is_dir() else []
    if files:
        picks = np.linspace(0, len(files) - 1, n).round().astype(int) if n <= len(files) else np.arange(n) % len(files)
        for k, i in enumerate(picks):
            shutil.copyfile(files[int(i)], root / ("a", "b")[k % 2] / f"{k:05d}.jpg")
        return f"{n} clothing photos (JPEG, about 400 x 533)"
    rng = np.random.default_rng(0)
    for k in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 256, (533, 400, 3), dtype=np.uint8), (0, 0), 3.0)
        cv2.imwrite(str(root / ("a", "b")[k % 2] / f"{k:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return f"{n} synthetic JPEGs of 400 x 533 (FEATBENCH_DATA unset)"


# -- memory ----------------------------------------------------------------------------------
_MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from featbench import create_extractor
    from featbench.datasets import load_dataset

    def peak_mb():
        # VmHWM: this process image's own peak (ru_maxrss keeps the parent's peak across exec on Linux)
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    root, n = sys.argv[1], int(sys.argv[2])
    images = load_dataset("folder", root=root).subset(np.arange(n))
    ext = create_extractor("keras-app", model="MobileNet", weights="random", input_size=224, batch_size=32)
    ext.fit(images[:0])
    ext.transform(images.subset(np.arange(2)))  # trace the model once
    ready = peak_mb()
    X = ext.transform(images)
    peak = peak_mb()
    print(json.dumps({"ready_mb": ready, "peak_mb": peak, "shape": list(X.shape)}))
""")


def _child_peak(root: Path, n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(root), str(n)], capture_output=True, text=True,
                         check=False, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {n} images failed: {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@benchmark("deep-memory")
def memory(quick: bool) -> list[Measurement]:
    n = 48 if quick else 128
    with tempfile.TemporaryDirectory(prefix="featbench-perf-deep-") as tmp:
        source = jpeg_folder(Path(tmp), 4 * n)
        small = _child_peak(Path(tmp), n)
        large = _child_peak(Path(tmp), 4 * n)
    return [Measurement(
        benchmark="deep-memory",
        subject=f"peak RSS extracting {4 * n} images",
        reference=f"peak RSS extracting {n} images",
        value=large["peak_mb"],
        reference_value=small["peak_mb"],
        unit="MiB",
        target="<= 1.2",
        note=(f"keras-app MobileNet, random weights, 224 px, batch 32; {source}; growth after the model was ready: "
              f"{large['peak_mb'] - large['ready_mb']:.0f} MiB vs {small['peak_mb'] - small['ready_mb']:.0f} MiB"),
    )]


# -- throughput ----------------------------------------------------------------------------------
def _best(fn, repeats: int) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls (the first call is a separate warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _search_batch_size(ext, images) -> tuple[int, float]:
    """Let ``ext``'s ``batch_size="auto"`` finish its search on ``images`` (cycled as needed).

    The images are given in calls of exactly the next candidate's batches, so the search
    runs as on the first images of one large call without extracting more than it uses.
    Returns the number of images the search ran on and the seconds it took.
    """
    from featbench.extractors.deep import BatchSearch

    search = ext.batch_search_
    used, seconds = 0, 0.0
    while (b := search.next_candidate()) is not None:
        k = BatchSearch.images_for(b)
        part = images.subset(np.arange(used, used + k) % len(images))
        t0 = time.perf_counter()
        ext.transform(part)
        seconds += time.perf_counter() - t0
        used += k
    return used, seconds


@lru_cache(maxsize=2)
def _throughput(quick: bool) -> dict:
    """featbench vs Keras predict for vgg16 and resnet50; measured once per mode and shared.

    featbench runs at its default ``batch_size="auto"``: its search runs first, on images
    of its own (its cost is reported), then it extracts at the chosen size. ``predict`` is
    timed at every batch size of :data:`_REFERENCE_BATCHES` that fits the images. Then
    featbench, ``predict`` at each size and the plain tf.function loop are timed in turn
    for several rounds (order reversed every other round); each keeps its best round, so
    that load from other processes hits all sides alike, and predict's reference is its
    best size's best round.
    """
    from featbench import create_extractor
    from featbench.datasets import load_dataset
    from featbench.extractors.base import resize, to_rgb
    from featbench.extractors.deep import import_tensorflow

    tf, keras = import_tensorflow()
    # multiples of every reference batch size that fits, so each runs whole batches
    counts = {"vgg16": 16 if quick else 32, "resnet50": 16 if quick else 64}
    rounds = 2 if quick else 5
    results = {}
    with tempfile.TemporaryDirectory(prefix="featbench-perf-deep-") as tmp:
        source = jpeg_folder(Path(tmp), 240)
        all_images = load_dataset("folder", root=tmp)
        for name, n in counts.items():
            images = all_images.subset(np.arange(n))
            ext = create_extractor(name, weights="random", input_size=224)
            ext.fit(images[:0])
            ext.transform(images.subset(np.arange(2)))  # trace once, as the runner's first batch would
            # the search, on other images than the timed ones (the first images of a user's call)
            if quick:
                search_n = 88  # the first two candidates: a smoke test of the search, not a full one
                t0 = time.perf_counter()
                ext.transform(all_images.subset(np.arange(n, n + search_n)))
                search_s = time.perf_counter() - t0
            else:
                search_n, search_s = _search_batch_size(ext, all_images.subset(np.arange(n, len(all_images))))
            search = ext.batch_search_
            fb_b = ext.batch_size_

            ctor = getattr(keras.applications, ext.model_name)
            preprocess = importlib.import_module(ctor.__module__).preprocess_input
            X = preprocess(np.stack([resize(to_rgb(images[i]), (224, 224)) for i in range(n)]).astype(np.float32))
            model = ctor(weights=None, include_top=False, pooling="avg", input_shape=(224, 224, 3))
            ref_batches = [b for b in _REFERENCE_BATCHES if b <= n]

            def predict(b, model=model, X=X):
                return model.predict(X, batch_size=b, verbose=0)

            for b in ref_batches:
                predict(b)  # warm-up: traces for this batch size
            # The floor: the same network called batch by batch on the ready arrays, at featbench's
            # batch size, through one traced function (featbench's own path minus reading the files).
            call = tf.function(lambda x, model=model: model(x, training=False),
                               input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])

            def raw(call=call, X=X, b=fb_b):
                return [call(X[i:i + b]).numpy() for i in range(0, len(X), b)]

            raw()  # trace
            sides = {"featbench": lambda ext=ext, images=images: ext.transform(images),
                     **{f"predict {b}": (lambda b=b: predict(b)) for b in ref_batches}, "raw": raw}
            times = {side: [] for side in sides}
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            for k in range(rounds):
                for side in (list(sides) if k % 2 == 0 else list(sides)[::-1]):
                    t0 = time.perf_counter()
                    sides[side]()
                    times[side].append(time.perf_counter() - t0)
            share = (_cpu_seconds() - cpu0) / (time.perf_counter() - wall0) / _cores()
            predict_best = {b: min(times[f"predict {b}"]) for b in ref_batches}
            best_b = min(predict_best, key=predict_best.get)
            fb_ips = n / min(times["featbench"])
            results[name] = {
                "n": n,
                "featbench_ips": fb_ips,
                "keras_ips": n / predict_best[best_b],
                "keras_ips_by_batch": {b: n / t for b, t in predict_best.items()},
                "raw_ips": n / min(times["raw"]),
                "keras_batch": best_b,
                "reference_batches": ref_batches,
                "featbench_batch": fb_b,
                "search": {b: 1 / s for b, s in search.seconds_per_image.items()},
                "search_done": search.done,
                "search_n": search_n,
                "search_ips": search_n / search_s,
                "rounds": rounds,
                "cpu_share": share,
                "gflops": ext.report_info()["gflops_per_image"],
                "source": source,
            }
    return results


@benchmark("deep-throughput")
def throughput(quick: bool) -> list[Measurement]:
    rows = []
    for name, r in _throughput(quick).items():
        tried = ", ".join(f"{b}: {ips:.1f}" for b, ips in r["search"].items())
        keras_by_batch = ", ".join(f"{b}: {ips:.1f}" for b, ips in r["keras_ips_by_batch"].items())
        rows.append(Measurement(
            benchmark="deep-throughput",
            subject=f"featbench {name} (JPEG files -> features)",
            reference=f"keras {name} model.predict on preprocessed arrays",
            value=r["featbench_ips"],
            reference_value=r["keras_ips"],
            unit="images/s",
            target=">= 0.95",
            note=(f"random weights, 224 px; {r['source']} ({r['n']} timed); featbench batch_size=\"auto\" chose "
                  f"{r['featbench_batch']} (images/s per batch tried: {tried}"
                  f"{'' if r['search_done'] else '; search not finished'}), its search ran on {r['search_n']} "
                  f"other images at {r['search_ips']:.1f} images/s, {r['search_ips'] / r['featbench_ips']:.2f} "
                  f"of the chosen batch's rate; predict's best batch {r['keras_batch']} (images/s: "
                  f"{keras_by_batch}); best of {r['rounds']} alternating rounds; this process used "
                  f"{100 * r['cpu_share']:.0f} % of {_cores()} cores while timing (well below 100 %: other load, "
                  f"noisy ratios)"),
        ))
        rows.append(Measurement(
            benchmark="deep-throughput",
            subject=f"featbench {name} (JPEG files -> features)",
            reference=f"keras {name} called batch by batch in a tf.function on preprocessed arrays",
            value=r["featbench_ips"],
            reference_value=r["raw_ips"],
            unit="images/s",
            note=(f"informative: the cost of reading, decoding, resizing and preprocessing the files; "
                  f"both at batch {r['featbench_batch']}"),
        ))
    return rows


# -- GFLOPs --------------------------------------------------------------------------------------
def _matmul_gflops(quick: bool) -> tuple[float, str]:
    from featbench.extractors.deep import import_tensorflow

    tf, _ = import_tensorflow()
    n = 1024 if quick else 3072
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t_np = _best(lambda: a @ b, 5)
    ta, tb = tf.constant(a), tf.constant(b)
    t_tf = _best(lambda: tf.linalg.matmul(ta, tb).numpy(), 5)
    flops = 2.0 * n**3
    np_g, tf_g = flops / t_np / 1e9, flops / t_tf / 1e9
    return max(np_g, tf_g), f"{n}x{n} float32 matmul: NumPy {np_g:.0f}, TensorFlow {tf_g:.0f} GFLOP/s"


@benchmark("deep-flops")
def flops(quick: bool) -> list[Measurement]:
    peak, how = _matmul_gflops(quick)
    rows = []
    for name, r in _throughput(quick).items():
        gmacs, paper = _PUBLISHED_GMACS[name]
        rows.append(Measurement(
            benchmark="deep-flops",
            subject=f"{name} GFLOPs per image at 224 (2 x mult-adds of conv/dense layers, no top)",
            reference=f"2 x published mult-adds ({paper})",
            value=r["gflops"],
            reference_value=2 * gmacs,
            unit="GFLOPs",
            note="counted from the layers by featbench.extractors.deep.count_gflops",
        ))
        rows.append(Measurement(
            benchmark="deep-flops",
            subject=f"featbench {name} achieved GFLOP/s",
            reference="float32 matmul GFLOP/s on this machine",
            value=r["gflops"] * r["featbench_ips"],
            reference_value=peak,
            unit="GFLOP/s",
            note=f"{r['featbench_ips']:.2f} images/s x {r['gflops']:.2f} GFLOPs; {how}",
        ))
    return rows
