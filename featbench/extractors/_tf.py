"""TensorFlow helpers shared by the Keras extractors (``deep.py``, ``cnn.py``).

TensorFlow and Keras are imported on first use, never at module import, so that
``featbench list`` stays fast. :func:`import_tensorflow` is the one place that
imports them: it quiets TensorFlow's start-up logging and sets its thread pools
from the cores this process may use.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import random
import sys
import tempfile
import threading

import numpy as np

__all__ = [
    "import_tensorflow",
    "seeded",
    "count_gflops",
    "walk_layers",
    "largest_activation_bytes",
    "stratified_validation_split",
    "fit_classifier",
    "quiet_stderr",
]

log = logging.getLogger("featbench")

# Lines TensorFlow writes to stderr on import whatever TF_CPP_MIN_LOG_LEVEL says (TF >= 2.20
# logs them before absl is initialised); anything else it writes is passed on.
_IMPORT_NOISE = ("All log messages before absl::InitializeLog", "oneDNN custom operations are on",
                 "To enable the following instructions", "This TensorFlow binary is optimized",
                 "Unable to register cu", "Could not find cuda drivers", "TF-TRT Warning",
                 "computation placer already registered", "cuda_", "E0000 00:00")

_TF_LOCK = threading.Lock()
_TF_READY = False


def _n_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def import_tensorflow():
    """Import TensorFlow and Keras quietly, once; returns ``(tf, keras)``.

    Sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless already set), silences the absl and
    ``tensorflow`` Python loggers below ERROR, filters TensorFlow's import-time
    banner lines from stderr, and sets TensorFlow's intra-op threads to the number
    of cores this process may run on (``os.sched_getaffinity``) and its inter-op
    threads to ``min(2, cores)`` (one graph node at a time keeps every core busy on
    the large convolutions; a second overlaps the small ones). Thread settings only
    take effect if TensorFlow's runtime has not started yet in this process.
    """
    global _TF_READY
    with _TF_LOCK:
        if not _TF_READY:
            if "tensorflow" not in sys.modules:
                # 3: TensorFlow's C++ errors too; Keras 3's tf.data pipelines log a harmless
                # "NodeDef mentions attribute use_unbounded_threadpool" error on every fit.
                # Real failures still raise Python exceptions.
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
                _quiet_import("tensorflow")
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            import tensorflow as tf

            tf.get_logger().setLevel(logging.ERROR)
            cores = _n_cores()
            try:
                tf.config.threading.set_intra_op_parallelism_threads(cores)
                tf.config.threading.set_inter_op_parallelism_threads(min(2, cores))
            except RuntimeError:  # the runtime was started by someone else: keep its settings
                pass
            _TF_READY = True
        import keras
        import tensorflow as tf

    return tf, keras


def _quiet_import(module: str) -> None:
    """Import ``module`` with file descriptor 2 captured; re-emit what is not known noise."""
    with quiet_stderr(_IMPORT_NOISE):
        importlib.import_module(module)


#: What TensorFlow 2.21's C++ runtime logs on every ``model.fit`` (its tf.data pipeline) whatever
#: TF_CPP_MIN_LOG_LEVEL says: a harmless version mismatch of an op attribute.
_FIT_NOISE = ("NodeDef mentions attribute use_unbounded_threadpool",)


@contextlib.contextmanager
def quiet_stderr(noise: tuple[str, ...]):
    """Capture file descriptor 2 (C++ logging included) for the block; afterwards, write back
    every line that contains none of ``noise``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. captured by a test runner)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() and not any(n in line for n in noise)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed Keras (Python, NumPy and TensorFlow RNGs) with ``seed`` for the block.

    Python's and NumPy's global RNG states are restored afterwards, so seeding a
    model does not change random numbers drawn elsewhere in the process.
    """
    _, keras = import_tensorflow()
    py_state, np_state = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def count_gflops(model) -> float:
    """GFLOPs of one forward pass of ``model`` per image: 2 × multiply-adds, counted from its layers.

    Each layer with a kernel (``Conv*``, ``DepthwiseConv*``, ``SeparableConv*``,
    ``Dense`` and their transposes) costs ``positions × kernel.size``
    multiply-adds, where ``positions`` is the product of the spatial dimensions of
    its output (of its input for transposed convolutions) — i.e.
    ``H·W·C_out·k·k·C_in/groups`` for a convolution and ``in·out`` for a dense
    layer. Batch normalisation, activations, pooling and additions are not counted
    (under 1 % of these networks' cost). Only the layers of ``model`` count: a
    model cut at an intermediate layer costs what runs up to that layer. The shapes
    are the model's symbolic ones, so the input size must be fixed.
    """
    macs = 0
    for layer in walk_layers(model):
        kernels = [getattr(layer, n, None) for n in ("kernel", "depthwise_kernel", "pointwise_kernel")]
        kernels = [k for k in kernels if k is not None and hasattr(k, "shape")]
        if not kernels:
            continue
        transposed = "Transpose" in type(layer).__name__
        try:
            nodes = layer._inbound_nodes
        except AttributeError:
            nodes = []
        for node in nodes:
            tensor = (node.input_tensors if transposed else node.output_tensors)[0]
            shape = tuple(tensor.shape)
            if any(d is None for d in shape[1:-1]):
                raise ValueError(f"count_gflops needs a fixed input size; {layer.name} has shape {shape}")
            positions = int(np.prod(shape[1:-1], dtype=np.int64)) if len(shape) > 2 else 1
            macs += positions * sum(int(np.prod(tuple(k.shape), dtype=np.int64)) for k in kernels)
    return 2.0 * macs / 1e9


def walk_layers(model):
    """The layers of ``model``, nested models opened."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers and not hasattr(layer, "kernel"):
            yield from walk_layers(layer)
        else:
            yield layer


def largest_activation_bytes(model) -> int:
    """Bytes of the largest layer output of ``model`` for one image, as float32.

    Read from the layers' symbolic output shapes (the input size must be fixed): about a
    third to a half of what TensorFlow holds at once per image during a forward pass.
    """
    largest = 0
    for layer in walk_layers(model):
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.output_tensors:
                shape = tuple(tensor.shape)[1:]
                if all(d is not None for d in shape):
                    largest = max(largest, int(np.prod(shape, dtype=np.int64)))
    return 4 * largest


def stratified_validation_split(y: np.ndarray, fraction: float, seed: int, who: str,
                                epochs: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions of the training part and of a stratified validation part of ``y`` (class indices).

    ``fraction`` 0, or too few images to give every class a validation image and a training
    image (every class needs two), gives ``(all, None)``: no validation, no early stopping
    (logged at INFO, naming ``who``).
    """
    idx = np.arange(len(y))
    if fraction == 0:
        return idx, None
    counts = np.bincount(y)
    n_val = int(round(fraction * len(y)))
    n_classes = len(counts)
    if counts.min() < 2 or n_val < n_classes or len(y) - n_val < n_classes:
        log.info("%s: %d training images in %d classes are too few for a stratified validation part "
                 "of %.0f%%; training for all %d epochs without early stopping",
                 who, len(y), n_classes, 100 * fraction, epochs)
        return idx, None
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(idx, test_size=n_val, stratify=y, random_state=seed)
    return np.sort(train), np.sort(val)


def fit_classifier(keras, model, X: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray | None, *,
                   epochs: int, batch_size: int, patience: int) -> dict[str, list[float]]:
    """Train a compiled softmax ``model`` on ``X[train]`` with ``model.fit``; returns its history.

    With a validation part ``val``, ``EarlyStopping(monitor="val_loss", patience=patience,
    restore_best_weights=True)`` stops training and keeps the weights of the epoch with
    the lowest validation loss (also when all ``epochs`` ran). Without one, all
    ``epochs`` run. TensorFlow's spurious C++ log line about its tf.data pipeline is
    filtered from stderr (see :func:`quiet_stderr`). The images are shuffled each epoch by TensorFlow's global seed: call
    it inside :func:`seeded` for a repeatable order.
    """
    callbacks, validation = [], None
    if val is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(patience),
                                                       restore_best_weights=True))
        validation = (X[val], y[val])
    with quiet_stderr(_FIT_NOISE):
        hist = model.fit(X[train], y[train], batch_size=int(batch_size), epochs=int(epochs), shuffle=True,
                         validation_data=validation, callbacks=callbacks, verbose=0)
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}
