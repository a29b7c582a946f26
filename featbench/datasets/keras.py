"""The ``keras`` loader: cifar10, mnist, fashion_mnist from local copies first, else Keras' download.

Local image arrays are memory-mapped from the cache; CIFAR-10 batches are read with an
unpickler that can rebuild numpy arrays and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from featbench.datasets.base import ImageSet
from featbench.datasets.common import CIFAR10_NAMES, DIGIT_NAMES, FASHION_MNIST_NAMES, apply_limit, check_common
from featbench.datasets.idx import idx_parts_present, load_idx
from featbench.datasets.io import file_sha256
from featbench.datasets.mapped import MappedImageSet, Part, cached_npy, write_npy
from featbench.datasets.paths import cache_dir, expand_path, featbench_data, sha256_hex
from featbench.errors import ConfigError, DatasetError
from featbench.registry import register_dataset

__all__ = ["load_keras"]

_KERAS_NAMES = ("cifar10", "mnist", "fashion_mnist")
_CLASS_NAMES = {"cifar10": CIFAR10_NAMES, "mnist": DIGIT_NAMES, "fashion_mnist": FASHION_MNIST_NAMES}
_PICKLE_ALLOWED = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }
)

#: (image parts, [train labels, test labels]) of a set found somewhere.
_Found = tuple[list[Part], list[np.ndarray]]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


# -- where to look ---------------------------------------------------------------------------


def _keras_home_datasets() -> list[Path]:
    home = os.environ.get("KERAS_HOME")
    base = Path(expand_path(home, "KERAS_HOME")) if home else Path.home() / ".keras"
    out = [base / "datasets"]
    if not home:
        out.append(Path(tempfile.gettempdir()) / ".keras" / "datasets")  # Keras' fallback if ~ is read-only
    return out


def _keras_places(name: str) -> tuple[list[Path], list[Path], list[Path]]:
    """(complete IDX folders, mnist.npz files, CIFAR batch folders) to look at, in order."""
    data = featbench_data()
    keras_dirs = _keras_home_datasets() + ([data / "keras" / "datasets"] if data is not None else [])
    idx_dirs: list[Path] = []
    npz: list[Path] = []
    cifar: list[Path] = []
    if name == "mnist":
        if data is not None:
            idx_dirs.append(data / "mnist")
        npz = [d / "mnist.npz" for d in keras_dirs]
    elif name == "fashion_mnist":
        if data is not None:
            idx_dirs.append(data / "fashion-mnist")
        idx_dirs += [d / "fashion-mnist" for d in keras_dirs]
    else:
        for d in keras_dirs:
            cifar += [d / "cifar-10-batches-py", d / "cifar-10-batches-py-target" / "cifar-10-batches-py"]
        if data is not None:
            cifar.append(data / "cifar-10-batches-py")
    return idx_dirs, npz, cifar


# -- reading local copies --------------------------------------------------------------------


def _npz_member_part(z: zipfile.ZipFile, npz: Path, digest: str, member: str) -> Part:
    """The uint8 image array ``member`` of ``npz``, copied once into the cache and memory-mapped."""

    def write(out, member=member, z=z) -> None:
        with z.open(member) as src:
            while chunk := src.read(1 << 22):
                out.write(chunk)

    part = cached_npy(cache_dir() / "keras" / digest / member, write)
    if part is None or len(part[2]) not in (3, 4):
        raise DatasetError(f"'{npz}' member {member} is not a uint8 image array (N, H, W[, 3])")
    return part


def _mnist_npz_parts(npz: Path) -> _Found:
    digest = sha256_hex(npz)
    parts: list[Part] = []
    labels: list[np.ndarray] = []
    try:
        with zipfile.ZipFile(npz) as z:
            members = set(z.namelist())
            for split in ("train", "test"):
                x_name, y_name = f"x_{split}.npy", f"y_{split}.npy"
                if x_name not in members or y_name not in members:
                    raise DatasetError(
                        f"'{npz}' lacks {x_name} or {y_name}; expected Keras' mnist.npz "
                        "(x_train, y_train, x_test, y_test)"
                    )
                parts.append(_npz_member_part(z, npz, digest, x_name))
                with z.open(y_name) as f:
                    y = np.lib.format.read_array(f, allow_pickle=False)
                labels.append(np.asarray(y).reshape(-1).astype(np.int64))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"cannot read Keras dataset file '{npz}': {exc}") from exc
    return parts, labels


def _cifar_batches(folder: Path, files: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    batches = []
    try:
        for f in files:
            with open(f, "rb") as fh:
                d = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
            d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
            x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            y = np.asarray(d["labels"], dtype=np.int64)
            if len(x) != len(y):
                raise DatasetError(f"CIFAR-10 batch '{f}' has {len(x)} images but {len(y)} labels")
            batches.append((x, y))
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, OSError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(
            f"cannot read CIFAR-10 batch file in '{folder}': {type(exc).__name__}: {exc}"
        ) from exc
    return batches


def _cifar_parts(folder: Path) -> _Found:
    files = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 folder '{folder}' lacks {', '.join(missing)}")
    h = hashlib.sha256()
    for f in files:
        h.update(file_sha256(f))
    batches = _cifar_batches(folder, files)
    shape = (sum(len(x) for x, _ in batches), 32, 32, 3)
    target = cache_dir() / "keras" / f"cifar10-{h.hexdigest()}.npy"
    chunks = (np.ascontiguousarray(x).tobytes() for x, _ in batches)
    part = cached_npy(target, lambda out: write_npy(out, shape, chunks), shape)
    if part is None:
        raise DatasetError(f"the cached copy '{target}' of '{folder}' cannot be read back")
    y_train = np.concatenate([y for _, y in batches[:5]])
    return [part], [y_train, batches[5][1]]


def _local_copy(idx_dirs: list[Path], npz_files: list[Path], cifar_dirs: list[Path]) -> _Found | None:
    for npz in npz_files:
        if npz.is_file():
            return _mnist_npz_parts(npz)
    for folder in cifar_dirs:
        if folder.is_dir():
            return _cifar_parts(folder)
    return None


# -- downloading -----------------------------------------------------------------------------


def _keras_download(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``keras.datasets.<name>.load_data()`` (imports Keras, may download)."""
    module = importlib.import_module(f"keras.datasets.{name}")
    return module.load_data()


def _idx_hint(idx_dirs: list[Path]) -> str:
    """A hint when an IDX folder holds one complete part only (the ``idx`` loader reads it)."""
    for folder in idx_dirs:
        parts = idx_parts_present(folder) if folder.is_dir() else {}
        only = [p for p, pair in parts.items() if all(pair)]
        if len(only) == 1:
            return (
                f"; '{folder}' holds only the {only[0]} part: dataset 'idx' with "
                f"root='{folder}', subset='{only[0]}' loads it"
            )
    return ""


def _downloaded(name: str, idx_dirs: list[Path], npz_files: list[Path], cifar_dirs: list[Path]) -> _Found:
    looked = [f"{d}/ (4 IDX files)" for d in idx_dirs] + [str(p) for p in npz_files]
    looked += [f"{d}/" for d in cifar_dirs]
    try:
        (x_train, y_train), (x_test, y_test) = _keras_download(name)
    except Exception as exc:
        raise DatasetError(
            f"keras dataset {name!r} is not available offline and Keras could not download it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); looked for: "
            f"{'; '.join(looked)}{_idx_hint(idx_dirs)}"
        ) from exc
    images = np.concatenate([np.asarray(x_train), np.asarray(x_test)]).astype(np.uint8, copy=False)
    return [np.ascontiguousarray(images)], [np.asarray(y_train), np.asarray(y_test)]


# -- the loader ------------------------------------------------------------------------------


@register_dataset("keras")
def load_keras(*, name: str, limit_per_class: int | None = None, seed: int = 0) -> ImageSet:
    """Keras datasets cifar10, mnist, fashion_mnist: local copies first, else Keras' download.

    Looked for, in order, without downloading:

    - mnist: ``$FEATBENCH_DATA/mnist`` with all four IDX files (then the ``idx``
      loader is used), Keras' cache ``$KERAS_HOME/datasets/mnist.npz`` (default
      ``~/.keras``), ``$FEATBENCH_DATA/keras/datasets/mnist.npz``;
    - fashion_mnist: the four IDX files in ``$FEATBENCH_DATA/fashion-mnist``, then
      ``$KERAS_HOME/datasets/fashion-mnist`` and ``$FEATBENCH_DATA/keras/datasets/fashion-mnist``;
    - cifar10: the extracted ``cifar-10-batches-py`` folder in ``$KERAS_HOME/datasets``
      (also under ``cifar-10-batches-py-target``, as Keras 3 stores it) or
      ``$FEATBENCH_DATA/keras/datasets``, ``$FEATBENCH_DATA``.

    Only then ``keras.datasets.<name>.load_data()`` is called (it downloads). Image
    arrays found locally are memory-mapped from featbench's cache folder. The official
    train/test split is kept as ``official_split``.

    Parameters
    ----------
    name : {"cifar10", "mnist", "fashion_mnist"}
        Which Keras dataset.
    limit_per_class : int or None, default None
        Keep at most this many images per class, in train and test separately.
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    ImageSet
        Named ``"keras:<name>"``; mnist and fashion_mnist are 28x28 gray, cifar10
        32x32 RGB.

    References
    ----------
    Source: ``keras.datasets`` (https://keras.io/api/datasets/); Krizhevsky 2009
    (CIFAR-10), LeCun et al. 1998 (MNIST), Xiao, Rasul & Vollgraf 2017 (Fashion-MNIST).
    """
    check_common(limit_per_class, seed)
    if name not in _KERAS_NAMES:
        raise ConfigError(f"keras dataset name must be one of {', '.join(_KERAS_NAMES)}, got {name!r}")
    class_names = _CLASS_NAMES[name]
    set_name = f"keras:{name}"
    places = _keras_places(name)

    for folder in places[0]:
        if folder.is_dir() and all(all(pair) for pair in idx_parts_present(folder).values()):
            ds = load_idx(root=str(folder), class_names=class_names, limit_per_class=limit_per_class, seed=seed)
            ds.name = set_name
            return ds

    parts, labels = _local_copy(*places) or _downloaded(name, *places)
    y_train, y_test = (np.asarray(y).reshape(-1).astype(np.int64) for y in labels)
    all_labels = np.concatenate([y_train, y_test])
    if len(all_labels) and (all_labels.min() < 0 or all_labels.max() >= len(class_names)):
        raise DatasetError(
            f"keras dataset {name!r} has labels outside 0..{len(class_names) - 1}: "
            f"{int(all_labels.min())}..{int(all_labels.max())}"
        )
    split = (np.arange(len(y_train)), np.arange(len(y_train), len(all_labels)))
    ds = MappedImageSet(set_name, parts, all_labels, class_names, official_split=split)
    return apply_limit(ds, limit_per_class, seed)
