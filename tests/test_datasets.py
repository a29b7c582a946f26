"""Dataset loaders: shapes, labels, decoding, splits, errors, fingerprints."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import socket
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from featbench.datasets import (
    ArrayImageSet,
    ImageSet,
    LazyImageSet,
    Skipped,
    builtin,
    decode_image,
    limit_per_class,
    load_dataset,
)
from featbench.datasets import keras as keras_loader
from featbench.errors import ConfigError, DatasetError, UnknownNameError


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No test reads the user's caches or downloads anything."""
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))

    def no_network(*args, **kwargs):
        raise AssertionError("a dataset test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)


def _counts(ds: ImageSet) -> list[int]:
    return np.bincount(ds.labels, minlength=ds.n_classes).tolist()


# -- bundled sets -------------------------------------------------------------


def test_digits_shape_values_and_labels():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    ref = load_digits()
    assert ds.name == "digits"
    assert len(ds) == 1797
    assert ds.class_names == [str(d) for d in range(10)]
    img = ds[0]
    assert img.shape == (8, 8) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.round(ref.images[0] * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(ds.labels, ref.target)
    assert max(int(ds[i].max()) for i in range(50)) == 255
    assert sum(_counts(ds)) == 1797 and min(_counts(ds)) > 170


def test_faces_first_hundred_are_faces():
    from skimage.data import lfw_subset

    ds = load_dataset("faces")
    assert ds.name == "faces"
    assert len(ds) == 200
    assert ds.class_names == ["non-face", "face"]
    assert _counts(ds) == [100, 100]
    assert (ds.labels[:100] == 1).all() and (ds.labels[100:] == 0).all()
    img = ds[0]
    assert img.shape == (25, 25) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.round(lfw_subset()[0] * 255).astype(np.uint8))


def test_textures_patches_and_counts():
    from skimage.data import brick, gravel

    ds = load_dataset("textures")
    assert ds.class_names == ["brick", "grass", "gravel"]
    assert len(ds) == 3 * 256 and _counts(ds) == [256, 256, 256]
    assert ds[0].shape == (32, 32) and ds[0].dtype == np.uint8
    np.testing.assert_array_equal(ds[1], brick()[0:32, 32:64])

    overlapping = load_dataset("textures", patch_size=64, stride=32)
    assert _counts(overlapping) == [225, 225, 225]  # (512 - 64) / 32 + 1 = 15 per axis
    last = overlapping[len(overlapping) - 1]
    np.testing.assert_array_equal(last, gravel()[448:512, 448:512])


@pytest.mark.parametrize(
    "params", [{"patch_size": 4}, {"patch_size": 600}, {"stride": 0}, {"patch_size": "32"}]
)
def test_textures_rejects_bad_parameters(params):
    key = next(iter(params))
    with pytest.raises(ConfigError, match=key):
        load_dataset("textures", **params)


def test_limit_per_class_is_deterministic_and_seeded():
    a = load_dataset("digits", limit_per_class=10, seed=0)
    b = load_dataset("digits", limit_per_class=10, seed=0)
    c = load_dataset("digits", limit_per_class=10, seed=1)
    assert len(a) == 100 and _counts(a) == [10] * 10
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    full = load_dataset("digits")
    assert full.fingerprint != a.fingerprint
    # the limited set holds the images chosen by limit_per_class() on the full labels
    keep = limit_per_class(full.labels, 10, seed=0)
    for i in (0, 57, 99):
        np.testing.assert_array_equal(a[i], full[int(keep[i])])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_limit_per_class_must_be_positive_int(bad):
    with pytest.raises(ConfigError, match="limit_per_class"):
        load_dataset("faces", limit_per_class=bad)


def test_load_dataset_checks_parameter_names():
    with pytest.raises(ConfigError) as err:
        load_dataset("digits", limit=5)
    msg = str(err.value)
    assert "'limit'" in msg and "limit_per_class" in msg and "seed" in msg
    with pytest.raises(ConfigError, match="'root'"):
        load_dataset("folder")
    with pytest.raises(UnknownNameError, match="digits"):
        load_dataset("digitz")


def test_loader_docstrings_have_a_summary_line():
    from featbench.registry import DATASETS

    for name in ["digits", "faces", "textures", "folder", "idx", "opencv-digits", "keras"]:
        doc = DATASETS.get(name).__doc__
        assert doc and doc.strip().splitlines()[0].strip(), name
        assert "Parameters" in doc and "Source" in doc, name


# -- image decoding -----------------------------------------------------------

RNG = np.random.default_rng(7)
GRAY = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)


def _on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    c = colour.astype(np.float64)
    a = (alpha.astype(np.float64) / 255.0)[..., None] if colour.ndim == 3 else alpha / 255.0
    return np.round(c * a + 255.0 * (1 - a)).astype(np.uint8)


def _write_modes(folder: Path) -> dict[str, np.ndarray]:
    """One file per mode; returns file name -> expected decoded array."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    Image.fromarray(GRAY, "L").save(folder / "01_gray.png")
    expected["01_gray.png"] = GRAY
    Image.fromarray(RGB, "RGB").save(folder / "02_rgb.png")
    expected["02_rgb.png"] = RGB
    Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA").save(folder / "03_rgba.png")
    expected["03_rgba.png"] = _on_white(RGB, ALPHA)
    pal = Image.fromarray(RGB, "RGB").quantize(colors=6)
    pal.save(folder / "04_palette.png")
    assert Image.open(folder / "04_palette.png").mode == "P"
    expected["04_palette.png"] = np.asarray(pal.convert("RGB"))
    Image.fromarray(GRAY16).save(folder / "05_gray16.png")
    assert Image.open(folder / "05_gray16.png").mode.startswith("I;16")
    expected["05_gray16.png"] = (GRAY16 >> 8).astype(np.uint8)
    cv2.imwrite(str(folder / "06_rgb16.png"), RGB16[..., ::-1])  # OpenCV writes BGR
    expected["06_rgb16.png"] = (RGB16 >> 8).astype(np.uint8)
    cv2.imwrite(str(folder / "07_gray16.tif"), GRAY16)
    expected["07_gray16.tif"] = (GRAY16 >> 8).astype(np.uint8)
    Image.fromarray(np.dstack([GRAY, ALPHA]), "LA").save(folder / "08_gray_alpha.png")
    expected["08_gray_alpha.png"] = _on_white(GRAY, ALPHA)
    Image.fromarray(RGB).save(folder / "09_rgb.BMP")
    expected["09_rgb.BMP"] = RGB
    return expected


def test_decode_image_modes(tmp_path):
    expected = _write_modes(tmp_path)
    for name, want in expected.items():
        got = decode_image(tmp_path / name)
        assert got.dtype == np.uint8, name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_decode_image_applies_exif_orientation(tmp_path):
    img = Image.fromarray(np.zeros((10, 30, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert decode_image(tmp_path / "rot.jpg").shape == (30, 10, 3)


def test_decode_image_error_names_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"bad\.png"):
        decode_image(bad)
    with pytest.raises(DatasetError, match=r"missing\.png"):
        decode_image(tmp_path / "missing.png")


# -- folder loader ----------------------------------------------------------------


def _tiny_tree(root: Path) -> Path:
    for c, cls in enumerate(["cats", "dogs"]):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4, 3), 40 * c + 10 * i, dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "README.txt").write_text("files at the root are ignored")
    return root


def test_folder_decodes_every_mode(tmp_path):
    expected = _write_modes(tmp_path / "set" / "modes")
    Image.fromarray(GRAY).save(tmp_path / "set" / "modes" / "notes.txt.gif")  # extension not listed
    (tmp_path / "set" / "other").mkdir()
    Image.fromarray(RGB).save(tmp_path / "set" / "other" / "x.png")
    ds = load_dataset("folder", root=str(tmp_path / "set"))
    assert isinstance(ds, LazyImageSet)
    assert ds.name == "folder:set"
    assert ds.class_names == ["modes", "other"]
    assert _counts(ds) == [len(expected), 1]
    assert ds.skipped == []
    for i, (name, want) in enumerate(sorted(expected.items())):
        assert Path(ds.source(i)).name == name
        np.testing.assert_array_equal(ds[i], want, err_msg=name)


def test_folder_fingerprint_depends_on_content_not_path(tmp_path):
    a = _tiny_tree(tmp_path / "one" / "data")
    b = tmp_path / "two" / "copy"
    shutil.copytree(a, b)
    fa = load_dataset("folder", root=str(a)).fingerprint
    fb = load_dataset("folder", root=str(b)).fingerprint
    assert fa == fb
    pixels = np.asarray(Image.open(b / "dogs" / "2.png")).copy()
    pixels[1, 2, 0] += 1
    Image.fromarray(pixels).save(b / "dogs" / "2.png")
    assert load_dataset("folder", root=str(b)).fingerprint != fa


def test_folder_skips_unreadable_files(tmp_path):
    root = _tiny_tree(tmp_path / "data")
    garbage = root / "cats" / "zz_broken.jpg"
    garbage.write_bytes(b"\x00garbage bytes, not a JPEG" * 10)
    ds = load_dataset("folder", root=str(root))
    assert len(ds) == 6 and _counts(ds) == [3, 3]
    assert len(ds.skipped) == 1
    assert isinstance(ds.skipped[0], Skipped)
    assert ds.skipped[0].source == str(garbage)
    assert ds.skipped[0].reason
    assert all(ds[i].shape == (4, 4, 3) for i in range(len(ds)))


def test_folder_limit_per_class(tmp_path):
    root = _tiny_tree(tmp_path / "data")
    a = load_dataset("folder", root=str(root), limit_per_class=2, seed=3)
    b = load_dataset("folder", root=str(root), limit_per_class=2, seed=3)
    assert _counts(a) == [2, 2]
    assert [a.source(i) for i in range(4)] == [b.source(i) for i in range(4)]


def test_folder_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match="does not exist") as err:
        load_dataset("folder", root=str(missing))
    assert str(missing) in str(err.value) and ".jpg" in str(err.value)

    root = _tiny_tree(tmp_path / "data")
    (root / "empty_class").mkdir()
    with pytest.raises(DatasetError, match="holds no") as err:
        load_dataset("folder", root=str(root))
    assert str(root / "empty_class") in str(err.value)

    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(GRAY).save(flat / "a.png")
    with pytest.raises(DatasetError, match="no class sub-folders") as err:
        load_dataset("folder", root=str(flat))
    assert str(flat) in str(err.value)

    junk = tmp_path / "junk"
    (junk / "a").mkdir(parents=True)
    (junk / "a" / "x.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="can be read"):
        load_dataset("folder", root=str(junk))

    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"")
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset("folder", root=str(a_file))


def test_folder_root_env_vars_and_featbench_data(tmp_path, monkeypatch):
    _tiny_tree(tmp_path / "sets" / "pets")
    monkeypatch.setenv("FB_TEST_ROOT", str(tmp_path / "sets"))
    assert len(load_dataset("folder", root="$FB_TEST_ROOT/pets")) == 6
    assert len(load_dataset("folder", root="${FB_TEST_ROOT}/pets")) == 6

    monkeypatch.delenv("FB_TEST_UNSET", raising=False)
    with pytest.raises(DatasetError, match="FB_TEST_UNSET"):
        load_dataset("folder", root="$FB_TEST_UNSET/pets")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEATBENCH_DATA", str(tmp_path / "sets"))
    ds = load_dataset("folder", root="pets")  # not in the cwd: found under $FEATBENCH_DATA
    assert ds.name == "folder:pets" and len(ds) == 6
    with pytest.raises(DatasetError) as err:
        load_dataset("folder", root="cats-and-dogs")
    assert str(tmp_path / "sets" / "cats-and-dogs") in str(err.value)


def test_folder_non_ascii_paths(tmp_path):
    root = tmp_path / "données"
    (root / "ñandú").mkdir(parents=True)
    Image.fromarray(RGB).save(root / "ñandú" / "çà.png")
    Image.fromarray(GRAY).save(root / "ñandú" / "é.png")
    (root / "ödön").mkdir()
    Image.fromarray(GRAY).save(root / "ödön" / "ß.png")
    ds = load_dataset("folder", root=str(root))
    assert ds.name == "folder:données" and ds.class_names == ["ñandú", "ödön"]
    np.testing.assert_array_equal(ds[0], RGB)
    np.testing.assert_array_equal(ds[1], GRAY)


# -- idx -------------------------------------------------------------------------


def _write_idx(path: Path, arr: np.ndarray, magic: int, *, compress: bool = True) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def _idx_folder(
    folder: Path, n_train: int = 12, n_test: int = 8, parts=("train", "test"), shape=(5, 4)
) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        if part not in parts:
            continue
        x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        y = np.arange(n) % 3
        prefix = "train" if part == "train" else "t10k"
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x, 2051)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y.astype(np.uint8), 2049)
        out[part] = (x, y)
    return out


def test_idx_train_and_test_give_official_split(tmp_path, monkeypatch):
    data = _idx_folder(tmp_path / "tiny", shape=(40, 30))
    ds = load_dataset("idx", root=str(tmp_path / "tiny"), class_names=["a", "b", "c"])
    assert ds.name == "idx:tiny"
    assert len(ds) == 20 and ds.class_names == ["a", "b", "c"]
    train, test = ds.official_split
    np.testing.assert_array_equal(train, np.arange(12))
    np.testing.assert_array_equal(test, np.arange(12, 20))
    np.testing.assert_array_equal(ds[3], data["train"][0][3])
    np.testing.assert_array_equal(ds[12 + 5], data["test"][0][5])
    np.testing.assert_array_equal(ds.labels, np.concatenate([data["train"][1], data["test"][1]]))
    assert ds[0].dtype == np.uint8 and ds[0].shape == (40, 30)

    # decompressed once into the cache, memory-mapped from there
    cached = sorted((Path(builtin.cache_dir()) / "idx").glob("*.npy"))
    assert len(cached) == 2
    assert ds._open()[0].__class__ is np.memmap
    again = load_dataset("idx", root=str(tmp_path / "tiny"), class_names=["a", "b", "c"])
    assert again.fingerprint == ds.fingerprint

    # same content in memory gives the same fingerprint as an ArrayImageSet
    arr = ArrayImageSet("x", np.concatenate([data["train"][0], data["test"][0]]), ds.labels, ds.class_names)
    assert arr.fingerprint == ds.fingerprint

    # pickling does not copy the images, and the copy reads the same images
    blob = pickle.dumps(ds)
    assert len(blob) < 4000 < 20 * 40 * 30
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone[7], ds[7])


def test_idx_limit_keeps_split_per_part(tmp_path):
    _idx_folder(tmp_path / "tiny")
    ds = load_dataset("idx", root=str(tmp_path / "tiny"), limit_per_class=2, seed=0)
    train, test = ds.official_split
    assert len(ds) == 12 and len(train) == 6 and len(test) == 6
    assert np.bincount(ds.labels[train]).tolist() == [2, 2, 2]
    assert np.bincount(ds.labels[test]).tolist() == [2, 2, 2]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(12))
    assert train.max() < test.min()  # train images come first


def test_idx_test_only_warns_and_has_no_split(tmp_path):
    _idx_folder(tmp_path / "t", parts=("test",))
    with pytest.warns(UserWarning, match="only the test part"):
        ds = load_dataset("idx", root=str(tmp_path / "t"))
    assert len(ds) == 8 and ds.official_split is None
    with pytest.raises(DatasetError, match="no train part"):
        load_dataset("idx", root=str(tmp_path / "t"), subset="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_dataset("idx", root=str(tmp_path / "t"), subset="test")) == 8


def test_idx_uncompressed_files(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    x = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2)
    _write_idx(folder / "t10k-images-idx3-ubyte", x, 2051, compress=False)
    _write_idx(folder / "t10k-labels-idx1-ubyte", np.array([0, 1, 0], dtype=np.uint8), 2049, compress=False)
    ds = load_dataset("idx", root=str(folder), subset="test")
    np.testing.assert_array_equal(ds[2], x[2])


def test_idx_bad_magic_and_count_mismatch(tmp_path):
    _idx_folder(tmp_path / "bad", parts=("test",))
    bad = tmp_path / "bad" / "t10k-images-idx3-ubyte.gz"
    _write_idx(bad, np.zeros((8, 5, 4), dtype=np.uint8), 2049)  # labels magic on an images file
    with pytest.raises(DatasetError, match="magic number 2049") as err:
        load_dataset("idx", root=str(tmp_path / "bad"), subset="test")
    assert str(bad) in str(err.value)

    _write_idx(bad, np.zeros((7, 5, 4), dtype=np.uint8), 2051)  # 7 images, 8 labels
    with pytest.raises(DatasetError, match="7 images") as err:
        load_dataset("idx", root=str(tmp_path / "bad"), subset="test")
    assert "t10k-labels" in str(err.value)

    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (8, 5, 4))
    truncated = gzip.compress(header + b"x")
    bad.write_bytes(truncated)
    with pytest.raises(DatasetError, match="holds only") as err:
        load_dataset("idx", root=str(tmp_path / "bad"), subset="test")
    assert str(bad) in str(err.value)


def test_idx_missing_folder_and_labels_beyond_class_names(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("idx", root=str(tmp_path / "none"))
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    with pytest.raises(DatasetError, match="FEATBENCH_DATA"):
        load_dataset("idx")
    _idx_folder(tmp_path / "tiny")
    with pytest.raises(DatasetError, match="class_names"):
        load_dataset("idx", root=str(tmp_path / "tiny"), class_names=["a", "b"])


# -- opencv-digits ------------------------------------------------------------------


def _synthetic_sheet(path: Path) -> np.ndarray:
    """2000x1000 sheet; cell (row r, col c) is filled with a pattern encoding r and c."""
    sheet = np.zeros((1000, 2000), dtype=np.uint8)
    for r in range(50):
        for c in range(100):
            cell = sheet[r * 20 : (r + 1) * 20, c * 20 : (c + 1) * 20]
            cell[:10] = r
            cell[10:] = c
    Image.fromarray(sheet).save(path)
    return sheet


def test_opencv_digits_split_follows_tutorial(tmp_path):
    _synthetic_sheet(tmp_path / "digits.png")
    ds = load_dataset("opencv-digits", path=str(tmp_path / "digits.png"))
    assert len(ds) == 5000 and ds.name == "opencv-digits"
    assert _counts(ds) == [500] * 10
    train, test = ds.official_split
    assert len(train) == 2500 and len(test) == 2500
    for i in list(train[:3]) + list(train[-3:]) + list(test[:3]) + list(test[-3:]):
        img = ds[int(i)]
        assert img.shape == (20, 20) and img.dtype == np.uint8
        row, col = int(img[0, 0]), int(img[19, 19])
        assert (col < 50) == (i in set(train.tolist()))
        assert ds.labels[i] == row // 5
    # exactly the OpenCV tutorial: x = cells (50, 100, 20, 20); train = x[:, :50], test = x[:, 50:100]
    sheet = np.asarray(Image.open(tmp_path / "digits.png"))
    x = np.array([np.hsplit(row, 100) for row in np.vsplit(sheet, 50)])
    np.testing.assert_array_equal(np.stack([ds[int(i)] for i in train]), x[:, :50].reshape(-1, 20, 20))
    np.testing.assert_array_equal(np.stack([ds[int(i)] for i in test]), x[:, 50:100].reshape(-1, 20, 20))
    np.testing.assert_array_equal(ds.labels[train], np.repeat(np.arange(10), 250))


def test_opencv_digits_errors(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"samples/data/digits\.png") as err:
        load_dataset("opencv-digits", path=str(tmp_path / "digits.png"))
    assert str(tmp_path / "digits.png") in str(err.value)
    monkeypatch.setenv("FEATBENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        load_dataset("opencv-digits")
    assert str(tmp_path / "opencv-digits" / "digits.png") in str(err.value)
    Image.fromarray(np.zeros((100, 200), dtype=np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(DatasetError, match="2000x1000"):
        load_dataset("opencv-digits", path=str(tmp_path / "small.png"))


# -- keras (local files only) ----------------------------------------------------------


def _no_download(name):
    raise OSError("no network in tests")


def test_keras_mnist_from_local_npz(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    monkeypatch.setattr(keras_loader, "_keras_download", _no_download)
    home = Path(os.environ["KERAS_HOME"])
    (home / "datasets").mkdir(parents=True)
    rng = np.random.default_rng(2)
    x_train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    x_test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    y_train, y_test = np.arange(30) % 10, np.arange(10)
    np.savez(home / "datasets" / "mnist.npz", x_train=x_train, y_train=y_train.astype(np.uint8),
             x_test=x_test, y_test=y_test.astype(np.uint8))  # fmt: skip
    ds = load_dataset("keras", name="mnist")
    assert ds.name == "keras:mnist" and len(ds) == 40
    assert ds.class_names == [str(d) for d in range(10)]
    train, test = ds.official_split
    np.testing.assert_array_equal(train, np.arange(30))
    np.testing.assert_array_equal(test, np.arange(30, 40))
    np.testing.assert_array_equal(ds[4], x_train[4])
    np.testing.assert_array_equal(ds[35], x_test[5])
    np.testing.assert_array_equal(ds.labels, np.concatenate([y_train, y_test]))
    limited = load_dataset("keras", name="mnist", limit_per_class=1)
    assert [len(p) for p in limited.official_split] == [10, 10]


def test_keras_cifar10_from_local_batches(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    monkeypatch.setattr(keras_loader, "_keras_download", _no_download)
    folder = Path(os.environ["KERAS_HOME"]) / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    chw = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 4)]
        chw[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
    ds = load_dataset("keras", name="cifar10")
    assert ds.name == "keras:cifar10" and len(ds) == 24
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert [len(p) for p in ds.official_split] == [20, 4]
    img = ds[21]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, chw["test_batch"][0][1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert ds.labels[4] == chw["data_batch_2"][1][0]


def test_keras_cifar10_refuses_code_in_pickles(tmp_path, monkeypatch):
    monkeypatch.delenv("FEATBENCH_DATA", raising=False)
    folder = Path(os.environ["KERAS_HOME"]) / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": Path("/x"), b"labels": [0]}, f)
    with pytest.raises(DatasetError, match="refusing"):
        load_dataset("keras", name="cifar10")


def test_keras_nothing_local_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_DATA", str(tmp_path))
    monkeypatch.setattr(keras_loader, "_keras_download", _no_download)
    with pytest.raises(DatasetError) as err:
        load_dataset("keras", name="fashion_mnist")
    msg = str(err.value)
    assert "no network in tests" in msg
    assert str(tmp_path / "fashion-mnist") in msg and "fashion-mnist" in msg
    with pytest.raises(ConfigError, match="cifar10"):
        load_dataset("keras", name="cifar100")


def test_keras_fashion_mnist_delegates_to_idx(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_DATA", str(tmp_path))
    monkeypatch.setattr(keras_loader, "_keras_download", _no_download)
    _idx_folder(tmp_path / "fashion-mnist", n_train=6, n_test=3)
    ds = load_dataset("keras", name="fashion_mnist")
    assert ds.name == "keras:fashion_mnist"
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert [len(p) for p in ds.official_split] == [6, 3]


# -- real data (FEATBENCH_DATA) -------------------------------------------------------------


def test_real_opencv_digits(featbench_data):
    ds = load_dataset("opencv-digits", path=str(featbench_data / "opencv-digits" / "digits.png"))
    assert len(ds) == 5000 and _counts(ds) == [500] * 10
    assert [len(p) for p in ds.official_split] == [2500, 2500]
    assert ds[0].shape == (20, 20) and ds[0].dtype == np.uint8
    assert ds[0].max() > 100  # a digit, not an empty cell


def test_real_mnist_test_set(featbench_data):
    with pytest.warns(UserWarning, match="only the test part"):
        ds = load_dataset("idx", root=str(featbench_data / "mnist"))
    assert len(ds) == 10000 and ds.official_split is None
    assert ds[0].shape == (28, 28) and ds[0].dtype == np.uint8
    assert _counts(ds) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.labels[0] == 7  # the first MNIST test digit is a 7


def test_real_clothing_folder(featbench_data):
    ds = load_dataset("folder", root=str(featbench_data / "clothing-dataset-small-subset"), limit_per_class=5)
    assert ds.class_names == [
        "dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt",
    ]  # fmt: skip
    assert len(ds) == 50 and _counts(ds) == [5] * 10
    assert ds.skipped == []
    for i in range(0, 50, 7):
        img = ds[i]
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert min(img.shape[:2]) >= 100
