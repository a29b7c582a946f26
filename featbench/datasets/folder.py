"""The ``folder`` loader: your own images, one sub-folder per class; every file decoded once at load (a check),
the pixels read again when used.

Everything about a file is decided when the folder is loaded, so that every later
use of the set sees the same images: each selected file is decoded once in full
(a truncated file is a counted skip, not a failure of every cell), a class left
without readable images is dropped and recorded, and symbolic links that would
read part of the tree twice are skipped and counted.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from featbench.datasets.base import ImageSet, LazyImageSet, Skipped
from featbench.datasets.base import limit_per_class as select_per_class
from featbench.datasets.common import check_common
from featbench.datasets.io import IMAGE_EXTENSIONS, decode_image, file_sha256, probe_image
from featbench.datasets.paths import as_path_str, locate, looked_also
from featbench.errors import ConfigError, DatasetError
from featbench.registry import register_dataset

__all__ = ["load_folder"]

#: Files decoded by one thread before the checks go parallel (Pillow and OpenCV release the GIL).
_SERIAL_CHECKS = 16


# -- parameters and the root -----------------------------------------------------------------


def _normalise_extensions(extensions: Any) -> tuple[str, ...]:
    if isinstance(extensions, str):
        extensions = re.split(r"[,\s]+", extensions)
    try:
        exts = tuple(str(e).lower().lstrip(".") for e in extensions if str(e).strip(". "))
    except TypeError:
        exts = ()
    if not exts or not all(isinstance(e, str) for e in extensions):
        raise ConfigError(
            f"extensions must be a list of file extensions such as ['jpg', 'png'], got {extensions!r}"
        )
    return exts


def _layout(exts: tuple[str, ...]) -> str:
    return f"expected a folder with one sub-folder per class containing {_wanted(exts)} images"


def _wanted(exts: tuple[str, ...]) -> str:
    return "/".join("." + e for e in exts)


def _dataset_folder(root: str, exts: tuple[str, ...]) -> Path:
    path, tried = locate(root, "dataset folder")
    if not path.exists():
        raise DatasetError(f"dataset folder '{path}' does not exist{looked_also(tried)}; {_layout(exts)}")
    if not path.is_dir():
        raise DatasetError(f"dataset folder '{path}' is not a folder; {_layout(exts)}")
    return path


# -- symbolic links --------------------------------------------------------------------------


def _within(inner: str, outer: str) -> bool:
    """True when the real path ``inner`` is ``outer`` or inside it."""
    return os.path.commonpath([inner, outer]) == outer


def _link_problem(link: Path, roots: list[str]) -> str | None:
    """Why the symbolic link ``link`` must not be followed, or None.

    ``roots[0]`` is the real path of the dataset folder; the others are folders outside
    it already being read through links. A link into any of them (or to a folder that
    holds one of them) would read images twice, possibly under another label, or loop.
    """
    target = os.path.realpath(link)
    if _within(target, roots[0]):
        return (
            f"symbolic link to '{target}' inside the dataset folder: not followed "
            "(its images would be read twice, possibly under another label)"
        )
    if _within(roots[0], target):
        return f"symbolic link to '{target}', a folder holding the dataset folder: not followed (a loop)"
    for seen in roots[1:]:
        if _within(target, seen) or _within(seen, target):
            return f"symbolic link to '{target}', already read through another link: not followed (a loop)"
    return None


# -- scanning the tree -----------------------------------------------------------------------


def _class_dirs(path: Path, roots: list[str], skipped: list[Skipped]) -> list[Path]:
    """The class folders of ``path`` sorted by name: visible sub-folders, links checked."""
    out = []
    for p in sorted(path.iterdir(), key=lambda p: p.name):
        if p.name.startswith(".") or not p.is_dir():
            continue
        if p.is_symlink():
            problem = _link_problem(p, roots)
            if problem is not None:
                skipped.append(Skipped(source=str(p), reason=problem))
                continue
            roots.append(os.path.realpath(p))
        out.append(p)
    return out


def _images_under(folder: Path, exts: tuple[str, ...], roots: list[str], skipped: list[Skipped]) -> list[Path]:
    """Image files anywhere under ``folder`` (hidden files and folders skipped), sorted by path.

    Links to folders are followed unless :func:`_link_problem` objects; links to files inside
    a folder being read are skipped. Both kinds of skip are added to ``skipped``.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = _plain_subfolders(here, dirnames, exts, roots, skipped, found)
        for fname in filenames:
            if not fname.startswith(".") and Path(fname).suffix.lower().lstrip(".") in exts:
                file = here / fname
                problem = _file_link_problem(file, roots)
                if problem is None:
                    found.append(file)
                else:
                    skipped.append(Skipped(source=str(file), reason=problem))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _plain_subfolders(
    here: Path, dirnames: list[str], exts: tuple[str, ...], roots: list[str], skipped: list[Skipped],
    found: list[Path],
) -> list[str]:
    """The visible sub-folders of ``here`` that are not links (``os.walk`` goes on into them).

    Links to folders are read here (into ``found``) when they may be followed, else skipped.
    """
    plain = []
    for d in sorted(dirnames):
        if d.startswith("."):
            continue
        sub = here / d
        if not sub.is_symlink():
            plain.append(d)
            continue
        problem = _link_problem(sub, roots)
        if problem is not None:
            skipped.append(Skipped(source=str(sub), reason=problem))
            continue
        roots.append(os.path.realpath(sub))
        found.extend(_images_under(sub, exts, roots, skipped))
    return plain


def _file_link_problem(file: Path, roots: list[str]) -> str | None:
    """Why the image file ``file`` must not be read (a link into a folder being read), or None."""
    if not file.is_symlink():
        return None
    target = os.path.realpath(file)
    if any(_within(target, r) for r in roots):
        return f"symbolic link to '{target}' inside a folder already read: not followed (the image would be read twice)"
    return None


def _scan(path: Path, exts: tuple[str, ...]) -> tuple[list[Path], list[Path], np.ndarray, list[Skipped]]:
    """(class folders, image files, their labels, links skipped) of the dataset folder ``path``."""
    roots = [os.path.realpath(path)]
    skipped: list[Skipped] = []
    class_dirs = _class_dirs(path, roots, skipped)
    if not class_dirs:
        loose = [p for p in path.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in exts]
        hint = f" (it holds {len(loose)} images directly: move them into class sub-folders)" if loose else ""
        raise DatasetError(f"dataset folder '{path}' has no class sub-folders{hint}; {_layout(exts)}")
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        found = _images_under(class_dir, exts, roots, skipped)
        if not found:
            raise DatasetError(
                f"class folder '{class_dir}' holds no {_wanted(exts)} images; "
                "remove it or add images (every sub-folder of the dataset folder is a class)"
            )
        files.extend(found)
        labels.extend([label] * len(found))
    return class_dirs, files, np.asarray(labels, dtype=np.int64), skipped


# -- checking the files ----------------------------------------------------------------------


def _problems(sources: list[str]) -> list[str | None]:
    """:func:`probe_image` of every file (a full decode), in order; threads for many files."""
    if len(sources) <= _SERIAL_CHECKS:
        return [probe_image(s) for s in sources]
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="featbench-check") as pool:
        return list(pool.map(probe_image, sources, chunksize=8))


def _drop_empty_classes(
    path: Path, class_dirs: list[Path], labels: np.ndarray, skipped_per_class: np.ndarray
) -> tuple[list[str], np.ndarray, list[Skipped]]:
    """Drop classes with no readable image: (class names, renumbered labels, dropped classes)."""
    counts = np.bincount(labels, minlength=len(class_dirs))
    keep = np.flatnonzero(counts > 0)
    dropped = []
    for c in np.flatnonzero(counts == 0):
        n = int(skipped_per_class[c])
        reason = f"no readable image ({n} file{'s' if n != 1 else ''} skipped)"
        dropped.append(Skipped(source=str(class_dirs[c]), reason=reason))
        warnings.warn(f"dataset folder '{path}': class '{class_dirs[c].name}' dropped: {reason}", stacklevel=3)
    new_label = np.full(len(class_dirs), -1, dtype=np.int64)
    new_label[keep] = np.arange(len(keep))
    return [class_dirs[c].name for c in keep], new_label[labels], dropped


def _check_two_classes(path: Path, class_names: list[str], dropped: list[Skipped]) -> None:
    if len(class_names) >= 2:
        return
    found = f"found {len(class_names)}" + (f" ('{class_names[0]}')" if class_names else "")
    why = "; ".join(f"'{Path(d.source).name}': {d.reason}" for d in dropped)
    raise DatasetError(
        f"dataset folder '{path}' needs at least 2 classes with readable images, {found}"
        f"{f' (dropped {why})' if why else ''}; add a sub-folder of images per class"
    )


# -- the loader ------------------------------------------------------------------------------


@register_dataset("folder")
def load_folder(
    *,
    root: str,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    limit_per_class: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """Your own images: a folder with one sub-folder per class (checked at load, read when used).

    Each immediate sub-folder of ``root`` is a class (sorted by name); the images
    anywhere inside it (sorted by path; hidden files and folders and files at the
    root itself are ignored) are its examples. Images keep their own mode: gray
    files give ``HxW``, colour and palette files ``HxWx3`` RGB; alpha is
    composited onto white; 16-bit files keep their high byte (see
    :func:`featbench.datasets.decode_image`). Every selected file is decoded once
    at load time; files that cannot be read (truncated, corrupt, not images) are
    left out and listed in ``skipped``. A class left with no readable image is
    dropped (with a warning), listed in ``dropped_classes``, and the labels of the
    others renumbered. Symbolic links to folders outside the tree are followed;
    links to anything inside the tree (or to a folder already read, or holding
    the tree) are not, and are listed in ``skipped``. At least two classes with
    readable images are needed. The fingerprint hashes file contents, not paths.

    Parameters
    ----------
    root : str
        The folder. ``~`` and ``$VARS`` are expanded; a relative path is looked for
        in the current directory, then under ``$FEATBENCH_DATA``.
    extensions : list of str, default jpg jpeg png bmp tif tiff webp
        File extensions to read (case-insensitive, with or without the dot).
    limit_per_class : int or None, default None
        Keep at most this many images per class (chosen with ``seed`` before the
        files are checked; unreadable ones are then left out).
    seed : int, default 0
        Seed of the per-class selection.

    Returns
    -------
    LazyImageSet
        Named ``"folder:<folder name>"``.

    Raises
    ------
    DatasetError
        If the folder does not exist, has no class sub-folders, a class folder holds
        no image file, no file can be read, or fewer than 2 classes have readable images.

    References
    ----------
    Source: the same layout as ``torchvision.datasets.ImageFolder`` and
    ``keras.utils.image_dataset_from_directory``.
    """
    check_common(limit_per_class, seed)
    exts = _normalise_extensions(extensions)
    path = _dataset_folder(as_path_str(root, "root"), exts)
    class_dirs, files, labels, skipped = _scan(path, exts)

    positions = select_per_class(labels, limit_per_class, seed)
    selected = [str(files[pos]) for pos in positions]
    problems = _problems(selected)
    ok = np.array([p is None for p in problems], dtype=bool)
    skipped += [Skipped(source=s, reason=p) for s, p in zip(selected, problems) if p is not None]
    if not ok.any():
        first = next(s for s in skipped if s.source in selected)
        raise DatasetError(
            f"none of the {len(positions)} image files in dataset folder '{path}' can be read "
            f"(first: '{first.source}': {first.reason})"
        )
    selected_labels = labels[positions]
    skipped_per_class = np.bincount(selected_labels[~ok], minlength=len(class_dirs))
    class_names, kept_labels, dropped = _drop_empty_classes(
        path, class_dirs, selected_labels[ok], skipped_per_class
    )
    _check_two_classes(path, class_names, dropped)
    return LazyImageSet(
        f"folder:{path.name}",
        [s for s, good in zip(selected, ok) if good],
        kept_labels,
        class_names,
        load=decode_image,
        digest=file_sha256,
        skipped=skipped,
        dropped_classes=dropped,
    )
