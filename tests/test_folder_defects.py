"""Folder datasets with defects (issue 8): truncated files, dead classes, symlinks, one class.

Each defect is decided when the folder is loaded: a bad file or link is a counted skip
(``ImageSet.skipped``), a class left without readable images is dropped and recorded
(``ImageSet.dropped_classes``), and fewer than two classes is a ``DatasetError``.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featbench.datasets import ImageSet, Skipped, load_dataset
from featbench.errors import DatasetError


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))

    def no_network(*args, **kwargs):
        raise AssertionError("a dataset test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)


def _photo(seed: int, shape=(48, 64, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_photo(seed)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tree(root: Path, classes=("cats", "dogs", "owls"), n: int = 3) -> Path:
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            (root / cls / f"{i}.jpg").write_bytes(_jpeg_bytes(10 * c + i))
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _every_image_decodes(ds: ImageSet) -> None:
    for i in range(len(ds)):
        img = ds[i]
        assert img.dtype == np.uint8 and img.size


# -- 8. a truncated JPEG is a counted skip at load time --------------------------------------


def test_truncated_jpeg_is_skipped_and_counted_at_load(tmp_path):
    root = _tree(tmp_path / "data")
    bad = root / "dogs" / "1.jpg"
    _truncate(bad)
    with Image.open(bad) as im:  # the header alone is fine: only a full decode finds it
        assert im.size == (64, 48)
    ds = load_dataset("folder", root=str(root))
    assert len(ds) == 8
    assert [s.source for s in ds.skipped] == [str(bad)]
    assert "truncated" in ds.skipped[0].reason
    assert ds.class_names == ["cats", "dogs", "owls"]
    assert np.bincount(ds.labels).tolist() == [3, 2, 3]
    _every_image_decodes(ds)  # the rest of the dataset works, every cell can read it
    assert len(ds.fingerprint) == 64


# -- 9. a class whose images are all unreadable is dropped and recorded ----------------------


def test_class_without_readable_images_is_dropped_and_recorded(tmp_path):
    root = _tree(tmp_path / "data")
    for f in sorted((root / "dogs").iterdir()):
        _truncate(f)
    with pytest.warns(UserWarning, match="dogs"):
        ds = load_dataset("folder", root=str(root))
    assert ds.class_names == ["cats", "owls"]
    assert ds.n_classes == 2
    assert sorted(set(ds.labels.tolist())) == [0, 1]  # renumbered: 0..n_classes-1
    assert np.bincount(ds.labels).tolist() == [3, 3]
    for i in range(len(ds)):
        assert Path(ds.source(i)).parent.name == ds.class_names[ds.labels[i]]
    assert len(ds.skipped) == 3
    assert ds.dropped_classes == [Skipped(str(root / "dogs"), "no readable image (3 files skipped)")]
    _every_image_decodes(ds)

    # kept by subset() and by pickling
    sub = ds.subset([0, 4])
    assert sub.dropped_classes == ds.dropped_classes
    assert pickle.loads(pickle.dumps(ds)).dropped_classes == ds.dropped_classes
    assert pickle.loads(pickle.dumps(sub)).dropped_classes == ds.dropped_classes


def test_dropped_classes_defaults_to_empty(tmp_path):
    ds = load_dataset("folder", root=str(_tree(tmp_path / "data")))
    assert ds.dropped_classes == []
    assert load_dataset("digits", limit_per_class=2).dropped_classes == []


# -- 10. symbolic links inside the tree are skipped and counted, loops are guarded ------------


needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


@needs_symlinks
def test_class_symlink_to_the_root_is_skipped_and_counted(tmp_path):
    root = _tree(tmp_path / "data")
    plain = load_dataset("folder", root=str(root))
    (root / "zz_everything").symlink_to(root, target_is_directory=True)
    ds = load_dataset("folder", root=str(root))
    assert ds.class_names == ["cats", "dogs", "owls"]
    assert len(ds) == 9
    assert ds.fingerprint == plain.fingerprint
    (skip,) = ds.skipped
    assert skip.source == str(root / "zz_everything")
    assert "symbolic link" in skip.reason and "inside" in skip.reason


@needs_symlinks
def test_symlinks_to_folders_and_files_inside_the_tree_are_skipped(tmp_path):
    root = _tree(tmp_path / "data")
    (root / "birds").symlink_to(root / "owls", target_is_directory=True)  # a class aliasing another
    (root / "cats" / "more").symlink_to(root / "dogs", target_is_directory=True)  # nested alias
    (root / "cats" / "again.jpg").symlink_to(root / "dogs" / "0.jpg")  # file alias
    ds = load_dataset("folder", root=str(root))
    assert ds.class_names == ["cats", "dogs", "owls"]
    assert np.bincount(ds.labels).tolist() == [3, 3, 3]
    assert sorted(s.source for s in ds.skipped) == sorted(
        str(p) for p in (root / "birds", root / "cats" / "more", root / "cats" / "again.jpg")
    )
    assert all("inside" in s.reason for s in ds.skipped)


@needs_symlinks
def test_symlinks_outside_the_tree_are_followed_and_loops_guarded(tmp_path):
    root = _tree(tmp_path / "data", classes=("cats", "dogs"))
    outside = _tree(tmp_path / "elsewhere", classes=("owls",))
    (root / "owls").symlink_to(outside / "owls", target_is_directory=True)
    (outside / "owls" / "loop").symlink_to(outside / "owls", target_is_directory=True)  # a cycle
    (outside / "owls" / "up").symlink_to(tmp_path, target_is_directory=True)  # holds the tree itself
    (root / "dogs" / "dangling").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    ds = load_dataset("folder", root=str(root))
    assert ds.class_names == ["cats", "dogs", "owls"]
    assert np.bincount(ds.labels).tolist() == [3, 3, 3]
    assert [Path(ds.source(i)).parent for i in range(6, 9)] == [root / "owls"] * 3
    reasons = {Path(s.source).name: s.reason for s in ds.skipped}
    assert set(reasons) == {"loop", "up"}  # a dangling link to no image is not an image
    assert "loop" in reasons["loop"]
    assert "inside" in reasons["up"] or "loop" in reasons["up"]


# -- 11. fewer than two classes with readable images is an error -----------------------------


def test_one_class_folder_is_refused(tmp_path):
    root = _tree(tmp_path / "data", classes=("cats",))
    with pytest.raises(DatasetError, match="at least 2 classes") as err:
        load_dataset("folder", root=str(root))
    assert str(root) in str(err.value) and "found 1" in str(err.value)


def test_one_class_left_after_drops_is_refused(tmp_path):
    root = _tree(tmp_path / "data", classes=("cats", "dogs"))
    for f in (root / "dogs").iterdir():
        _truncate(f)
    with pytest.raises(DatasetError, match="at least 2 classes") as err, pytest.warns(UserWarning):
        load_dataset("folder", root=str(root))
    assert str(root) in str(err.value) and "found 1" in str(err.value) and "dogs" in str(err.value)


def test_load_dataset_refuses_any_loader_result_with_one_class(tmp_path):
    from featbench.datasets import ArrayImageSet
    from featbench.registry import DATASETS, register_dataset

    @register_dataset("one-class-test-set")
    def _one(*, limit_per_class=None, seed=0):
        """One class only (test). Parameters: none. Source: test."""
        return ArrayImageSet("one", np.zeros((4, 8, 8), np.uint8), [0, 0, 0, 0], ["a", "b"])

    try:
        with pytest.raises(DatasetError, match="at least 2 classes") as err:
            load_dataset("one-class-test-set")
        assert "one-class-test-set" in str(err.value) and "found 1" in str(err.value)
    finally:
        DATASETS._entries.pop("one-class-test-set", None)


def test_the_command_line_shows_a_dropped_class_in_one_line(tmp_path, capsys):
    """From the command line the warning is one line naming the folder and the class, without Python's
    file:line prefix and source line."""
    from featbench.cli import main

    root = _tree(tmp_path / "data")
    for f in sorted((root / "dogs").iterdir()):
        _truncate(f)
    assert main(["extract", str(root), "-e", "pixels", "-o", str(tmp_path / "out.npz"), "--n-jobs", "1"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "dropped" in line]
    assert err == [f"featbench: warning: dataset folder '{root}': class 'dogs' dropped: no readable image "
                   "(3 files skipped)"]
