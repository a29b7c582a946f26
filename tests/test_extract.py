"""``featbench extract``: the saved vectors are the extractor's own output on the same images, traceable
through the manifest, served from the cache the second time; bad input is one line and exit 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from featbench import create_extractor
from featbench.cli import main
from featbench.config import Protocol
from featbench.datasets import load_dataset
from featbench.evaluation import make_splits
from featbench.version import __version__


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))


def _folder(root: Path) -> list[Path]:
    """3 classes x 4 small colour PNGs; returns the files."""
    rng = np.random.default_rng(0)
    files = []
    for c in ("ant", "bee", "cat"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            p = root / c / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(p)
            files.append(p)
    return files


def _extract(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["extract", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_round_trip_equals_the_extractor_on_the_same_images(tmp_path, capsys, suffix):
    out = tmp_path / f"hog{suffix}"
    code, stdout, err = _extract(capsys, "digits", "-e", "hog", "--set", "size=32", "-o", str(out))
    assert code == 0, err
    images = load_dataset("digits")
    expected = create_extractor("hog", size=32).fit(images[:0]).transform(images)
    if suffix == ".npz":
        with np.load(out) as z:
            X, labels, parts = z["features"], z["labels"], z["parts"]
    else:
        df = pd.read_parquet(out)  # readable by pandas: one row per image, the vector as a list
        X, labels, parts = np.stack(df["vector"].to_numpy()), df["label"].to_numpy(), df["part"].to_numpy()
        assert list(df["class"][:3]) == [images.class_names[i] for i in images.labels[:3]]
    # the same computation per image, in worker processes or not: equal up to float32 rounding
    np.testing.assert_allclose(X, expected, rtol=1e-6, atol=1e-7)
    assert X.dtype == np.float32 and (labels == images.labels).all() and set(parts) == {"all"}
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["featbench"] == __version__
    assert manifest["extractor"]["name"] == "hog" and manifest["extractor"]["params"] == {"size": 32}
    assert manifest["dataset"]["fingerprint"] == images.fingerprint
    assert manifest["rows"] == len(images) and manifest["dim"] == X.shape[1]
    assert manifest["command"].startswith("featbench extract digits -e hog")
    assert str(out) in stdout


def test_learning_extractor_is_fitted_on_the_split_training_part_only(tmp_path, capsys):
    out = tmp_path / "sift.npz"
    params = {"mode": "dense", "min_size": 32, "step": 8, "scales": [16], "n_words": 8, "max_descriptors": 3000}
    sets = [a for k, v in params.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    code, _, err = _extract(capsys, "textures", "-e", "sift", *sets, "--split", "1", "-o", str(out))
    assert code == 0, err
    images = load_dataset("textures")
    split = make_splits(images.labels, Protocol(), None, dataset="textures")[1]
    ext = create_extractor("sift", **params).fit(images.subset(split.train), images.labels[split.train])
    with np.load(out) as z:
        X, parts = z["features"], z["parts"]
    np.testing.assert_allclose(X, ext.transform(images), rtol=1e-5, atol=1e-6)
    assert (parts[split.train] == "train").all() and (parts[split.test] == "test").all()
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["split"]["id"] == split.id and manifest["split"]["digest"] == split.digest
    assert "training part of split" in manifest["fitted_on"] and manifest["from_cache"] is False

    # the second time the features come from the cache, and the vectors are the same
    again = tmp_path / "again.npz"
    assert _extract(capsys, "textures", "-e", "sift", *sets, "--split", "1", "-o", str(again))[0] == 0
    assert json.loads(Path(f"{again}.json").read_text())["from_cache"] is True
    with np.load(again) as z:
        np.testing.assert_array_equal(z["features"], X)


def test_folder_rows_name_their_files(tmp_path, capsys):
    files = _folder(tmp_path / "imgs")
    out = tmp_path / "px.parquet"
    code, _, err = _extract(capsys, str(tmp_path / "imgs"), "-e", "pixels", "--set", "size=4", "-o", str(out))
    assert code == 0, err
    df = pd.read_parquet(out)
    assert sorted(df["path"]) == sorted(str(f) for f in files)
    for _, row in df.iterrows():  # each vector is the pixels extractor's output for that very file
        img = np.asarray(Image.open(row["path"]))
        expected = create_extractor("pixels", size=4).fit([]).transform([img])[0]
        np.testing.assert_allclose(np.asarray(row["vector"]), expected, rtol=1e-6)
        assert row["class"] == Path(row["path"]).parent.name


def test_config_picks_dataset_extractor_and_protocol(tmp_path, capsys):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent("""
        name = "t"
        [protocol]
        kind = "holdout"
        repeats = 2
        test_size = 0.5
        seed = 3
        [[datasets]]
        name = "digits"
        limit_per_class = 10
        [[extractors]]
        label = "small-pixels"
        name = "pixels"
        size = 4
        [[extractors]]
        name = "hog"
        size = 32
        [[classifiers]]
        name = "logreg"
        [[tasks]]
        name = "classification"
        extractors = ["hog*"]  # a task of the other row only: extract runs no task, so it does not matter
    """))
    out = tmp_path / "p.npz"
    code, _, err = _extract(capsys, "--config", str(cfg), "-e", "small-pixels", "-o", str(out))
    assert code == 0, err
    manifest = json.loads(Path(f"{out}.json").read_text())
    assert manifest["extractor"]["label"] == "small-pixels" and manifest["extractor"]["params"] == {"size": 4}
    assert manifest["dataset"]["n_images"] == 100 and manifest["dataset"]["params"] == {"limit_per_class": 10}


@pytest.mark.parametrize("args, expected", [
    (["/no/such/folder", "-e", "hog", "-o", "x.npz"], "neither an image folder nor a built-in dataset"),
    (["digits", "-e", "hgo", "-o", "x.npz"], "hog"),
    (["digits", "-e", "hog", "--set", "sise=32", "-o", "x.npz"], "sise"),
    (["digits", "-e", "hog", "--set", "size", "-o", "x.npz"], "KEY=VALUE"),
    (["digits", "-e", "hog", "-o", "x.csv"], ".npz or .parquet"),
    (["digits", "-e", "sift", "--split", "7", "-o", "x.npz"], "split"),
    (["digits", "-e", "hog", "--split", "two", "-o", "x.npz"], "split number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    code, out, err = _extract(capsys, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err
    assert not list(tmp_path.glob("x.*"))
