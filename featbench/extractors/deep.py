"""Embeddings from ImageNet CNNs in ``keras.applications``: VGG16, ResNet50, and any other model.

TensorFlow and Keras are imported on first use (``fit``/``transform``), never at
module import, so ``featbench list`` stays fast (see :mod:`featbench.extractors._tf`).

Weights are never downloaded when a local copy exists. For ``weights="imagenet"``
featbench resolves the file first — the very name Keras uses for that model and
its arguments (e.g. ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, see
:func:`imagenet_weights_file`) — in the Keras cache (``$KERAS_HOME/models``,
default ``~/.keras/models``), then in ``$FEATBENCH_DATA/keras/models``, checked
against the hash Keras publishes; only then does ``keras.utils.get_file`` try to
download it. The path found is handed to the constructor's public ``weights=``
argument. If nothing is found, ``fit`` raises
:class:`~featbench.errors.WeightsUnavailableError`, which the runner records as
``skipped: <message>``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import inspect
import logging
import os
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from featbench._paths import featbench_data
from featbench.datasets.io import file_sha256
from featbench.errors import ConfigError, WeightsUnavailableError
from featbench.extractors._tf import (
    count_gflops,
    fit_classifier,
    import_tensorflow,
    largest_activation_bytes,
    seeded,
    stratified_validation_split,
)
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
    "imagenet_weights_file",
    "keras_application_names",
    "resolve_imagenet_weights",
    "weights_folders",
    "count_gflops",
    "largest_activation_bytes",
    "seeded",
]

log = logging.getLogger("featbench")

# Constructor arguments featbench sets itself; model_kwargs may not name them.
_RESERVED = ("include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
             "classifier_activation")

#: Batch sizes ``batch_size="auto"`` tries, smallest first (see :class:`BatchSearch`).
AUTO_BATCH_SIZES = (8, 16, 32, 64, 128, 256)
#: Timed windows per candidate, after one warm-up batch (the first pass at a batch size larger than
#: any before runs 20-40 % slower while TensorFlow's buffers grow); the fastest window counts.
AUTO_WINDOWS = 2
#: Images a timed window holds at least (whole batches), so that small batches are not timed on
#: a few milliseconds alone.
AUTO_WINDOW_IMAGES = 16
#: A candidate gains when it is at least this much faster per image than the fastest before it.
AUTO_MIN_GAIN = 0.02
#: The search stops after this many candidates in a row without a gain: throughput can stay flat over two
#: sizes and rise again after (ResNet50 at 224 px on 2 cores: 19.2 images/s at 8 and 16, 21.3 at 32, 22.7 at 64).
AUTO_PATIENCE = 2
#: Candidates whose largest activation (batch x the model's largest layer output, float32) would take
#: more than this share of the machine's memory are not tried.
AUTO_MEMORY_SHARE = 1 / 16
#: The batch size of ``"auto"`` before any candidate has been measured (calls with too few images).
AUTO_FALLBACK_BATCH = 32
#: The clock batches are timed with (a name of its own, so tests can replace it).
_clock = time.perf_counter

#: GeM's exponent (Radenović et al. 2019 start from p = 3) and the floor activations are clamped to.
GEM_P = 3.0
GEM_EPS = 1e-6
#: Fine-tuning: images per training step when ``batch_size="auto"``, and epochs without a lower
#: validation loss before early stopping.
FINE_TUNE_BATCH = 32
FINE_TUNE_PATIENCE = 3
#: Fine-tuning starts by training the new head alone on the frozen embeddings: at most this many
#: epochs, Adam at this rate, stopped after this many epochs without a lower validation loss.
HEAD_EPOCHS = 100
HEAD_LEARNING_RATE = 1e-3
HEAD_PATIENCE = 5


def keras_application_names() -> list[str]:
    """Model constructors in ``keras.applications`` (``"MobileNet"``, ``"ResNet50"``...)."""
    _, keras = import_tensorflow()
    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n)))


# =============================================================================
# ImageNet weights: resolved to a local file first, then downloaded by keras.utils.get_file
# =============================================================================


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


@functools.lru_cache(maxsize=16)
def _file_hash(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches_hash(path: Path, expected: str) -> bool:
    """As ``keras.utils.get_file`` checks: SHA-256 for a 64-digit hash, MD5 otherwise."""
    st = path.stat()
    algorithm = "sha256" if len(expected) == 64 else "md5"
    return _file_hash(os.path.realpath(path), algorithm, st.st_size, st.st_mtime_ns) == expected.lower()


_KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
#: Hashes Keras publishes for the "notop" files (keras/src/applications/vgg16.py, vgg19.py and
#: resnet.py WEIGHTS_HASHES[...][1], Keras 3.15); the MobileNet files have none.
_NOTOP_HASHES = {
    "vgg16": "6d6bbae143d832006294945121d1f1fc",
    "vgg19": "253f8cb515780f3b799900260a226db6",
    "resnet50": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101": "88cf7a10940856eca736dc7b7e228a21",
    "resnet152": "ee4c566cf9a93f14d82f913c2dc6dd0c",
    "resnet50v2": "fac2f116257151a9d068a22e544a4917",
    "resnet101v2": "c0ed64b8031c3730f411d2eb4eea35b5",
    "resnet152v2": "ed17cf2e0169df9d443503ef94b23b33",
}
_MOBILENET_ALPHAS = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}
_MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


@dataclass(frozen=True)
class WeightsFile:
    """A Keras ImageNet weights file: its name, where Keras downloads it from, its published hash."""

    name: str
    origin: str
    file_hash: str | None = None


def imagenet_weights_file(model: str, kwargs: dict, input_size: int) -> WeightsFile | None:
    """The ``include_top=False`` ImageNet file Keras loads for ``keras.applications.<model>(**kwargs)``
    at ``input_size``, named exactly as Keras names it; None for a model (or arguments) featbench
    has no name for, which Keras then resolves itself.

    Known: VGG16, VGG19, ResNet50/101/152 (and V2), MobileNet (``alpha`` 0.25, 0.5, 0.75, 1;
    separate files for 128, 160, 192 and 224 px, the 224 one at any other size) and MobileNetV2
    (``alpha`` 0.35 ... 1.4; 96 ... 224 px).
    """
    low = model.lower()
    if model in ("VGG16", "VGG19"):
        name = f"{low}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        return WeightsFile(name, f"{_KERAS_APPLICATIONS_URL}{low}/{name}", _NOTOP_HASHES[low])
    if low in _NOTOP_HASHES:  # the ResNets
        name = f"{low}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        return WeightsFile(name, f"{_KERAS_APPLICATIONS_URL}resnet/{name}", _NOTOP_HASHES[low])
    alpha = float(kwargs.get("alpha", 1.0))
    if model == "MobileNet":
        if kwargs.get("depth_multiplier", 1) != 1 or alpha not in _MOBILENET_ALPHAS:
            return None  # Keras refuses ImageNet weights for these; its own error is kept
        rows = input_size if input_size in (128, 160, 192, 224) else 224
        name = f"mobilenet_{_MOBILENET_ALPHAS[alpha]}_{rows}_tf_no_top.h5"
        return WeightsFile(name, f"{_KERAS_APPLICATIONS_URL}mobilenet/{name}")
    if model == "MobileNetV2":
        if alpha not in _MOBILENET_V2_ALPHAS:
            return None
        rows = input_size if input_size in (96, 128, 160, 192, 224) else 224
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5"
        return WeightsFile(name, f"{_KERAS_APPLICATIONS_URL}mobilenet_v2/{name}")
    return None


#: origin URL → why its download failed, so that one run tries each file once (not once per split).
_FAILED_DOWNLOADS: dict[str, str] = {}


def resolve_imagenet_weights(wanted: WeightsFile, display: str) -> Path:
    """The local path of ``wanted``: the Keras cache, then ``$FEATBENCH_DATA/keras/models``, then a
    download into the Keras cache by ``keras.utils.get_file``.

    A local copy that does not match the published hash is ignored (with a warning). If the
    download fails too, raises :class:`WeightsUnavailableError` naming the file and the folders;
    a failed download is not tried again in the same process.
    """
    folders = weights_folders()
    bad = []
    for folder in folders:
        path = folder / wanted.name
        if not path.is_file():
            continue
        if wanted.file_hash and not _matches_hash(path, wanted.file_hash):
            bad.append(str(path))
            log.warning("%s does not match the hash Keras expects (%s); ignoring it", path, wanted.file_hash)
            continue
        return path
    where = " or ".join(str(f) for f in folders)
    if len(folders) < 2:
        where += " (or in $FEATBENCH_DATA/keras/models)"
    damaged = f"; {', '.join(bad)} did not match the expected hash" if bad else ""

    def unavailable(reason: str) -> WeightsUnavailableError:
        return WeightsUnavailableError(
            f"ImageNet weights for {display} not available — put {wanted.name} in {where} "
            f"or use weights = \"random\" (download failed: {reason}{damaged})"
        )

    if wanted.origin in _FAILED_DOWNLOADS:  # tried in this process already (e.g. the previous split): no retry
        raise unavailable(_FAILED_DOWNLOADS[wanted.origin])
    _, keras = import_tensorflow()
    home = keras_home()
    try:  # (a damaged copy in the Keras cache is downloaded again: get_file checks the hash too)
        path = keras.utils.get_file(wanted.name, wanted.origin, file_hash=wanted.file_hash,
                                    cache_subdir="models", cache_dir=str(home))
    except Exception as exc:
        reason = " ".join(str(exc).replace(f"URL fetch failure on {wanted.origin}: ", "").split())[:200]
        _FAILED_DOWNLOADS[wanted.origin] = reason
        raise unavailable(reason) from exc
    return Path(path)


def _physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


_LAYER_NAMES: dict[str, list[str]] = {}


def _layer_names(model: str, kwargs: dict, input_size: int) -> list[str]:
    """Layer names of ``keras.applications.<model>(include_top=False, **kwargs)`` at ``input_size``
    (a weightless build, remembered per process), for checking ``layer`` before anything runs."""
    key = repr((model, sorted(kwargs.items()), input_size))
    if key not in _LAYER_NAMES:
        _, keras = import_tensorflow()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            skeleton = getattr(keras.applications, model)(weights=None, include_top=False,
                                                          input_shape=(input_size, input_size, 3), **kwargs)
        _LAYER_NAMES[key] = [lyr.name for lyr in skeleton.layers]
    return _LAYER_NAMES[key]


def _pooling_layer(keras, pooling: str, rank: int):
    """The layer that pools a feature map of ``rank`` (4: images, 3: sequences) over its positions.

    ``"avg"`` and ``"max"``: Keras's global pooling layers. ``"gem"``: generalized mean
    (Radenović et al. 2019), ``(mean over positions of x^p)^(1/p)`` with ``p = GEM_P`` (3),
    each activation first clamped to at least ``GEM_EPS`` (1e-6), as their reference code does:
    after a ReLU nothing changes but exact zeros; before one (a batch-norm or linear output),
    negative values count as (almost) zero, so the power and its root stay real.
    """
    one_d = rank == 3
    if pooling == "avg":
        return (keras.layers.GlobalAveragePooling1D if one_d else keras.layers.GlobalAveragePooling2D)(
            name="featbench_pool")
    if pooling == "max":
        return (keras.layers.GlobalMaxPooling1D if one_d else keras.layers.GlobalMaxPooling2D)(name="featbench_pool")
    ops = keras.ops
    axes = (1,) if one_d else (1, 2)

    def gem(x):
        return ops.power(ops.mean(ops.power(ops.maximum(x, GEM_EPS), GEM_P), axis=axes), 1.0 / GEM_P)

    return keras.layers.Lambda(gem, name="featbench_pool")


@dataclass
class BatchSearch:
    """The measured choice of ``batch_size="auto"``: a climb over :data:`AUTO_BATCH_SIZES`.

    Candidates are tried smallest first, each on consecutive batches of real images
    (their features are kept; :meth:`images_for` says how many): one batch warms the
    candidate up, then :data:`AUTO_WINDOWS` windows of whole batches, each of at least
    :data:`AUTO_WINDOW_IMAGES` images, are timed as ``transform`` runs them (decoding and
    resizing of the next batch overlapped, as always); the fastest window gives the
    candidate's seconds per image (the least disturbed by other processes).
    A candidate gains when it is at least :data:`AUTO_MIN_GAIN` faster per image than the
    fastest before it; the climb stops after :data:`AUTO_PATIENCE` candidates in a row
    without a gain (or after the last), and the fastest measured is chosen. Throughput
    rises with the batch size while larger batches keep the cores busier, then flattens
    or falls once a batch's activations outgrow the caches; it can also stay flat over
    two sizes and rise again (oneDNN picks other kernels for larger batches), which a
    climb that stopped at the first flat step would miss. So the climb neither pays the
    memory of ever larger batches for gains within the noise nor stops short where they
    are large (a GPU).

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
    #: Candidates in a row, up to the last measured, that did not gain.
    without_gain: int = 0

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
        """Note what ``batch`` measured; stop the climb after :data:`AUTO_PATIENCE` candidates in a row that did
        not gain enough on the fastest before each."""
        before = min(self.seconds_per_image.values(), default=None)
        self.seconds_per_image[batch] = seconds_per_image
        gained = before is None or seconds_per_image <= before * (1 - AUTO_MIN_GAIN)
        self.without_gain = 0 if gained else self.without_gain + 1
        if self.without_gain >= AUTO_PATIENCE or len(self.seconds_per_image) == len(self.candidates):
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


class _KerasSpec:
    """A class's :class:`ExtractorSpec`; read from an instance with ``fine_tune=True``, the same spec
    with ``fitted=True`` (the network then learns from each split's training images)."""

    def __init__(self, spec: ExtractorSpec) -> None:
        self.spec = spec

    def __get__(self, obj, owner=None) -> ExtractorSpec:
        if obj is not None and getattr(obj, "fine_tune", False) is True:
            return replace(self.spec, fitted=True)
        return self.spec


def _keras_spec(description: str, references: tuple[str, ...],
                input_size: tuple[int, int] | None = None) -> _KerasSpec:
    return _KerasSpec(ExtractorSpec(family="deep", color="rgb", description=description, input_size=input_size,
                                    requires=("tensorflow",), references=references, parallel=False))


class KerasApplication(Extractor):
    """Base of the ``keras.applications`` extractors (see :class:`KerasApp` for the parameters).

    A subclass for one model sets ``model_name``, ``spec`` (:func:`_keras_spec`) and a docstring;
    it inherits the parameters (``__init__``), their constraints and everything else.
    """

    #: The ``keras.applications`` constructor; None where the ``model`` parameter names it.
    model_name: ClassVar[str | None] = None

    _parameter_constraints: ClassVar[dict] = {
        "pooling": [StrOptions({"avg", "max", "gem"})],
        "layer": [str, None],
        "input_size": [Interval(Integral, 32, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "weights": [str, os.PathLike],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
        "fine_tune": ["boolean"],
        "trainable_from": [str, None],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    }
    test_params: ClassVar[dict] = {"input_size": 32, "weights": "random", "batch_size": 8}

    def __init__(
        self,
        pooling: str = "avg",
        layer: str | None = None,
        input_size: int = 224,
        batch_size: int | str = "auto",
        weights: str = "imagenet",
        random_state: int = 0,
        fine_tune: bool = False,
        trainable_from: str | None = None,
        epochs: int = 10,
        learning_rate: float = 1e-4,
        validation_fraction: float = 0.1,
    ) -> None:
        self.pooling = pooling
        self.layer = layer
        self.input_size = input_size
        self.batch_size = batch_size
        self.weights = weights
        self.random_state = random_state
        self.fine_tune = fine_tune
        self.trainable_from = trainable_from
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction

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
        if self.trainable_from is not None and not self.fine_tune:
            raise ConfigError(
                f"The 'trainable_from' parameter of {type(self).__name__} applies to fine-tuning only; "
                f"got trainable_from={self.trainable_from!r} with fine_tune=False: set fine_tune = true or drop it"
            )
        if self.layer is not None or self.trainable_from is not None:
            try:
                names = _layer_names(self._model(), self._model_kwargs(), int(self.input_size))
            except (ValueError, TypeError):
                return  # the model cannot be built with these arguments: fit says why
            self._check_layers(names)

    def _check_layers(self, names: list[str]) -> None:
        """``layer`` and ``trainable_from`` name layers of the backbone, ``trainable_from`` not after ``layer``."""
        for key in ("layer", "trainable_from"):
            value = getattr(self, key)
            if value is None or value in names:
                continue
            close = difflib.get_close_matches(value, names, n=5, cutoff=0.5)
            hint = f"; close matches: {', '.join(map(repr, close))}" if close else ""
            raise ConfigError(
                f"The '{key}' parameter of {type(self).__name__} must name a layer of "
                f"{self._display()}. Got {value!r}{hint} (all {len(names)} layers: "
                f"keras.applications.{self._model()}(include_top=False).summary())"
            )
        if self.layer is not None and self.trainable_from is not None:
            if names.index(self.trainable_from) > names.index(self.layer):
                raise ConfigError(
                    f"The 'trainable_from' parameter of {type(self).__name__} must name a layer at or before "
                    f"layer={self.layer!r} (the embedding is taken there); got {self.trainable_from!r}"
                )

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
        label = f"file:{Path(os.fspath(self.weights)).name}" if kind == "file" else kind
        return label + "+fine-tuned" if self.fine_tune else label

    # -- the network ------------------------------------------------------------------
    def _net_key(self) -> tuple:
        key = [self._model(), tuple(sorted(self._model_kwargs().items())), self.layer, self.pooling,
               self.input_size, os.fspath(self.weights), bool(self.fine_tune)]
        if self._weights_kind() == "random" or self.fine_tune:
            key.append(self.random_state)
        if self._weights_kind() == "file":
            stat = self._weights_path().stat()
            key += [stat.st_mtime_ns, stat.st_size]
        return tuple(key)

    def _fit(self, images, y) -> None:
        for name in ("fine_tuned_weights_", "history_", "head_history_", "epochs_trained_", "val_accuracy_",
                     "classes_"):
            self.__dict__.pop(name, None)
        if self.fine_tune:
            # a fresh pretrained network for every fit: never go on from an earlier split's training
            self.__dict__.pop("_net", None)
        net = self._ensure_net()
        if self.fine_tune:
            self._fine_tune(net, images, y)
        self.n_features_out_ = net["dim"]
        self.weights_file_ = net["weights_file"]

    def _ensure_net(self) -> dict:
        """Build (once per set of parameters) the feature model and its compiled call; a fine-tuned
        extractor's network gets its trained weights back (after unpickling, or a change of ``batch_size``)."""
        key = self._net_key()
        net = self.__dict__.get("_net")
        if net is not None and net["key"] == key:
            return net
        self.__dict__.pop("_net", None)
        net = self._build()
        tuned = self.__dict__.get("fine_tuned_weights_")
        if self.fine_tune and tuned is not None:
            net["base"].set_weights(tuned)
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
                    wanted = imagenet_weights_file(name, self._model_kwargs(), s)
                    if wanted is None:
                        base = self._imagenet_by_keras(ctor, kwargs)
                    else:
                        path = resolve_imagenet_weights(wanted, self._display())
                        base = ctor(weights=str(path), **kwargs)
                        used.append(path)
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

        self._check_layers([lyr.name for lyr in base.layers])
        out = base.output if self.layer is None else base.get_layer(self.layer).output
        rank = len(out.shape)
        if rank not in (2, 3, 4):
            raise ConfigError(f"{type(self).__name__}: layer {self.layer!r} has output rank {rank}; "
                              "expected a feature map (4) or a vector (2)")
        if rank > 2:
            out = _pooling_layer(keras, self.pooling, rank)(out)
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

    def _imagenet_by_keras(self, ctor, kwargs: dict):
        """``ctor(weights="imagenet")`` for a model whose file featbench cannot name: Keras looks in
        its own cache (``$KERAS_HOME/models`` as set when Keras was imported) and downloads there."""
        try:
            return ctor(weights="imagenet", **kwargs)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
            raise WeightsUnavailableError(
                f"ImageNet weights for {self._display()} not available — featbench does not know this "
                f"model's file name, so Keras looked in its own cache only; download it there, give "
                f"weights = \"<path of the file>\" or use weights = \"random\" (download failed: {reason})"
            ) from exc

    # -- fine-tuning ------------------------------------------------------------------------
    def _fine_tune(self, net: dict, images, y) -> None:
        """Train the backbone (from ``trainable_from`` on) with a new softmax head on ``images``.

        The head is dropout 0.2 and a dense softmax layer on the pooled embedding itself (the
        output of ``layer``, pooled as ``pooling`` says), so what is trained is what is extracted.
        """
        who = f"{type(self).__name__} fine-tuning"
        if y is None:
            raise ConfigError(f"{who} learns from labels: fit(images, y) needs the training labels y "
                              "(or set fine_tune = false)")
        y = np.asarray(y)
        if len(y) != len(images):
            raise ValueError(f"{who}: {len(images)} images but {len(y)} labels")
        if len(images) == 0:
            raise ValueError(f"{who}: fit needs at least one training image")
        classes, y_idx = np.unique(y, return_inverse=True)
        n_classes = max(2, len(classes))
        tf, keras = import_tensorflow()
        # process-wide and not reversible (as for the cnn extractor): repeatable training for a seed
        tf.config.experimental.enable_op_determinism()
        X = self._prepare(images, 0, len(images))
        epochs = int(self.epochs)
        train, val = stratified_validation_split(y_idx, float(self.validation_fraction), int(self.random_state),
                                                 who, epochs)
        base, preprocess, seed = net["base"], net["preprocess"], int(self.random_state)
        start = 0 if self.trainable_from is None else [lyr.name for lyr in base.layers].index(self.trainable_from)
        for i, lyr in enumerate(base.layers):
            # Batch normalisation stays frozen: in Keras 3 a frozen BN layer runs in inference mode (its
            # ImageNet statistics). A trainable one would use batch statistics in training (the outer
            # model's training=True overrides an inner call's training=False) and half-updated moving
            # averages at inference: measured on clothing, the head's validation accuracy fell to 0.5
            # while the same images scored 0.71 in training mode.
            lyr.trainable = i >= start and not isinstance(lyr, keras.layers.BatchNormalization)
        batch = int(self.batch_size) if isinstance(self.batch_size, Integral) else FINE_TUNE_BATCH
        with seeded(seed), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dropout = keras.layers.Dropout(0.2, seed=seed + 1, name="head_dropout")
            dense = keras.layers.Dense(n_classes, activation="softmax", name="head")
            # 1. the head alone, on the frozen network's embeddings (computed once): a new random head
            # would otherwise send large, meaningless gradients into the pretrained layers at the start
            F = np.concatenate([net["predict"](X[i:i + batch]).numpy() for i in range(0, len(X), batch)])
            head_in = keras.Input((F.shape[1],), name="embedding")
            head = keras.Model(head_in, dense(dropout(head_in)), name="featbench_head")
            head.compile(optimizer=keras.optimizers.Adam(HEAD_LEARNING_RATE),
                         loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            head_hist = fit_classifier(keras, head, F, y_idx, train, val, epochs=HEAD_EPOCHS, batch_size=batch,
                                       patience=HEAD_PATIENCE)
            # 2. the network from trainable_from on, with that head, at learning_rate
            inp = keras.Input((X.shape[1], X.shape[2], 3), dtype="uint8", name="image")
            x = keras.layers.Lambda(lambda t: preprocess(keras.ops.cast(t, "float32")), name="preprocess")(inp)
            out = dense(dropout(net["model"](x)))
            model = keras.Model(inp, out, name=f"featbench_{base.name}_fine_tune")
            model.compile(optimizer=keras.optimizers.Adam(float(self.learning_rate)),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            hist = fit_classifier(keras, model, X, y_idx, train, val, epochs=epochs, batch_size=batch,
                                  patience=FINE_TUNE_PATIENCE)
        self.head_history_ = head_hist
        for lyr in base.layers:
            lyr.trainable = True
        if val is not None:
            best = int(np.argmin(hist["val_loss"]))
            self.val_accuracy_ = float(hist["val_accuracy"][best])
            self.epochs_trained_ = best + 1
        else:
            self.val_accuracy_ = float("nan")
            self.epochs_trained_ = len(hist["loss"])
        self.classes_ = classes
        self.history_ = hist
        # numpy arrays: a fitted extractor pickles without TensorFlow and rebuilds its network from them
        self.fine_tuned_weights_ = [np.asarray(w) for w in base.get_weights()]

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
        """``n_params`` of the feature model, ``gflops_per_image`` at ``input_size`` up to ``layer`` (see
        :func:`count_gflops`), the ``batch_size`` it ran at (what ``"auto"`` chose) and, when fine-tuned,
        ``epochs_trained`` (the kept epoch) and ``val_accuracy`` (at that epoch; None without validation)."""
        net = self.__dict__.get("_net")
        if net is None:
            return {}
        info = {"n_params": net["n_params"], "gflops_per_image": round(net["gflops"], 4),
                "batch_size": self._current_batch(net)}
        if self.fine_tune and "epochs_trained_" in self.__dict__:
            info["epochs_trained"] = self.epochs_trained_
            info["val_accuracy"] = None if np.isnan(self.val_accuracy_) else round(self.val_accuracy_, 4)
        return info

    # -- pickling / cloning: the TensorFlow model is rebuilt on demand, never pickled ----------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_net", None)
        return state


_SHARED_PARAMS_DOC = """
    pooling : {"avg", "max", "gem"}, default="avg"
        Global pooling of the last feature map (or of ``layer``'s output) into one
        vector: the mean, the maximum, or the generalized mean (GeM, Radenović et al.
        2019) ``(mean x^3)^(1/3)`` over the spatial positions, between the two. GeM
        clamps each activation to at least 1e-6 first (as the authors' code does):
        after a ReLU only exact zeros change; at a layer before the ReLU, negative
        values count as zero.
    layer : str or None, default=None
        Name of an intermediate layer whose output is pooled instead of the last
        block's (a layer probe; ``keras_backbone.summary()`` lists the names). An
        unknown name is a :class:`~featbench.errors.ConfigError` listing close
        matches, raised when the parameters are validated (before any image is
        read). The output of the backbone's last layer (e.g. ``"conv_pw_13_relu"``
        for MobileNet) is the default embedding itself. ``report_info()``'s
        ``gflops_per_image`` counts only the layers up to ``layer``. To sweep
        layers in an experiment, give a list and ``sweep = "layer"`` (see
        :mod:`featbench.config`).
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
        seed give identical weights and features. With ``fine_tune``, also the seed
        of the head's initial weights, the validation part, the shuffling and dropout.
    fine_tune : bool, default=False
        Transfer learning: ``fit`` trains the network (from ``weights``) on the
        training images and labels with a new head (dropout 0.2, a dense softmax
        layer) on the pooled embedding, then the embedding is taken as usual from
        the trained network, and ``weights_label`` says ``imagenet+fine-tuned``.
        Two stages, both by Adam on the cross-entropy with early stopping: (1) the
        head alone on the frozen network's embeddings (computed once; at most 100
        epochs at 1e-3), since a random head would first send large meaningless
        gradients into the pretrained layers; (2) the head and the layers from
        ``trainable_from`` on, at ``learning_rate``, for at most ``epochs``.
        Batch normalisation layers stay frozen (inference mode: their ImageNet
        statistics, scale and offset are kept), as Keras's transfer-learning guide
        advises. Training batches hold ``batch_size`` images (32 when it is
        ``"auto"``); no augmentation. Needs labels in ``fit``; the runner then fits
        once per split on its training images only (``spec.fitted`` is True for
        such an instance), and its fit time is the row's ``extractor_fit_s``.
    trainable_from : str or None, default=None
        With ``fine_tune``: the first layer that trains (a layer name, at or before
        ``layer``); those before it stay frozen. None: the whole backbone trains.
    epochs : int, default=10
        With ``fine_tune``: at most this many passes over the training images.
    learning_rate : float, default=0.0001
        With ``fine_tune``: Adam's learning rate (constant) in the second stage.
    validation_fraction : float, default=0.1
        With ``fine_tune``: the share of the *training* images held out
        (stratified, seeded by ``random_state``) for early stopping: each stage stops
        after 3 (head: 5) epochs without a lower validation loss and the weights of
        the best epoch are kept (``keras.callbacks.EarlyStopping(restore_best_weights=True)``).
        0, or too few images to give every class a validation image, trains for
        all ``epochs`` on all of them."""

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
    network's parameters measures afresh.

    Fine-tuning is repeatable for a seed as far as TensorFlow allows: ``fit`` seeds
    Python, NumPy and TensorFlow (``keras.utils.set_random_seed``; Python's and
    NumPy's global states are restored afterwards) and turns on
    ``tf.config.experimental.enable_op_determinism()`` (process-wide and not
    reversible, as the ``cnn`` extractor does). On the same machine, TensorFlow
    build and thread count two fits then give the same weights; on others the
    float32 sums may be ordered differently and training drift slightly.
    ``report_info()`` then adds ``epochs_trained`` and ``val_accuracy`` (of the
    second stage); the training histories are ``head_history_`` and ``history_``,
    the trained backbone weights
    ``fine_tuned_weights_`` (NumPy arrays, so the fitted extractor pickles)."""


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

    spec = _keras_spec(
        "global-pooled embedding of any keras.applications model (include_top=False)",
        ("Howard et al. 2017, MobileNets: Efficient convolutional neural networks for mobile vision applications",
         "Keras Applications (keras.io/api/applications)"),
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
        fine_tune: bool = False,
        trainable_from: str | None = None,
        epochs: int = 10,
        learning_rate: float = 1e-4,
        validation_fraction: float = 0.1,
    ) -> None:
        self.model = model
        self.model_kwargs = model_kwargs
        self.alpha = alpha
        super().__init__(pooling=pooling, layer=layer, input_size=input_size, batch_size=batch_size,
                         weights=weights, random_state=random_state, fine_tune=fine_tune,
                         trainable_from=trainable_from, epochs=epochs, learning_rate=learning_rate,
                         validation_fraction=validation_fraction)

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
    spec = _keras_spec(
        "VGG16 (ImageNet or random weights), global-pooled last conv block, 512-d",
        ("Simonyan & Zisserman 2015, Very deep convolutional networks for large-scale image recognition",),
        input_size=(224, 224),
    )


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
    spec = _keras_spec(
        "ResNet50 (ImageNet or random weights), global-pooled last stage, 2048-d",
        ("He et al. 2016, Deep residual learning for image recognition",),
        input_size=(224, 224),
    )
