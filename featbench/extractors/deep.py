"""Embeddings from ImageNet CNNs in ``keras.applications``: VGG16, ResNet50, and any other model.

TensorFlow and Keras are imported on first use (``fit``/``transform``), never at
module import, so ``featbench list`` stays fast. :func:`import_tensorflow` is the
one place that imports them: it quiets TensorFlow's start-up logging and sets its
thread pools from the cores this process may use.

Weights are never downloaded when a local copy exists. For ``weights="imagenet"``
the file Keras asks for (the very name Keras derives for that model and its
arguments, e.g. ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``) is looked
for in the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``), then
in ``$FEATBENCH_DATA/keras/models``; only then may Keras download it. If that
fails too, ``fit`` raises :class:`~featbench.errors.WeightsUnavailableError`,
which the runner records as ``skipped: <message>``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import inspect
import logging
import os
import random
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from featbench._paths import featbench_data
from featbench.datasets.io import file_sha256
from featbench.errors import ConfigError, WeightsUnavailableError
from featbench.extractors.base import Extractor, ExtractorSpec, resize, to_rgb
from featbench.registry import register_extractor

__all__ = [
    "AUTO_BATCH_SIZES",
    "AUTO_WINDOWS",
    "AUTO_WINDOW_IMAGES",
    "BatchSearch",
    "KerasApplication",
    "VGG16",
    "ResNet50",
    "import_tensorflow",
    "keras_application_names",
    "weights_folders",
    "count_gflops",
    "largest_activation_bytes",
    "seeded",
]

log = logging.getLogger("featbench")

# Constructor arguments featbench sets itself; model_kwargs may not name them.
_RESERVED = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
             "classifier_activation")

# Lines TensorFlow writes to stderr on import whatever TF_CPP_MIN_LOG_LEVEL says (TF >= 2.20
# logs them before absl is initialised); anything else it writes is passed on.
_IMPORT_NOISE = ("All log messages before absl::InitializeLog", "oneDNN custom operations are on",
                 "To enable the following instructions", "This TensorFlow binary is optimized",
                 "Unable to register cu", "Could not find cuda drivers", "TF-TRT Warning",
                 "computation placer already registered", "cuda_", "E0000 00:00")

#: Batch sizes ``batch_size="auto"`` tries, smallest first (see :class:`BatchSearch`).
AUTO_BATCH_SIZES = (8, 16, 32, 64, 128, 256)
#: Timed windows per candidate, after one warm-up batch (the first pass at a batch size larger than
#: any before runs 20-40 % slower while TensorFlow's buffers grow); the fastest window counts.
AUTO_WINDOWS = 2
#: Images a timed window holds at least (whole batches), so that small batches are not timed on
#: a few milliseconds alone.
AUTO_WINDOW_IMAGES = 16
#: The search goes on to the next (twice larger) candidate only while each is at least this much
#: faster per image than the fastest before it.
AUTO_MIN_GAIN = 0.02
#: Candidates whose largest activation (batch x the model's largest layer output, float32) would take
#: more than this share of the machine's memory are not tried.
AUTO_MEMORY_SHARE = 1 / 16
#: The batch size of ``"auto"`` before any candidate has been measured (calls with too few images).
AUTO_FALLBACK_BATCH = 32
#: The clock batches are timed with (a name of its own, so tests can replace it).
_clock = time.perf_counter

_TF_LOCK = threading.Lock()
_TF_READY = False
_GET_FILE_LOCK = threading.Lock()


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
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. captured by a test runner)
        importlib.import_module(module)
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            importlib.import_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line.strip() and not any(n in line for n in _IMPORT_NOISE)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def keras_application_names() -> list[str]:
    """Model constructors in ``keras.applications`` (``"MobileNet"``, ``"ResNet50"``...)."""
    _, keras = import_tensorflow()
    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n)))


def keras_home() -> Path:
    """The Keras cache folder as Keras documents it: ``$KERAS_HOME``, else ``~/.keras``.

    Read at call time (Keras itself reads ``KERAS_HOME`` once, at import).
    """
    value = os.environ.get("KERAS_HOME")
    return Path(os.path.expanduser(value)) if value else Path.home() / ".keras"


def weights_folders() -> list[Path]:
    """Where ImageNet weight files are looked for, in order: the Keras cache, then ``$FEATBENCH_DATA``."""
    folders = [keras_home() / "models"]
    data = featbench_data()
    if data is not None:
        folders.append(data / "keras" / "models")
    return folders


@functools.lru_cache(maxsize=16)
def _weights_digest(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path).hex()


def weights_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a weights file, memoised on path, size and modification time: a run
    hashes each file once, and a file replaced in place is hashed again."""
    st = os.stat(path)
    return _weights_digest(os.path.realpath(path), st.st_size, st.st_mtime_ns)


#: origin URL → why its download failed, so that one run tries each file once (not once per split).
_FAILED_DOWNLOADS: dict[str, str] = {}


@contextlib.contextmanager
def _local_weights_first(display: str, used: list[Path]):
    """Make Keras's ``get_file`` serve weight files from local folders before any download.

    Every ``keras.applications`` constructor calls ``keras.src.utils.file_utils.get_file``
    with the file name it wants (derived from the model and its arguments, as Keras
    does). Inside this context that call returns a local copy when one exists
    (checked against the hash Keras gives, when it gives one); otherwise it lets
    Keras download into the Keras cache and turns a failure into
    :class:`WeightsUnavailableError`. The path served is appended to ``used``.
    """
    from keras.src.utils import file_utils

    original = file_utils.get_file
    sig = inspect.signature(original)

    def get_file(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        fname = a["fname"] or os.path.basename(str(a["origin"]))
        if a["cache_subdir"] != "models" or a.get("untar") or a.get("extract"):
            return original(*args, **kwargs)
        expected = a.get("file_hash") or a.get("md5_hash")
        algorithm = "md5" if a.get("md5_hash") and not a.get("file_hash") else a.get("hash_algorithm", "auto")
        folders = weights_folders()
        bad = []
        for folder in folders:
            path = folder / fname
            if not path.is_file():
                continue
            if expected and not file_utils.validate_file(str(path), expected, algorithm=algorithm):
                bad.append(str(path))
                log.warning("%s does not match the hash Keras expects (%s); ignoring it", path, expected)
                continue
            used.append(path)
            return str(path)
        where = " or ".join(str(f) for f in folders)
        if len(folders) < 2:
            where += " (or in $FEATBENCH_DATA/keras/models)"
        damaged = f"; {', '.join(bad)} did not match the expected hash" if bad else ""
        origin = str(a["origin"])
        if origin in _FAILED_DOWNLOADS:  # tried in this process already (e.g. the previous split): no retry
            raise WeightsUnavailableError(
                f"ImageNet weights for {display} not available — put {fname} in {where} "
                f"or use weights = \"random\" (download failed: {_FAILED_DOWNLOADS[origin]}{damaged})"
            )
        try:
            kwargs = {**bound.arguments, "cache_dir": str(keras_home())}
            path = original(**kwargs)
        except Exception as exc:
            reason = " ".join(str(exc).replace(f"URL fetch failure on {origin}: ", "").split())[:200]
            _FAILED_DOWNLOADS[origin] = reason
            raise WeightsUnavailableError(
                f"ImageNet weights for {display} not available — put {fname} in {where} "
                f"or use weights = \"random\" (download failed: {reason}{damaged})"
            ) from exc
        used.append(Path(path))
        return path

    with _GET_FILE_LOCK:
        file_utils.get_file = get_file
        try:
            yield
        finally:
            file_utils.get_file = original


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
    (under 1 % of these networks' cost). The shapes are the model's symbolic ones,
    so the input size must be fixed.
    """
    macs = 0
    for layer in _walk_layers(model):
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


def _walk_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers and not hasattr(layer, "kernel"):
            yield from _walk_layers(layer)
        else:
            yield layer


def _physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def largest_activation_bytes(model) -> int:
    """Bytes of the largest layer output of ``model`` for one image, as float32.

    Read from the layers' symbolic output shapes (the input size must be fixed): about a
    third to a half of what TensorFlow holds at once per image during a forward pass.
    """
    largest = 0
    for layer in _walk_layers(model):
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.output_tensors:
                shape = tuple(tensor.shape)[1:]
                if all(d is not None for d in shape):
                    largest = max(largest, int(np.prod(shape, dtype=np.int64)))
    return 4 * largest


@dataclass
class BatchSearch:
    """The measured choice of ``batch_size="auto"``: a climb over :data:`AUTO_BATCH_SIZES`.

    Candidates are tried smallest first, each on consecutive batches of real images
    (their features are kept; :meth:`images_for` says how many): one batch warms the
    candidate up, then :data:`AUTO_WINDOWS` windows of whole batches, each of at least
    :data:`AUTO_WINDOW_IMAGES` images, are timed as ``transform`` runs them (decoding and
    resizing of the next batch overlapped, as always); the fastest window gives the
    candidate's seconds per image (the least disturbed by other processes).
    The climb goes on while each candidate is at least :data:`AUTO_MIN_GAIN` faster per
    image than the fastest before it, and stops at the first that is not (or after the
    last); the fastest measured is chosen. Throughput rises with the batch size while
    larger batches keep the cores busier, then flattens or falls once a batch's
    activations outgrow the caches; the climb stops where it flattens (about 16 or 32
    images at 224 px on a CPU, 8 on some), so it neither pays the memory of large
    batches for gains within the noise nor stops short where they are large (a GPU).

    Parameters
    ----------
    candidates : tuple of int
        Batch sizes to try, ascending.

    Attributes
    ----------
    seconds_per_image : dict of int to float
        What each candidate tried so far measured.
    done : bool
        True once the climb has stopped; ``best`` is then final.
    """

    candidates: tuple[int, ...]
    seconds_per_image: dict[int, float] = field(default_factory=dict)
    done: bool = False

    @staticmethod
    def window(batch: int) -> int:
        """Batches in one timed window of ``batch``-image batches."""
        return max(1, -(-AUTO_WINDOW_IMAGES // batch))

    @staticmethod
    def images_for(batch: int) -> int:
        """Images measuring ``batch`` takes: a warm-up batch and the timed windows."""
        return batch * (1 + AUTO_WINDOWS * BatchSearch.window(batch))

    def next_candidate(self) -> int | None:
        """The next batch size to measure, or None when the climb is over."""
        if not self.done:
            for b in self.candidates:
                if b not in self.seconds_per_image:
                    return b
            self.done = True
        return None

    def record(self, batch: int, seconds_per_image: float) -> None:
        """Note what ``batch`` measured; stop the climb unless it gained enough on the fastest before it."""
        before = min(self.seconds_per_image.values(), default=None)
        self.seconds_per_image[batch] = seconds_per_image
        gained = before is None or seconds_per_image <= before * (1 - AUTO_MIN_GAIN)
        if not gained or len(self.seconds_per_image) == len(self.candidates):
            self.done = True

    @property
    def best(self) -> int | None:
        """The fastest batch size measured so far (None before any)."""
        if not self.seconds_per_image:
            return None
        return min(self.seconds_per_image, key=self.seconds_per_image.__getitem__)


# =============================================================================
# extractors
# =============================================================================


class KerasApplication(Extractor):
    """Base of the ``keras.applications`` extractors (see :class:`KerasApp` for the parameters)."""

    #: The ``keras.applications`` constructor; None where the ``model`` parameter names it.
    model_name: ClassVar[str | None] = None

    _parameter_constraints: ClassVar[dict] = {
        "pooling": [StrOptions({"avg", "max"})],
        "layer": [str, None],
        "input_size": [Interval(Integral, 32, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "weights": [str, os.PathLike],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
    }

    # -- parameters ---------------------------------------------------------------------
    def _model(self) -> str:
        return self.model_name

    def _model_kwargs(self) -> dict:
        return {}

    def _display(self) -> str:
        kw = self._model_kwargs()
        return self._model() + ("(" + ", ".join(f"{k}={v}" for k, v in sorted(kw.items())) + ")" if kw else "")

    def _weights_kind(self) -> str:
        w = os.fspath(self.weights)
        return w if w in ("imagenet", "random") else "file"

    def _weights_path(self) -> Path:
        raw = os.fspath(self.weights)
        path = Path(os.path.expanduser(os.path.expandvars(raw)))
        data = featbench_data()
        if not path.is_file() and not path.is_absolute() and data is not None:
            alt = data / path
            path = alt if alt.is_file() else path
        if not path.is_file():
            raise ConfigError(
                f"The 'weights' parameter of {type(self).__name__} must be \"imagenet\", \"random\" or "
                f"the path of an existing weights file (.h5, .weights.h5, .keras). Got {raw!r}: no such file."
            )
        return path

    def _check_params(self) -> None:
        if self._weights_kind() == "file":
            self._weights_path()

    def content_token(self) -> str | None:
        if self._weights_kind() != "file":
            return None
        try:
            path = self._weights_path()
        except ConfigError:
            return None  # fit reports the missing file
        return weights_digest(path)

    @property
    def weights_label(self) -> str:
        kind = self._weights_kind()
        if kind == "file":
            return f"file:{Path(os.fspath(self.weights)).name}"
        return kind

    # -- the network ------------------------------------------------------------------
    def _net_key(self) -> tuple:
        key = [self._model(), tuple(sorted(self._model_kwargs().items())), self.layer, self.pooling,
               self.input_size, os.fspath(self.weights)]
        if self._weights_kind() == "random":
            key.append(self.random_state)
        if self._weights_kind() == "file":
            stat = self._weights_path().stat()
            key += [stat.st_mtime_ns, stat.st_size]
        return tuple(key)

    def _fit(self, images, y) -> None:
        net = self._ensure_net()
        self.n_features_out_ = net["dim"]
        self.weights_file_ = net["weights_file"]

    def _ensure_net(self) -> dict:
        """Build (once per set of parameters) the feature model and its compiled call."""
        key = self._net_key()
        net = self.__dict__.get("_net")
        if net is not None and net["key"] == key:
            return net
        self.__dict__.pop("_net", None)
        net = self._build()
        net["key"] = key
        self._net = net
        return net

    def _build(self) -> dict:
        tf, keras = import_tensorflow()
        name = self._model()
        ctor = getattr(keras.applications, name)
        preprocess = importlib.import_module(ctor.__module__).preprocess_input
        s = int(self.input_size)
        kwargs = {**self._model_kwargs(), "include_top": False, "pooling": None, "input_shape": (s, s, 3)}
        kind = self._weights_kind()
        used: list[Path] = []
        with warnings.catch_warnings():
            # MobileNet at a size without its own weights loads the 224 ones and says so.
            warnings.filterwarnings("ignore", message=r".*Weights for input shape \(224, 224\) will be loaded")
            try:
                if kind == "imagenet":
                    with _local_weights_first(self._display(), used):
                        base = ctor(weights="imagenet", **kwargs)
                else:
                    with seeded(self.random_state):
                        base = ctor(weights=None, **kwargs)
                    if kind == "file":
                        path = self._weights_path()
                        try:
                            base.load_weights(str(path))
                        except Exception as exc:
                            raise ConfigError(
                                f"{type(self).__name__}: cannot load weights file '{path}' into "
                                f"{self._display()} (include_top=False, input_size={s}): {exc}"
                            ) from exc
                        used.append(path)
            except (ValueError, TypeError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                raise ConfigError(f"{type(self).__name__}: keras.applications.{self._display()} "
                                  f"with input_size={s} cannot be built: {exc}") from exc

        if self.layer is None:
            out = base.output
        else:
            names = [lyr.name for lyr in base.layers]
            if self.layer not in names:
                close = difflib.get_close_matches(self.layer, names, n=5, cutoff=0.5)
                hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
                raise ConfigError(
                    f"The 'layer' parameter of {type(self).__name__} must name a layer of "
                    f"{self._display()}. Got {self.layer!r}{hint} (all {len(names)} layers: "
                    f"keras.applications.{name}(include_top=False).summary())"
                )
            out = base.get_layer(self.layer).output
        rank = len(out.shape)
        if rank == 4:
            pool = keras.layers.GlobalAveragePooling2D if self.pooling == "avg" else keras.layers.GlobalMaxPooling2D
            out = pool(name="featbench_pool")(out)
        elif rank == 3:
            pool = keras.layers.GlobalAveragePooling1D if self.pooling == "avg" else keras.layers.GlobalMaxPooling1D
            out = pool(name="featbench_pool")(out)
        elif rank != 2:
            raise ConfigError(f"{type(self).__name__}: layer {self.layer!r} has output rank {rank}; "
                              "expected a feature map (4) or a vector (2)")
        model = keras.Model(base.input, out, name=f"featbench_{base.name}")

        def features(x):
            # The model's preprocess_input runs in the graph, on TensorFlow's threads: the prefetch
            # thread only decodes and resizes, and hands over uint8 (a quarter of the bytes).
            return model(preprocess(tf.cast(x, tf.float32)), training=False)

        predict = tf.function(features, input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8)],
                              autograph=False)
        return {
            "base": base,
            "model": model,
            "predict": predict,
            "preprocess": preprocess,
            "dim": int(out.shape[-1]),
            "weights_file": str(used[0]) if used else None,
            "n_params": int(model.count_params()),
            "gflops": count_gflops(model),
            "activation_bytes": largest_activation_bytes(model),
            "search": None,
        }

    @property
    def keras_model(self):
        """The Keras feature model (backbone without top, cut at ``layer``, then pooled); built on first use."""
        return self._ensure_net()["model"]

    @property
    def keras_backbone(self):
        """The ``keras.applications`` model (``include_top=False``, no pooling) whose weights are used.

        ``keras_backbone.save_weights("x.weights.h5")`` writes a file that ``weights="x.weights.h5"`` loads.
        """
        return self._ensure_net()["base"]

    # -- extraction -----------------------------------------------------------------------
    def _prepare(self, images, start: int, stop: int, batch: np.ndarray | None = None) -> np.ndarray:
        """``images[start:stop]`` decoded, in RGB and resized: uint8 ``(stop - start, s, s, 3)``
        (written into ``batch`` when given)."""
        s = int(self.input_size)
        if batch is None:
            batch = np.empty((stop - start, s, s, 3), dtype=np.uint8)
        for j, i in enumerate(range(start, stop)):
            batch[j] = resize(to_rgb(images[i]), (s, s))
        return batch

    def _prepare_now(self, images, start: int, stop: int, pool: ThreadPoolExecutor) -> np.ndarray:
        """:meth:`_prepare` with nothing to overlap yet: this thread and ``pool``'s share the batch."""
        s = int(self.input_size)
        batch = np.empty((stop - start, s, s, 3), dtype=np.uint8)
        mid = start + (stop - start) // 2
        first_half = pool.submit(self._prepare, images, start, mid, batch[:mid - start])
        self._prepare(images, mid, stop, batch[mid - start:])
        first_half.result()
        return batch

    def _auto_candidates(self, net: dict) -> tuple[int, ...]:
        """:data:`AUTO_BATCH_SIZES` whose activations fit :data:`AUTO_MEMORY_SHARE` of this machine's memory."""
        memory = _physical_memory_bytes() or 8 * 2**30
        budget = AUTO_MEMORY_SHARE * memory
        fits = tuple(b for b in AUTO_BATCH_SIZES if b * net["activation_bytes"] <= budget)
        return fits or AUTO_BATCH_SIZES[:1]

    def _search(self, net: dict) -> BatchSearch | None:
        """The batch-size search of this network on this machine; None when ``batch_size`` is an int."""
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            return None
        if net.get("search") is None:
            net["search"] = BatchSearch(self._auto_candidates(net))
        return net["search"]

    def _current_batch(self, net: dict) -> int:
        search = self._search(net)
        if search is None:
            return int(self.batch_size)
        if search.best is not None:
            return search.best
        return min(AUTO_FALLBACK_BATCH, search.candidates[-1])

    @property
    def batch_size_(self) -> int | None:
        """The batch size ``transform`` runs at: ``batch_size`` itself, or what ``"auto"`` chose.

        With ``"auto"``: the fastest candidate measured so far (final once
        ``batch_search_.done``), :data:`AUTO_FALLBACK_BATCH` while no call has had enough
        images to measure one, None before the network is built (``fit``).
        """
        net = self.__dict__.get("_net")
        if net is None:
            return int(self.batch_size) if isinstance(self.batch_size, Integral) else None
        return self._current_batch(net)

    @property
    def batch_search_(self) -> BatchSearch | None:
        """What ``batch_size="auto"`` measured so far on this machine (``seconds_per_image`` per batch
        size tried, ``done``, ``best``); None when ``batch_size`` is an int or before ``fit``."""
        net = self.__dict__.get("_net")
        return self._search(net) if net is not None else None

    def _transform_batch(self, images) -> np.ndarray:
        net = self._ensure_net()
        n = len(images)
        out = np.empty((n, net["dim"]), dtype=np.float32)
        if n == 0:
            return out
        search = self._search(net)
        pos = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="featbench-prefetch") as pool:
            # batch_size="auto": the first images measure the candidates, as long as images remain
            # for a candidate's batches; a later call goes on where this one stopped.
            while search is not None and (b := search.next_candidate()) is not None:
                need, w = BatchSearch.images_for(b), BatchSearch.window(b)
                if n - pos < need:
                    break
                seconds = self._run_batches(images, out, net, pool, [(i, i + b) for i in range(pos, pos + need, b)])
                windows = [sum(seconds[1 + j * w:1 + (j + 1) * w]) for j in range(AUTO_WINDOWS)]
                search.record(b, min(windows) / (w * b))
                pos += need
            if pos < n:
                b = self._current_batch(net)
                self._run_batches(images, out, net, pool, [(i, min(i + b, n)) for i in range(pos, n, b)])
        return out

    def _run_batches(self, images, out: np.ndarray, net: dict, pool: ThreadPoolExecutor,
                     spans: list[tuple[int, int]]) -> list[float]:
        """Features of ``images[start:stop]`` into ``out`` for each span; the wall seconds of each.

        Batch k+1 is decoded and resized in ``pool``'s thread while TensorFlow runs batch k
        (OpenCV and TensorFlow both release the GIL); at most two prepared batches
        exist at a time. The first batch, with nothing to overlap, is prepared by this thread
        and ``pool``'s together. A span's seconds run from waiting for its prepared batch to
        its features being copied out: the steady-state cost of a batch, preparation overlapped
        (the first span's include preparing it).
        """
        seconds = []
        t0 = _clock()
        job: Future = Future()
        job.set_result(self._prepare_now(images, *spans[0], pool))
        for k, (start, stop) in enumerate(spans):
            if k:
                t0 = _clock()
            batch = job.result()
            if k + 1 < len(spans):
                job = pool.submit(self._prepare, images, *spans[k + 1])
            m = len(batch)
            if m == 1:  # a batch of one takes another oneDNN kernel; a pair keeps it with the others
                batch = np.concatenate([batch, batch])
            out[start:stop] = net["predict"](batch).numpy()[:m]
            seconds.append(_clock() - t0)
        return seconds

    def report_info(self) -> dict:
        """``n_params`` of the feature model, ``gflops_per_image`` at ``input_size`` (see
        :func:`count_gflops`) and the ``batch_size`` it ran at (what ``"auto"`` chose)."""
        net = self.__dict__.get("_net")
        if net is None:
            return {}
        return {"n_params": net["n_params"], "gflops_per_image": round(net["gflops"], 4),
                "batch_size": self._current_batch(net)}

    # -- pickling / cloning: the TensorFlow model is rebuilt on demand, never pickled ----------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_net", None)
        return state


_SHARED_PARAMS_DOC = """
    pooling : {"avg", "max"}, default="avg"
        Global pooling of the last feature map (or of ``layer``'s output) into one vector.
    layer : str or None, default=None
        Name of an intermediate layer whose output is pooled instead of the last
        block's (``keras_model.summary()`` of the backbone lists the names).
    input_size : int, default=224
        Images are converted to RGB and resized to ``input_size × input_size``
        (area interpolation when shrinking, so anti-aliased; linear when growing;
        aspect ratio not kept, as ``keras.utils.load_img(target_size=...)``), then
        passed through the model's own ``preprocess_input`` (in float32, inside the
        traced function). At least 32.
    batch_size : int or "auto", default="auto"
        Images per forward pass. Memory does not grow with the number of images:
        they are decoded and resized batch by batch (the next batch in a
        background thread while the current one runs). ``"auto"`` measures
        the fastest on this machine as it goes: the first images of the first
        ``transform`` call with enough of them run at 8, 16, 32, ... (a warm-up
        batch, then two timed windows of at least 16 images each; features kept,
        nothing computed twice) while each size is at least
        2 % faster per image than those before it, and the rest run at the fastest
        (see :class:`BatchSearch`; ``batch_size_`` and ``report_info()`` say
        which). The best batch depends on
        the machine's cores and caches (8 on some 2-core machines, 32 on others);
        sizes whose largest activation would take over 1/16 of the memory are not
        tried. A call with too few images for the next candidate runs at the best
        measured so far (32 before any).
    weights : {"imagenet", "random"} or path, default="imagenet"
        ``"imagenet"``: the Keras ImageNet weights, looked for in
        ``$KERAS_HOME/models`` (default ``~/.keras/models``), then in
        ``$FEATBENCH_DATA/keras/models``, under the exact file name Keras uses;
        only then does Keras try to download them, and if that fails ``fit`` raises
        :class:`~featbench.errors.WeightsUnavailableError` naming the file (the
        runner records ``skipped: ...``). ``"random"``: Keras's own initialisation,
        seeded by ``random_state`` (a baseline: what does the architecture alone
        give?). A path (``~`` and ``$VARS`` expanded; a relative path is looked
        for in the current directory, then under ``$FEATBENCH_DATA``): a weights
        file for the backbone without top (``.h5`` as Keras publishes them, or
        ``.weights.h5`` from ``keras_backbone.save_weights``).
    random_state : int, default=0
        Seed of the random weights (``weights="random"``); two fits with the same
        seed give identical weights and features."""

_SHARED_NOTES = """
    ``report_info()`` gives ``n_params`` (of the feature model),
    ``gflops_per_image``: 2 × the multiply-adds of its convolution and dense
    layers at ``input_size``, counted from the layers' kernel and output shapes
    (:func:`count_gflops`; batch norm, activations and pooling are left out), and
    ``batch_size``, the batch size it ran at (what ``"auto"`` chose).

    Features are deterministic for given parameters, batch size and machine. An
    image's row depends on the batch it is in only up to float32 re-association
    (the same products summed in another order when oneDNN blocks the batch
    differently: about 1e-7 of the feature scale); a lone image is run as a pair,
    since a batch of one takes yet another kernel. So ``batch_size="auto"``, which
    may choose another size on another machine or run, changes rows only within
    that tolerance; give an int for bit-identical runs. The choice belongs to the
    process and machine: it is kept with the built network (a second ``transform``
    does not measure again), and a clone, an unpickled copy or a change of the
    network's parameters measures afresh."""


@register_extractor("keras-app")
class KerasApp(KerasApplication):
    __doc__ = f"""Global-pooled embedding from any ``keras.applications`` model.

    The backbone is built with ``include_top=False`` at ``input_size`` and its last
    feature map (or that of ``layer``) is pooled into a vector.

    Parameters
    ----------
    model : str, default="MobileNet"
        A ``keras.applications`` constructor name, e.g. ``"MobileNet"``,
        ``"EfficientNetB0"``, ``"DenseNet121"``; an unknown name is an error listing
        close matches.
    model_kwargs : dict or None, default=None
        The model's own constructor arguments, e.g. ``{{alpha = 0.25}}`` in TOML.
        featbench sets ``{", ".join(_RESERVED)}`` itself; naming them is an error.
    alpha : float or None, default=None
        Shortcut for ``model_kwargs = {{alpha = ...}}`` (width multiplier of
        MobileNet, MobileNetV2 and MobileNetV3), so an experiment can say
        ``model = "MobileNet"`` and ``alpha = 0.25``. Giving both with different
        values is an error; so is ``alpha`` for a model without that argument.
{_SHARED_PARAMS_DOC}

    Notes
    -----
    Keras picks the ImageNet file from the model's arguments; featbench asks Keras
    for the name, so it matches exactly. MobileNet (v1) has ImageNet weights for
    input sizes 128, 160, 192 and 224 (``mobilenet_<alpha>_<size>_tf_no_top.h5``);
    at any other ``input_size`` Keras loads the 224 file (convolution weights do not
    depend on the input size), so ``alpha=0.25`` at any size other than
    128/160/192 uses ``mobilenet_2_5_224_tf_no_top.h5``.
{_SHARED_NOTES}

    References
    ----------
    .. [1] Howard, A. G. et al. (2017). MobileNets: Efficient convolutional neural
           networks for mobile vision applications. arXiv:1704.04861.
    .. [2] Chollet, F. et al. Keras Applications, https://keras.io/api/applications/.
    """

    spec = ExtractorSpec(
        family="deep",
        color="rgb",
        description="global-pooled embedding of any keras.applications model (include_top=False)",
        input_size=None,
        requires=("tensorflow",),
        references=(
            "Howard et al. 2017, MobileNets: Efficient convolutional neural networks for mobile vision applications",
            "Keras Applications (keras.io/api/applications)",
        ),
        parallel=False,
    )
    _parameter_constraints: ClassVar[dict] = {
        **KerasApplication._parameter_constraints,
        "model": [str],
        "model_kwargs": [dict, None],
        "alpha": [Interval(Real, 0, None, closed="neither"), None],
    }
    test_params: ClassVar[dict] = {"model": "MobileNet", "alpha": 0.25, "input_size": 32, "weights": "random",
                                   "batch_size": 8}

    def __init__(
        self,
        model: str = "MobileNet",
        model_kwargs: dict | None = None,
        alpha: float | None = None,
        pooling: str = "avg",
        layer: str | None = None,
        input_size: int = 224,
        batch_size: int | str = "auto",
        weights: str = "imagenet",
        random_state: int = 0,
    ) -> None:
        self.model = model
        self.model_kwargs = model_kwargs
        self.alpha = alpha
        self.pooling = pooling
        self.layer = layer
        self.input_size = input_size
        self.batch_size = batch_size
        self.weights = weights
        self.random_state = random_state

    def _model(self) -> str:
        return self.model

    def _model_kwargs(self) -> dict:
        kw = dict(self.model_kwargs or {})
        if self.alpha is not None:
            kw["alpha"] = float(self.alpha)
        return kw

    def _check_params(self) -> None:
        names = keras_application_names()
        if self.model not in names:
            lower = {n.lower(): n for n in names}
            close = difflib.get_close_matches(self.model, names, n=4, cutoff=0.5)
            if self.model.lower() in lower and lower[self.model.lower()] not in close:
                close.insert(0, lower[self.model.lower()])
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            raise ConfigError(
                f"The 'model' parameter of KerasApp must be a keras.applications model name. "
                f"Got {self.model!r}; {hint}known: {', '.join(names)}"
            )
        _, keras = import_tensorflow()
        accepted = [p for p in inspect.signature(getattr(keras.applications, self.model)).parameters
                    if p not in _RESERVED and p != "name"]
        given = dict(self.model_kwargs or {})
        reserved = [k for k in given if k in _RESERVED]
        if reserved:
            raise ConfigError(
                f"The 'model_kwargs' parameter of KerasApp may not set {', '.join(map(repr, reserved))}: "
                "featbench sets include_top=False, pooling, input_shape (from input_size) and weights itself"
            )
        wrong = [k for k in given if k not in accepted]
        if wrong:
            raise ConfigError(
                f"The 'model_kwargs' parameter of KerasApp has {', '.join(map(repr, wrong))}, which "
                f"keras.applications.{self.model} does not accept; accepted: {', '.join(accepted) or '(none)'}"
            )
        if self.alpha is not None:
            if "alpha" not in accepted:
                raise ConfigError(
                    f"The 'alpha' parameter of KerasApp applies to models with a width multiplier "
                    f"(MobileNet, MobileNetV2, MobileNetV3Small/Large); keras.applications.{self.model} has none"
                )
            if "alpha" in given and float(given["alpha"]) != float(self.alpha):
                raise ConfigError(
                    f"KerasApp got alpha={self.alpha} and model_kwargs alpha={given['alpha']}; give one of them"
                )
        super()._check_params()


@register_extractor("vgg16")
class VGG16(KerasApplication):
    __doc__ = f"""VGG16 embedding: global-pooled last convolutional block (512 values).

    ``keras.applications.VGG16(include_top=False)`` at ``input_size``; the output of
    ``block5_conv3`` after ``block5_pool`` (or of ``layer``) is pooled.

    Parameters
    ----------
{_SHARED_PARAMS_DOC}

    Notes
    -----
    The ImageNet file is ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``
    (58.9 MB, md5 checked as Keras does). About 15.3 G multiply-adds per image at 224.
{_SHARED_NOTES}

    References
    ----------
    .. [1] Simonyan, K., Zisserman, A. (2015). Very deep convolutional networks for
           large-scale image recognition. ICLR 2015, arXiv:1409.1556.
    """

    model_name = "VGG16"
    spec = ExtractorSpec(
        family="deep",
        color="rgb",
        description="VGG16 (ImageNet or random weights), global-pooled last conv block, 512-d",
        input_size=(224, 224),
        requires=("tensorflow",),
        references=("Simonyan & Zisserman 2015, Very deep convolutional networks for large-scale image recognition",),
        parallel=False,
    )
    test_params: ClassVar[dict] = {"input_size": 32, "weights": "random", "batch_size": 8}

    def __init__(
        self,
        pooling: str = "avg",
        layer: str | None = None,
        input_size: int = 224,
        batch_size: int | str = "auto",
        weights: str = "imagenet",
        random_state: int = 0,
    ) -> None:
        self.pooling = pooling
        self.layer = layer
        self.input_size = input_size
        self.batch_size = batch_size
        self.weights = weights
        self.random_state = random_state


@register_extractor("resnet50")
class ResNet50(KerasApplication):
    __doc__ = f"""ResNet50 embedding: global-pooled output of the last residual stage (2048 values).

    ``keras.applications.ResNet50(include_top=False)`` at ``input_size``; the output
    of ``conv5_block3_out`` (or of ``layer``) is pooled.

    Parameters
    ----------
{_SHARED_PARAMS_DOC}

    Notes
    -----
    The ImageNet file is ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``
    (94.7 MB, hash checked as Keras does). About 3.9 G multiply-adds per image at 224.
{_SHARED_NOTES}

    References
    ----------
    .. [1] He, K., Zhang, X., Ren, S., Sun, J. (2016). Deep residual learning for
           image recognition. CVPR 2016, pp. 770-778.
    """

    model_name = "ResNet50"
    spec = ExtractorSpec(
        family="deep",
        color="rgb",
        description="ResNet50 (ImageNet or random weights), global-pooled last stage, 2048-d",
        input_size=(224, 224),
        requires=("tensorflow",),
        references=("He et al. 2016, Deep residual learning for image recognition",),
        parallel=False,
    )
    test_params: ClassVar[dict] = {"input_size": 32, "weights": "random", "batch_size": 8}

    def __init__(
        self,
        pooling: str = "avg",
        layer: str | None = None,
        input_size: int = 224,
        batch_size: int | str = "auto",
        weights: str = "imagenet",
        random_state: int = 0,
    ) -> None:
        self.pooling = pooling
        self.layer = layer
        self.input_size = input_size
        self.batch_size = batch_size
        self.weights = weights
        self.random_state = random_state

