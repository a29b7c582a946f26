"""Bad input: exit code 2 and one line naming the file, key or value and what is accepted."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from featbench.cli import main

BASE = """
name = "t"
[protocol]
repeats = 1
[[datasets]]
name = "digits"
limit_per_class = 10
[[extractors]]
name = "pixels"
size = 8
[[classifiers]]
name = "logreg"
C = [1.0]
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))


def _run(tmp_path: Path, text: str, capsys, *extra: str) -> tuple[int, str, str]:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent(text))
    code = main(["run", str(cfg), "--out", str(tmp_path / "out"), *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("featbench: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('name = "pixels"', 'name = "pixles"', r"unknown extractor 'pixles'; did you mean 'pixels'\?"),
        ('[protocol]\nrepeats = 1', '[protocol]\nrepeat = 1',
         r"exp\.toml \[protocol\]: unknown key 'repeat' .*did you mean 'repeats'\?"),
        ("[[classifiers]]", "[[classifier]]", r"unknown key 'classifier' in top level; did you mean 'classifiers'"),
        ("repeats = 1", 'repeats = "three"', r"repeats must be an integer, got 'three'"),
        ("size = 8", 'size = "big"', r"The 'size' parameter of Pixels must be an int .*Got 'big'"),
        ("size = 8", "sise = 8", r"unknown parameter 'sise' for extractor 'pixels'; did you mean 'size'\? accepted: color, size"),
        ("limit_per_class = 10", "limit_per_clas = 10", r"unknown dataset parameter 'limit_per_clas'"),
        ("C = [1.0]", "C = [-1.0]", r"C must be a positive finite number"),
        ('name = "logreg"', 'name = "svm"', r"unknown classifier 'svm'"),
        ("C = [1.0]", 'C = [1.0]\nscale = "minmax"',
         r"\[\[classifiers\]\] #1: scale must be one of 'standard', 'none', got 'minmax'"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, capsys, old, new, expected):
    assert old in BASE
    code, _, err = _run(tmp_path, BASE.replace(old, new, 1), capsys)
    assert code == 2
    line = _one_error_line(err)
    assert re.search(expected, line), line
    assert not (tmp_path / "out" / "cells").exists(), "nothing may run before the config is valid"


def test_missing_experiment_file(tmp_path, capsys):
    code = main(["run", str(tmp_path / "nope.toml")])
    assert code == 2
    assert "nope.toml' not found" in _one_error_line(capsys.readouterr().err)


def test_invalid_toml_names_file(tmp_path, capsys):
    code, _, err = _run(tmp_path, "name = \n", capsys)
    assert code == 2
    assert "exp.toml: not valid TOML" in _one_error_line(err)


def test_debug_shows_traceback(tmp_path, capsys):
    cfg = tmp_path / "exp.toml"
    cfg.write_text(BASE.replace('name = "pixels"', 'name = "pixles"'))
    assert main(["--debug", "run", str(cfg)]) == 2
    assert "Traceback" in capsys.readouterr().err


def _folder_cfg(root: Path) -> str:
    return BASE.replace('name = "digits"\nlimit_per_class = 10', f'name = "folder"\nroot = "{root.as_posix()}"')


def _write_images(folder: Path, n: int, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    for i in range(n):
        arr = np.clip(rng.normal(value, 20, (16, 16)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")


def test_missing_dataset_folder(tmp_path, capsys):
    code, _, err = _run(tmp_path, _folder_cfg(tmp_path / "no-such-dir"), capsys)
    assert code == 2
    assert "no-such-dir" in _one_error_line(err)


def test_empty_class_folder(tmp_path, capsys):
    _write_images(tmp_path / "data" / "dark", 6, 60)
    (tmp_path / "data" / "bright").mkdir()
    code, _, err = _run(tmp_path, _folder_cfg(tmp_path / "data"), capsys)
    assert code == 2
    assert "bright" in _one_error_line(err)


def test_unreadable_image_is_skipped_and_counted(tmp_path, capsys):
    _write_images(tmp_path / "data" / "dark", 8, 60)
    _write_images(tmp_path / "data" / "bright", 8, 190)
    (tmp_path / "data" / "bright" / "broken.png").write_bytes(b"this is not a png")
    code, out, err = _run(tmp_path, _folder_cfg(tmp_path / "data"), capsys)
    assert code == 0, err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert results["skipped_images"].tolist() == [1]
    assert results["n_images"].tolist() == [16]
    assert results["status"].tolist() == ["ok"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "1 unreadable image(s) were left out of this dataset: " in report
    assert str(tmp_path / "data" / "bright" / "broken.png") in report  # named, with why
    assert results["skipped_files"].str.contains("broken.png").all()


def test_list_command(capsys):
    assert main(["list", "extractors", "h*"]) == 0
    out = capsys.readouterr().out
    assert "hog" in out and "pixels" not in out
    assert main(["list", "classifiers"]) == 0
    assert "rbf-svm" in capsys.readouterr().out
