"""Issue 8: every user mistake, damaged file and hostile plugin through the real command line.

Each case is what a user could do; each must end in exit 2 with ONE line on stderr naming the file, key
or value (``featbench: error: ...``), or in exit 0 with the defect counted and shown (a skipped image, a
dropped class, a failed cell). Never a traceback, never a silent wrong number. ``--debug`` still shows
the traceback.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from featbench.cli import main
from featbench.reporting import TIMING_COLUMNS

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


def _images(folder: Path, n: int, value: int, fmt: str = "png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    for i in range(n):
        arr = np.clip(rng.normal(value, 20, (16, 16)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.{fmt}")


def _truncated_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _folder_cfg(root: Path) -> str:
    return BASE.replace('name = "digits"\nlimit_per_class = 10', f'name = "folder"\nroot = "{root.as_posix()}"')


@dataclass
class Case:
    """``setup(tmp)`` returns the command-line arguments after ``featbench``; ``expect`` is a regex of the
    error line (exit 2) or None for a run that must succeed (exit 0) and ``check(tmp)`` what it wrote."""

    id: str
    setup: Callable[[Path], list[str]]
    expect: str | None
    check: Callable[[Path], None] | None = None


def _cfg(text: str, *extra: str) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "exp.toml").write_text(textwrap.dedent(text))
        return ["run", str(tmp / "exp.toml"), "--out", str(tmp / "out"), *extra]

    return setup


def _edit(old: str, new: str, *extra: str) -> Callable[[Path], list[str]]:
    assert old in BASE, old
    return _cfg(BASE.replace(old, new, 1), *extra)


def _raw(data: bytes) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "exp.toml").write_bytes(data)
        return ["run", str(tmp / "exp.toml"), "--out", str(tmp / "out")]

    return setup


def _with_folder(make: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        make(tmp / "data")
        return _cfg(_folder_cfg(tmp / "data"))(tmp)

    return setup


def _with_plugin(code: str, text: str) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "hostile.py").write_text(textwrap.dedent(code))
        return _cfg(text)(tmp)

    return setup


def _with_out(make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    def setup(tmp: Path) -> list[str]:
        (tmp / "exp.toml").write_text(BASE)
        return ["run", str(tmp / "exp.toml"), "--out", str(make(tmp))]

    return setup


def _status(tmp: Path) -> list[str]:
    return pd.read_csv(tmp / "out" / "results.csv")["status"].tolist()


# -- damaged folders --------------------------------------------------------------------
def _one_class(root: Path) -> None:
    _images(root / "only", 8, 100)


def _dead_class(root: Path) -> None:
    _images(root / "dark", 8, 60)
    _images(root / "bright", 8, 190)
    _images(root / "mid", 8, 120)
    (root / "dead").mkdir()
    for i in range(3):
        (root / "dead" / f"{i}.png").write_bytes(b"not a png at all")


def _check_dead_class(tmp: Path) -> None:
    res = pd.read_csv(tmp / "out" / "results.csv")
    assert res["n_classes"].tolist() == [3]
    assert res["skipped_images"].tolist() == [3]
    assert "dead" in res["dropped_classes"].iloc[0]
    assert len(json.loads(res["class_names"].iloc[0])) == 3
    report = (tmp / "out" / "report.md").read_text()
    assert "left out because none of their images could be read" in report and "dead" in report


def _truncated(root: Path) -> None:
    _images(root / "dark", 8, 60)
    _images(root / "bright", 8, 190)
    _truncated_jpeg(root / "bright" / "cut.jpg")


def _check_one_skip(tmp: Path) -> None:
    res = pd.read_csv(tmp / "out" / "results.csv")
    assert res["status"].tolist() == ["ok"]
    assert res["skipped_images"].tolist() == [1]
    assert res["n_images"].tolist() == [16]


def _symlink_to_root(root: Path) -> None:
    _images(root / "dark", 8, 60)
    _images(root / "bright", 8, 190)
    (root / "loop").symlink_to(root, target_is_directory=True)


def _check_no_duplicates(tmp: Path) -> None:
    res = pd.read_csv(tmp / "out" / "results.csv")
    assert res["n_classes"].tolist() == [2], "a link to the root must not become a class"
    assert res["n_images"].tolist() == [16]
    assert res["skipped_images"].tolist() == [1]


def _empty_root(root: Path) -> None:
    root.mkdir()


def _only_garbage(root: Path) -> None:
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "x.png").write_bytes(os.urandom(64))


# -- hostile plugins ----------------------------------------------------------------------
NAN_PLUGIN = '''
import numpy as np
from featbench import register_extractor
from featbench.extractors import Extractor, ExtractorSpec

@register_extractor("test-nan-means")
class NanMeans(Extractor):
    """Row means, with NaN for every fifth image.

    References
    ----------
    none
    """
    spec = ExtractorSpec(family="classical", color="gray", description="nan", references=("-",))
    calls = 0

    def _transform_one(self, image):
        type(self).calls += 1
        v = image.mean(axis=1).astype(float)
        if type(self).calls % 5 == 0:
            v[0] = np.nan
        return v
'''

EXIT_PLUGIN = '''
from featbench import register_extractor
from featbench.extractors import Extractor, ExtractorSpec

@register_extractor("test-exits")
class Exits(Extractor):
    """Calls sys.exit inside transform.

    References
    ----------
    none
    """
    spec = ExtractorSpec(family="classical", color="gray", description="exits", references=("-",))

    def _transform_one(self, image):
        raise SystemExit(3)
'''

OSERROR_LOADER = '''
from featbench import register_dataset

@register_dataset("test-broken-loader")
def broken(*, limit_per_class=None, seed=0):
    """A loader whose disk fails."""
    raise OSError(5, "Input/output error", "/mnt/flaky/images")
'''

TWO_EXTRACTORS = BASE + '[[extractors]]\nname = "{name}"\n'


def _check_failed_cell(name: str, reason: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        res = pd.read_csv(tmp / "out" / "results.csv")
        rows = dict(zip(res["extractor"], res["status"]))
        assert rows["pixels(size=8)"] == "ok"
        assert rows[name].startswith("failed: ") and re.search(reason, rows[name]), rows[name]
        assert re.search(reason, (tmp / "out" / "report.md").read_text())

    return check


# -- bad output folders -----------------------------------------------------------------------
def _out_is_file(tmp: Path) -> Path:
    (tmp / "out").write_text("a file")
    return tmp / "out"


def _cells_is_file(tmp: Path) -> Path:
    (tmp / "out").mkdir()
    (tmp / "out" / "cells").write_text("a file")
    return tmp / "out"


def _results_is_dir(tmp: Path) -> Path:
    (tmp / "out" / "results.csv").mkdir(parents=True)
    return tmp / "out"


def _out_not_creatable(tmp: Path) -> Path:
    return Path("/proc/featbench-cannot-write-here")


def _out_under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain" / "out"


CASES = [
    # -- config values, checked before anything runs (items 1-7) --
    Case("dataset-seed-negative", _edit("limit_per_class = 10", "limit_per_class = 10\nseed = -1"),
         r"\[\[datasets\]\] #1 \(digits\): seed must be an integer in \[0, 2\*\*32 - 1\], got -1"),
    Case("dataset-seed-huge", _edit("limit_per_class = 10", "limit_per_class = 10\nseed = 5000000000"),
         r"seed must be an integer in \[0, 2\*\*32 - 1\], got 5000000000"),
    Case("dataset-seed-string", _edit("limit_per_class = 10", 'limit_per_class = 10\nseed = "7"'),
         r"seed must be an integer .*got '7'"),
    Case("dataset-limit-zero", _edit("limit_per_class = 10", "limit_per_class = 0"),
         r"limit_per_class must be a positive integer, got 0"),
    Case("dataset-limit-float", _edit("limit_per_class = 10", "limit_per_class = 2.5"),
         r"limit_per_class must be a positive integer, got 2.5"),
    Case("run-seed-negative", _edit("[protocol]", "[run]\nseed = -1\n[protocol]"),
         r"\[run\]: seed must be an integer in \[0, 2\*\*32 - 1\], got -1"),
    Case("run-seed-huge", _edit("[protocol]", "[run]\nseed = 5000000000\n[protocol]"),
         r"\[run\]: seed must be an integer in \[0, 2\*\*32 - 1\], got 5000000000"),
    Case("run-n-jobs-zero", _edit("[protocol]", "[run]\nn_jobs = 0\n[protocol]"), r"n_jobs must be -1"),
    Case("run-inner-folds-huge", _edit("[protocol]", "[run]\ninner_folds = 1000000\n[protocol]"),
         r"inner_folds must be an integer in \[2, 100\]"),
    Case("run-backend", _edit("[protocol]", '[run]\nbackend = "spark"\n[protocol]'),
         r"backend 'spark' is not one of loky, threading, dask"),
    Case("run-scheduler-without-dask", _edit("[protocol]", '[run]\nscheduler = "tcp://x:1"\n[protocol]'),
         r"scheduler is only used with backend = \"dask\""),
    Case("C-inf", _edit("C = [1.0]", "C = [inf]"), r"C must be a positive finite number.*got \[inf\]"),
    Case("C-nan", _edit("C = [1.0]", "C = [nan]"), r"C must be a positive finite number.*got \[nan\]"),
    Case("C-empty", _edit("C = [1.0]", "C = []"), r"C must be a positive finite number"),
    Case("pixels-size-huge", _edit("size = 8", "size = 100000"),
         r"'size' parameter of Pixels must be an int in the range \[1, 4096\]. Got 100000"),
    Case("hog-size-huge", _edit('name = "pixels"\nsize = 8', 'name = "hog"\nsize = 100000'),
         r"'size' parameter of HOG must be an int in the range \[8, 4096\]. Got 100000"),
    Case("repeats-huge", _edit("repeats = 1", "repeats = 100000000000"),
         r"\[protocol\]: repeats must be an integer in \[1, 1000\], got 100000000000"),
    Case("folds-huge", _edit("repeats = 1", 'kind = "kfold"\nfolds = 100000'),
         r"folds must be an integer in \[2, 100\], got 100000"),
    Case("test-size-nan", _edit("repeats = 1", "repeats = 1\ntest_size = nan"),
         r"test_size must be a fraction in \(0, 1\) or a positive number of images, got nan"),
    Case("test-size-inf", _edit("repeats = 1", "repeats = 1\ntest_size = inf"), r"test_size must be"),
    Case("test-size-one", _edit("repeats = 1", "repeats = 1\ntest_size = 1.0"), r"test_size must be"),
    Case("test-size-too-many", _edit("repeats = 1", "repeats = 1\ntest_size = 5000"),
         r"dataset 'digits': cannot split 100 images as asked"),
    Case("kfold-too-few", _edit("repeats = 1", 'kind = "kfold"\nfolds = 50'),
         r"kfold with folds=50 needs at least 50 images per class"),
    Case("official-without-split", _edit("repeats = 1", 'kind = "official"'), r"has no official split"),
    Case("n-jobs-flag-zero", _cfg(BASE, "--n-jobs", "0"), r"--n-jobs: '0': give -1 \(all cores\)"),
    Case("n-jobs-flag-text", _cfg(BASE, "--n-jobs", "all"), r"--n-jobs: 'all': give -1"),
    Case("unknown-flag", _cfg(BASE, "--fast"), r"unrecognized arguments: --fast"),
    Case("binary-file", _raw(bytes(range(256)) * 4), r"exp\.toml: not UTF-8 text \(byte 0x80 at offset 128\)"),
    Case("nul-bytes", _raw(b"name = 't'\x00\n"), r"exp\.toml: contains NUL bytes"),
    Case("bom", _raw(b"\xef\xbb\xbf" + BASE.encode()), r"exp\.toml: starts with a UTF-8 byte-order mark \(BOM\)"),
    Case("utf16", _raw(BASE.encode("utf-16")), r"exp\.toml: is UTF-16 text"),
    Case("latin1", _raw(BASE.replace('"t"', '"caf\u00e9"').encode("latin-1")), r"not UTF-8 text"),
    Case("not-toml", _raw(b"[[datasets]\nname = 1"), r"exp\.toml: not valid TOML"),
    Case("config-is-directory", lambda tmp: ["run", str(tmp)], r"is a directory; give a \.toml file"),
    Case("config-missing", lambda tmp: ["run", str(tmp / "nope.toml")], r"nope\.toml' not found"),
    Case("name-with-slash", _edit('name = "t"', 'name = "a/b"'), r"name 'a/b' must be a plain folder name"),
    Case("datasets-not-array", _edit("[[datasets]]", "[datasets]"),
         r"datasets must be an array of tables, written \[\[datasets\]\]"),
    Case("no-extractors", _cfg(BASE.replace('[[extractors]]\nname = "pixels"\nsize = 8\n', "")),
         r"needs at least one \[\[extractors\]\] table"),
    Case("plugin-missing", _edit('name = "t"', 'name = "t"\nplugins = ["nope.py"]'), r"plugin file .*nope\.py' not found"),
    # -- damaged data (items 8-11) --
    Case("folder-missing", lambda tmp: _cfg(_folder_cfg(tmp / "no-such-dir"))(tmp), r"no-such-dir"),
    Case("folder-one-class", _with_folder(_one_class), r"at least 2 classes"),
    Case("folder-empty", _with_folder(_empty_root), r"data"),
    Case("folder-only-garbage", _with_folder(_only_garbage), r"data"),
    Case("folder-truncated-jpeg", _with_folder(_truncated), None, _check_one_skip),
    Case("folder-dead-class", _with_folder(_dead_class), None, _check_dead_class),
    Case("folder-symlink-to-root", _with_folder(_symlink_to_root), None, _check_no_duplicates),
    # -- hostile plugins (items 13-14) --
    Case("plugin-exits-on-import", _with_plugin("import sys\nsys.exit(4)\n",
                                                 BASE.replace('name = "t"', 'name = "t"\nplugins = ["hostile.py"]')),
         r"plugin file .*hostile\.py' failed to import: it called sys\.exit\(4\) on import"),
    Case("plugin-raises-on-import", _with_plugin("raise RuntimeError('half-installed')\n",
                                                  BASE.replace('name = "t"', 'name = "t"\nplugins = ["hostile.py"]')),
         r"failed to import: RuntimeError: half-installed"),
    Case("loader-raises-oserror", _with_plugin(OSERROR_LOADER, BASE.replace('name = "t"', 'name = "t"\nplugins = ["hostile.py"]')
                                                .replace('name = "digits"\nlimit_per_class = 10', 'name = "test-broken-loader"')),
         r"dataset 'test-broken-loader' \(test-broken-loader\) cannot be loaded: OSError: .*Input/output error"),
    Case("extractor-returns-nan", _with_plugin(NAN_PLUGIN, TWO_EXTRACTORS.format(name="test-nan-means").replace(
        'name = "t"', 'name = "t"\nplugins = ["hostile.py"]')), None,
         _check_failed_cell("test-nan-means", r"extractor 'test-nan-means' returned non-finite features \(NaN or inf\)")),
    Case("extractor-calls-sys-exit", _with_plugin(EXIT_PLUGIN, TWO_EXTRACTORS.format(name="test-exits").replace(
        'name = "t"', 'name = "t"\nplugins = ["hostile.py"]')), None, _check_failed_cell("test-exits", r"SystemExit: 3")),
    # -- output folders (item 16) --
    Case("out-is-a-file", _with_out(_out_is_file), r"output path .*out' is a file, not a folder"),
    Case("out-cells-is-a-file", _with_out(_cells_is_file), r"output path .*cells' is a file, not a folder"),
    Case("out-results-is-a-dir", _with_out(_results_is_dir), r"results\.csv' is a folder where the run writes a file"),
    Case("out-not-creatable", _with_out(_out_not_creatable), r"cannot create output folder '/proc/featbench"),
    Case("out-under-a-file", _with_out(_out_under_a_file), r"plain' is a file, not a folder|cannot create output folder"),
]


@pytest.fixture(autouse=True)
def _forget_test_plugins():
    from featbench.registry import DATASETS, EXTRACTORS

    yield
    for name in ("test-nan-means", "test-exits"):
        EXTRACTORS.unregister(name)
    DATASETS.unregister("test-broken-loader")


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2_or_a_counted_skip(case, tmp_path, capsys):
    argv = case.setup(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "internal error" not in err, err
    if case.expect is None:
        assert code == 0, err
        case.check(tmp_path)
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("featbench: error: "), lines[0]
    assert re.search(case.expect, lines[0]), lines[0]
    cells = tmp_path / "out" / "cells"
    assert not (cells.is_dir() and any(cells.iterdir())), "nothing may be computed after a refused input"


@pytest.mark.parametrize("case", [c for c in CASES if c.expect is not None], ids=lambda c: c.id)
def test_debug_shows_the_traceback(case, tmp_path, capsys):
    argv = case.setup(tmp_path)
    code = main(["--debug", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" in err or argv[-2:] in (["--n-jobs", "0"], ["--n-jobs", "all"]) or "--fast" in argv


def test_features_that_cannot_fit_in_memory_are_refused_before_running(tmp_path, capsys, monkeypatch):
    from featbench import runner

    monkeypatch.setattr(runner, "available_memory_bytes", lambda: 64 * 2**20)  # a 64 MiB machine
    (tmp_path / "exp.toml").write_text(BASE.replace("size = 8", 'size = 512\ncolor = "rgb"'))
    assert main(["run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(r"featbench: error: .*exp\.toml \[\[extractors\]\] #1 \(pixels\(color=rgb, size=512\)\): "
                        r"786,432 features per image × 100 images of 'digits' need 0\.3 GiB as float32, more than "
                        r"half of this machine's 0\.1 GiB; lower its size parameters", line), line
    assert not any((tmp_path / "out" / "cells").iterdir())


# -- the feature cache and the report files (items 15, 17, 18, 19) -------------------------------
def test_unusable_cache_warns_once_and_the_run_goes_on(tmp_path, capsys, caplog):
    for where in ("/proc/featbench-no-cache", str(tmp_path / "a-file")):
        caplog.clear()
        (tmp_path / "a-file").write_text("x")
        text = BASE.replace("[protocol]", f'[run]\ncache_dir = "{where}"\n[protocol]')
        (tmp_path / "exp.toml").write_text(text)
        out = tmp_path / f"out-{abs(hash(where))}"
        assert main(["run", str(tmp_path / "exp.toml"), "--out", str(out)]) == 0
        warned = [r.getMessage() for r in caplog.records if "running without a feature cache" in r.getMessage()]
        assert len(warned) == 1 and where in warned[0], warned
        assert "Traceback" not in capsys.readouterr().err
        assert pd.read_csv(out / "results.csv")["status"].tolist() == ["ok"]
        assert "Ran without a feature cache" in (out / "report.md").read_text()


def test_cache_that_fails_while_writing_is_disabled_once(tmp_path, monkeypatch, caplog):
    from featbench.cache import FeatureCache

    cache = FeatureCache(tmp_path / "c")

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("featbench.cache.atomic_write", full_disk)
    cache.save("k1", np.zeros((2, 2), np.float32), {})
    cache.save("k2", np.zeros((2, 2), np.float32), {})
    assert cache.root is None and "No space left on device" in cache.problem
    assert sum("running without a feature cache" in r.getMessage() for r in caplog.records) == 1


def _finished_run(tmp_path: Path) -> Path:
    text = BASE.replace('C = [1.0]', 'C = [1.0]\n[[classifiers]]\nname = "linear-svm"\nC = [0.1]')
    (tmp_path / "exp.toml").write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "exp.toml"), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("damage, expect", [
    (lambda out: (out / "run.json").write_text("{garbage"), r"run\.json is not readable JSON"),
    (lambda out: (out / "run.json").write_text("[1, 2]"), r"run\.json is not a featbench run\.json"),
    (lambda out: (out / "run.json").write_text('{"cell_ids": []}'), r"has none of the 0 cells"),
    (lambda out: (out / "run.json").write_text('{"cell_ids": 3}'), r"is not a featbench run\.json"),
    (lambda out: (out / "run.json").unlink(), r"run\.json not found"),
])
def test_report_on_a_damaged_run_json_is_one_line(tmp_path, capsys, damage, expect):
    out = _finished_run(tmp_path)
    damage(out)
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(expect, lines[0]), err


@pytest.mark.parametrize("damage", [
    lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]),  # truncated, as a kill could leave it
    lambda p: p.write_text("[1, 2, 3]"),  # a JSON list
    lambda p: p.write_bytes(os.urandom(100)),  # garbage
    lambda p: p.write_text('{"no": "cell"}'),  # a JSON object that is no record
])
def test_report_skips_and_counts_bad_cells_and_run_recomputes_them(tmp_path, capsys, damage):
    out = _finished_run(tmp_path)
    before = pd.read_csv(out / "results.csv")
    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == 2
    damage(cells[0])
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"from 1 cells (1 cell(s) missing or unreadable, left out: {cells[0].name};" in said, said
    assert len(pd.read_csv(out / "results.csv")) == 1
    report = (out / "report.md").read_text()
    assert "1 cell(s) of this run were missing or unreadable" in report
    assert f"Left out: `{cells[0].name}`." in report  # named, so the user knows which row is short
    # ``run`` recomputes the damaged cell and puts its row back where it was (item 19)
    assert main(["run", str(tmp_path / "exp.toml"), "--out", str(out)]) == 0
    after = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(before.drop(columns=TIMING_COLUMNS), after.drop(columns=TIMING_COLUMNS))


def test_recomputed_cell_keeps_its_row(tmp_path):
    """The first classifier's cell is recomputed, the second's reused: rows stay in the experiment's order."""
    out = _finished_run(tmp_path)
    before = (out / "results.csv").read_text().splitlines()
    first = next(p for p in (out / "cells").glob("*.json") if "__logreg__" in p.name)
    first.write_text("{")
    assert main(["run", str(tmp_path / "exp.toml"), "--out", str(out)]) == 0
    after = (out / "results.csv").read_text().splitlines()
    col = before[0].split(",").index("classifier")
    assert [ln.split(",")[col] for ln in after] == [ln.split(",")[col] for ln in before] == ["classifier", "logreg",
                                                                                              "linear-svm"]


def test_files_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        out = _finished_run(tmp_path)
        cache = Path(os.environ["FEATBENCH_CACHE"])
        files = [out / n for n in ("results.csv", "summary.csv", "report.md", "run.json")]
        files += list((out / "cells").glob("*.json")) + list((out / "plots").glob("*.png")) + list(cache.glob("*"))
        assert len(files) >= 8
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, (f, oct(f.stat().st_mode))
        os.umask(0o077)
        (out / "report.md").unlink()
        assert main(["report", str(out)]) == 0
        assert stat.S_IMODE((out / "report.md").stat().st_mode) == 0o600
    finally:
        os.umask(old)
