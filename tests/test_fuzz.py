"""Fuzzing (issue 8): random TOML values at every key of the experiment schema, random bytes at the
image loader, random arrays at ``as_uint8_image``: only featbench's own errors come out.

A seeded NumPy generator drives every test (``hypothesis`` is not a dependency). The seed is printed
(``pytest -s`` or on failure); set ``FEATBENCH_FUZZ_SEED`` to replay or to try another one. Each test
runs a fixed number of cases, stops early when its wall-time budget is spent, but always runs a
minimum number of cases: what is asserted does not depend on the machine's speed, only how many
cases run.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import math
import os
import time
import traceback

import numpy as np
import pytest
from PIL import Image

from featbench.cli import main
from featbench.datasets import decode_image, load_dataset
from featbench.datasets.io import IMAGE_EXTENSIONS
from featbench.errors import DatasetError, ImageError
from featbench.images import as_uint8_image

SEED = int(os.environ.get("FEATBENCH_FUZZ_SEED", "1"))


def _rng(salt: int) -> np.random.Generator:
    print(f"featbench fuzz seed: FEATBENCH_FUZZ_SEED={SEED}")
    return np.random.default_rng([SEED, salt])


class _Budget:
    """At most ``cases`` cases; after ``minimum`` of them, none started past ``seconds``."""

    def __init__(self, cases: int, minimum: int, seconds: float) -> None:
        self.cases, self.minimum, self.end = cases, minimum, time.monotonic() + seconds

    def __iter__(self):
        for i in range(self.cases):
            if i >= self.minimum and time.monotonic() > self.end:
                return
            yield i


# -- a tiny TOML writer: the value types tomllib returns ------------------------------------------------------


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):  # datetime before date: it is a date too
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_str(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def toml_document(data: dict) -> str:
    """Every key at the top level, tables inline: what tomllib reads back is ``data``."""
    return "".join(f"{_toml_str(k)} = {toml_value(v)}\n" for k, v in data.items())


# -- random TOML values ------------------------------------------------------------------------------------------

_INTS = [0, -1, 1, 2, 3, 10**18, -(10**18), 2**63 - 1, -(2**63), 2**32, 2**32 - 1, 4097]
_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 1e-308, 5e-324, -0.5, -3.0, 0.25, 0.5,
           0.999999, 1.0, 1.5, 2.0]
_PATHS = ["/nonexistent/featbench/fuzz", "../x.py", "sub/dir/file.py", "C:\\data\\x.toml", ".", "/",
          "./rel/path.png", "$FEATBENCH_DATA/none"]
_WORDS = ["pixels", "hog", "lbp", "digits", "logreg", "linear-svm", "holdout", "kfold", "official", "loky",
          "threading", "dask", "standard", "none", "gray", "rgb", "uniform", "ror", "default", "nri_uniform"]


def random_string(rng: np.random.Generator) -> str:
    k = rng.integers(9)
    if k == 0:
        return ""
    if k == 1:
        return "".join(chr(int(c)) for c in rng.integers(0x20, 0x2FFF, rng.integers(1, 12)))
    if k == 2:
        return "x" * int(rng.integers(1000, 20000))
    if k == 3:
        return "line1\nline2\r\n\tthird\x00?"[: int(rng.integers(1, 21))]
    if k == 4:
        return "$UNSET_FEATBENCH_FUZZ_VAR" + ("/x" if rng.random() < 0.5 else "")
    if k == 5:
        return str(rng.choice(_PATHS))
    if k == 6:
        return str(rng.choice(_WORDS))
    if k == 7:
        return "é中😀\u202e\ufeff"[: int(rng.integers(1, 6))]
    return " " + str(rng.choice(_WORDS)).upper() + " "


def random_value(rng: np.random.Generator, depth: int = 0):
    kind = rng.integers(9 if depth < 2 else 6)
    if kind == 0:
        return bool(rng.random() < 0.5)
    if kind == 1:
        return int(rng.choice(_INTS)) if rng.random() < 0.6 else int(rng.integers(-3, 13))
    if kind == 2:
        return float(rng.choice(_FLOATS)) if rng.random() < 0.7 else float(rng.normal(0, 100))
    if kind in (3, 4):
        return random_string(rng)
    if kind == 5:
        return [
            dt.datetime(2024, 2, 29, 12, 30, 5, 123000, tzinfo=dt.timezone.utc),
            dt.datetime(1979, 5, 27, 7, 32),
            dt.date(1, 1, 1),
            dt.time(23, 59, 59),
        ][int(rng.integers(4))]
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    if kind == 7:
        return [[random_value(rng, depth + 2)] for _ in range(int(rng.integers(1, 3)))]
    return {random_string(rng) or "k": random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 3)))}


# -- the experiment schema -----------------------------------------------------------------------------------------

BASE = {
    "name": "fuzz",
    "protocol": {"repeats": 1},
    "datasets": [{"name": "digits", "limit_per_class": 10}],
    "extractors": [{"name": "pixels", "size": 8}],
    "classifiers": [{"name": "logreg", "C": [1.0]}],
}
BASE_TEXT = """\
name = "fuzz"
description = "fuzz base"

[run]
n_jobs = 1
backend = "loky"
inner_folds = 3
seed = 0

[protocol]
kind = "holdout"
repeats = 1
test_size = 0.25

[[datasets]]
name = "digits"
label = "d"
limit_per_class = 10
seed = 0

[[extractors]]
name = "pixels"
size = 8

[[classifiers]]
name = "logreg"
C = [1.0]
scale = "standard"
"""
#: A cheap base table for each extractor whose parameters are fuzzed.
EXTRACTOR_BASES = {"pixels": {"name": "pixels", "size": 8}, "hog": {"name": "hog", "size": 16},
                   "lbp": {"name": "lbp"}}
EXTRACTOR_KEYS = {
    "pixels": ["size", "color"],
    "hog": ["size", "cell_size", "block_size", "block_stride", "bins", "signed", "deskew", "sqrt"],
    "lbp": ["P", "R", "method", "grid", "size"],
}
RUN_KEYS = ["n_jobs", "backend", "scheduler", "cache_dir", "inner_folds", "seed"]
PROTOCOL_KEYS = ["kind", "repeats", "test_size", "train_size", "folds", "seed"]

#: Plausible values per key, drawn a third of the time, so that many cases pass validation and run:
#: random values alone are nearly always refused at once.
PLAUSIBLE = {
    "n_jobs": [1, 2, -1, -2], "backend": ["loky", "threading", "dask"], "scheduler": ["tcp://127.0.0.1:1"],
    "cache_dir": ["cachedir", "sub/cache", ""], "inner_folds": [2, 3, 5, 100], "seed": [0, 1, 2**32 - 1, 2**32],
    "kind": ["holdout", "kfold", "official"], "repeats": [1, 2, 1000, 1001], "test_size": [0.2, 0.5, 5, 20, 0.99, 1999],
    "train_size": [0.3, 0.5, 10, 0.01, 0.8, 2000], "folds": [2, 3, 10, 11], "label": ["a", "é", "fuzz"],
    "limit_per_class": [1, 2, 3, 5, 20, 200], "name": ["digits", "faces", "pixels", "hog", "lbp", "logreg", "linear-svm",
                                                      "rbf-svm"],
    "C": [[0.1, 1], [1e-12], [1e12], 5, [1, 1]], "scale": ["none", "standard"], "size": [1, 2, 3, 8, 16, 32],
    "color": ["gray", "rgb"], "cell_size": [2, 4, 8, 16, 64], "block_size": [2, 4, 16, 32], "block_stride": [1, 4, 8],
    "bins": [2, 9, 180], "signed": [True, False], "deskew": [True, False], "sqrt": [True, False],
    "P": [1, 8, [8, 16], []], "R": [0.5, 1, [1, 2], [1]], "method": ["uniform", "nri_uniform", "ror", "default"],
    "grid": [1, 2, 4, 64], "protocol": [{"kind": "kfold", "folds": 2}, {"test_size": 0.5}],
    "description": ["x"], "plugins": [[], ["math"]],
}

SCHEMA_PATHS: list[tuple] = (
    [(k,) for k in ("name", "description", "plugins", "run", "protocol", "datasets", "extractors", "classifiers")]
    + [("run", k) for k in RUN_KEYS]
    + [("protocol", k) for k in PROTOCOL_KEYS]
    + [("datasets", 0, k) for k in ("name", "label", "limit_per_class", "seed", "protocol")]
    + [("datasets", 0, "protocol", k) for k in PROTOCOL_KEYS]
    + [("extractors", 0, k) for k in ("name", "label")]
    + [("extractors", 0, k, ext) for ext, keys in EXTRACTOR_KEYS.items() for k in keys]
    + [("classifiers", 0, k) for k in ("name", "label", "C", "scale")]
    + [("datasets", 0), ("extractors", 0), ("classifiers", 0)]
)


def _mutate(data: dict, path: tuple, value) -> None:
    if path[0] == "extractors" and len(path) == 4:  # ("extractors", 0, key, extractor): that extractor's table
        if not (isinstance(data.get("extractors"), list) and data["extractors"]):
            data["extractors"] = [{}]
        data["extractors"][0] = dict(EXTRACTOR_BASES[path[3]])
        path = path[:3]
    node, base = data, BASE
    for p, nxt in zip(path[:-1], path[1:]):
        wanted = list if isinstance(nxt, int) else dict
        base = base[p] if isinstance(base, (dict, list)) and (p in base if isinstance(base, dict) else p < len(base)) \
            else None
        have = node[p] if (isinstance(node, dict) and p in node) or isinstance(node, list) else None
        if not isinstance(have, wanted) or (wanted is list and len(have) <= nxt):
            # an earlier change of this case replaced the container: put the base's back
            node[p] = copy.deepcopy(base) if isinstance(base, wanted) else ([{}] if wanted is list else {})
        node = node[p]
    node[path[-1]] = value


def _keep_cheap(data: dict) -> None:
    """Valid but heavy values would only make the run slow (n_jobs = 4000 starts 4000 workers): cap them."""
    run = data.get("run")
    if isinstance(run, dict) and isinstance(run.get("n_jobs"), int) and not isinstance(run["n_jobs"], bool):
        if run["n_jobs"] > 2 and run["n_jobs"] <= 2**15:
            run["n_jobs"] = 2
        if -(2**15) <= run["n_jobs"] < -2:
            run["n_jobs"] = -2


def _config_cases(rng: np.random.Generator, n: int):
    """(description, TOML text) pairs: one or two schema keys set to random values, or a damaged file."""
    raw = BASE_TEXT.encode()
    for i in range(n):
        if i % 10 == 9:  # whole-file damage
            k = i // 10 % 3
            if k == 0:
                blob = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
                yield f"random bytes {blob!r}", blob
            elif k == 1:
                cut = int(rng.integers(0, len(raw)))
                yield f"base file truncated at byte {cut}", raw[:cut]
            else:
                blob = bytearray(raw)
                where = rng.integers(0, len(blob), int(rng.integers(1, 6)))
                for w in where:
                    blob[w] = int(rng.integers(0, 256))
                yield f"base file with bytes changed at {sorted(where.tolist())}", bytes(blob)
            continue
        data = copy.deepcopy(BASE)
        changes = []
        for _ in range(1 if rng.random() < 0.7 else 2):
            path = SCHEMA_PATHS[int(rng.integers(len(SCHEMA_PATHS)))]
            key = path[2] if path[0] == "extractors" and len(path) == 4 else path[-1]
            if key in PLAUSIBLE and rng.random() < 0.35:
                pool = PLAUSIBLE[key]
                value = copy.deepcopy(pool[int(rng.integers(len(pool)))])
            else:
                value = random_value(rng)
            _mutate(data, path, value)
            changes.append(f"{path} = {value!r}"[:300])
        _keep_cheap(data)
        yield "; ".join(changes), toml_document(data).encode("utf-8")


def test_toml_writer_round_trips():
    import tomllib

    rng = _rng(0)
    for _ in range(300):
        data = {"k": random_value(rng)}
        back = tomllib.loads(toml_document(data))
        assert toml_document(back) == toml_document(data)
    assert tomllib.loads(toml_document(BASE)) == BASE


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")  # random unicode labels in plots
def test_config_fuzz_through_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNSET_FEATBENCH_FUZZ_VAR", raising=False)
    monkeypatch.chdir(tmp_path)  # relative paths drawn at random (cache_dir, plugins) stay in tmp_path
    rng = _rng(1)
    budget = _Budget(cases=150, minimum=30, seconds=float(os.environ.get("FEATBENCH_FUZZ_SECONDS", 75)))
    cases = _config_cases(rng, budget.cases)
    failures, counts = [], {0: 0, 2: 0}
    for i in budget:
        what, text = next(cases)
        cfg = tmp_path / f"case{i}.toml"
        cfg.write_bytes(text)
        out = tmp_path / f"out{i}"
        try:
            code = main(["run", str(cfg), "--out", str(out), "--no-progress"])
        except BaseException as exc:  # noqa: B036  (nothing may escape main, not even SystemExit)
            code = f"uncaught {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        cap = capsys.readouterr()
        problem = None
        if code == 0:
            if not (out / "results.csv").is_file():
                problem = "exit 0 but no results.csv"
        elif code == 2:
            lines = [ln for ln in cap.err.splitlines() if ln.strip()]
            if len(lines) != 1 or not lines[0].startswith("featbench: error: ") or "Traceback" in cap.err:
                problem = f"exit 2, stderr not one 'featbench: error: ' line: {cap.err[-2000:]!r}"
        else:
            problem = f"exit {code!s}: {cap.err[-2000:]}"
        if problem is not None:
            failures.append(f"case {i} ({what}); file {cfg}:\n{problem}")
        else:
            counts[code] += 1
    print(f"config fuzz: {counts[0]} runs ok, {counts[2]} user errors, {len(failures)} failures")
    assert not failures, f"FEATBENCH_FUZZ_SEED={SEED}\n" + "\n\n".join(failures)


# -- image files -----------------------------------------------------------------------------------------------------

#: (format, extension, modes it may be saved in).
_FORMATS = [
    ("PNG", "png", ["L", "RGB", "RGBA", "P", "I;16", "1", "LA"]),
    ("JPEG", "jpg", ["L", "RGB", "CMYK"]),
    ("BMP", "bmp", ["L", "RGB", "RGBA", "P", "1"]),
    ("TIFF", "tif", ["L", "RGB", "RGBA", "P", "I;16", "F", "1", "CMYK"]),
    ("GIF", "gif", ["L", "P", "1"]),
    ("WEBP", "webp", ["RGB", "RGBA"]),
]


def _pil_image(rng: np.random.Generator, mode: str) -> Image.Image:
    h, w = (int(x) for x in rng.integers(1, 40, 2))
    if mode == "F":
        high = 1.0 if rng.random() < 0.7 else 300.0
        return Image.fromarray(rng.uniform(0, high, (h, w)).astype(np.float32), mode="F")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    bands = {"L": 1, "1": 1, "P": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    arr = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
    if bands == 1:
        im = Image.fromarray(arr[:, :, 0], mode="L")
        return im.convert(mode) if mode != "L" else im
    return Image.fromarray(arr, mode=mode)


def _good_image_bytes(rng: np.random.Generator) -> tuple[str, str, bytes]:
    while True:
        fmt, ext, modes = _FORMATS[int(rng.integers(len(_FORMATS)))]
        mode = modes[int(rng.integers(len(modes)))]
        buf = io.BytesIO()
        try:
            _pil_image(rng, mode).save(buf, format=fmt)
        except (OSError, ValueError, KeyError):  # this Pillow cannot write that mode in that format
            continue
        return f"{fmt} {mode}", ext, buf.getvalue()


def _damaged_file(rng: np.random.Generator) -> tuple[str, str, bytes]:
    k = rng.integers(6)
    if k == 0:
        blob = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        return "random bytes", str(rng.choice(IMAGE_EXTENSIONS)), blob
    what, ext, good = _good_image_bytes(rng)
    if k in (1, 2):
        cut = int(rng.integers(0, len(good)))
        return f"{what} truncated at {cut}/{len(good)}", ext, good[:cut]
    if k in (3, 4):
        blob = bytearray(good)
        where = sorted(rng.integers(0, len(blob), int(rng.integers(1, 9))).tolist())
        for w in where:
            blob[w] = int(rng.integers(0, 256))
        return f"{what} with bytes changed at {where}", ext, bytes(blob)
    return f"{what} intact", ext, good


def _check_decoded(arr) -> str | None:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
        return f"returned {type(arr).__name__} {getattr(arr, 'dtype', '')}"
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)) or arr.shape[0] == 0 or arr.shape[1] == 0:
        return f"returned shape {arr.shape}"
    return None


#: Pillow warns about the damaged files it reads (corrupt EXIF, truncated TIFF tags): expected here.
_PIL_WARNINGS = pytest.mark.filterwarnings("ignore::UserWarning:PIL", "ignore::RuntimeWarning:PIL")


@_PIL_WARNINGS
def test_decode_image_fuzz(tmp_path):
    rng = _rng(2)
    failures, decoded, refused = [], 0, 0
    for i in _Budget(cases=300, minimum=60, seconds=20):
        what, ext, blob = _damaged_file(rng)
        path = tmp_path / f"f{i}.{ext}"
        path.write_bytes(blob)
        try:
            problem = _check_decoded(decode_image(path))
            decoded += problem is None
        except DatasetError:
            problem = None
            refused += 1
        except BaseException as exc:  # noqa: B036
            problem = f"raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        if problem is not None:
            failures.append(f"decode_image('{path}') [{what}]: {problem}")
    print(f"decode fuzz: {decoded} decoded, {refused} refused, {len(failures)} failures")
    assert not failures, f"FEATBENCH_FUZZ_SEED={SEED}\n" + "\n\n".join(failures)


@_PIL_WARNINGS
def test_folder_loader_fuzz(tmp_path):
    rng = _rng(3)
    root = tmp_path / "tree"
    n_files = 0
    for cls in ("cats", "dogs"):
        (root / cls / "deeper").mkdir(parents=True)
        for j in range(3):  # good images: the load always succeeds
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / cls / f"good{j}.png")
            n_files += 1
    start = time.monotonic()
    for i in range(80):
        if i >= 20 and time.monotonic() - start > 15:
            break
        what, ext, blob = _damaged_file(rng)
        if ext not in IMAGE_EXTENSIONS:
            ext = "png"  # a GIF under another extension: the loader reads what the bytes are
        folder = root / ("cats", "dogs")[i % 2] / ("deeper" if rng.random() < 0.3 else "")
        (folder / f"x{i}.{ext}").write_bytes(blob)
        n_files += 1
    images = load_dataset("folder", root=str(root))
    assert len(images) + len(images.skipped) == n_files, images.skipped
    assert sorted(images.class_names) == ["cats", "dogs"]
    for k in range(len(images)):
        assert _check_decoded(images[k]) is None, k


# -- arrays --------------------------------------------------------------------------------------------------------------

_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16", "float32",
           "float64", "longdouble", "bool", "complex64", "complex128", "object", "U3", "S2", "datetime64[s]",
           "timedelta64[ms]", [("a", "u1"), ("b", "f4")]]


def _random_array(rng: np.random.Generator) -> np.ndarray:
    ndim = int(rng.choice([0, 1, 2, 2, 3, 3, 3, 4, 5]))
    shape = tuple(int(rng.choice([0, 1, 2, 3, 4, 5, 7])) for _ in range(ndim))
    if ndim == 3 and rng.random() < 0.6:
        shape = shape[:2] + (int(rng.integers(1, 5)),)
    dtype = np.dtype(_DTYPES[int(rng.integers(len(_DTYPES)))])
    size = int(np.prod(shape))
    if dtype.kind == "f":
        k = rng.integers(4)
        if k == 0:
            vals = rng.random(size)
        elif k == 1:
            vals = rng.normal(0, 2, size)
        elif k == 2:
            vals = rng.choice([np.nan, np.inf, -np.inf, 0.0, 1.0, 1e300, -1e-300], size)
        else:
            vals = rng.choice([0.0, 1.0, 0.5, 1.0000001, -0.0], size)
        with np.errstate(over="ignore"):
            return vals.astype(dtype).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        pool = [v for v in (int(info.min), int(info.max), 0, 1, -1, 255, 256, 65535, 65536) if info.min <= v <= info.max]
        return np.array([pool[int(j)] for j in rng.integers(0, len(pool), size)], dtype=dtype).reshape(shape)
    if dtype.kind == "b":
        return (rng.random(size) < 0.5).reshape(shape)
    if dtype.kind == "c":
        return (rng.random(size) + 1j * rng.random(size)).astype(dtype).reshape(shape)
    if dtype.kind == "O":
        pool = [1, 0.5, None, "a", [1, 2], np.uint8(3)]
        arr = np.empty(size, dtype=object)
        for j in range(size):
            arr[j] = pool[int(rng.integers(len(pool)))]
        return arr.reshape(shape)
    return np.zeros(shape, dtype=dtype)


def test_as_uint8_image_fuzz():
    rng = _rng(4)
    failures, ok, refused = [], 0, 0
    for i in _Budget(cases=3000, minimum=500, seconds=10):
        arr = _random_array(rng)
        if rng.random() < 0.1 and arr.ndim >= 2:
            arr = arr[::-1, ::2]  # non-contiguous views
        try:
            problem = _check_decoded(as_uint8_image(arr))
            ok += problem is None
        except ImageError:
            problem = None
            refused += 1
        except BaseException as exc:  # noqa: B036
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem is not None:
            failures.append(f"case {i}: as_uint8_image(array of dtype {arr.dtype} shape {arr.shape}: "
                            f"{np.array2string(arr.ravel()[:8], threshold=8)}...): {problem}")
    print(f"as_uint8_image fuzz: {ok} converted, {refused} refused, {len(failures)} failures")
    assert not failures, f"FEATBENCH_FUZZ_SEED={SEED}\n" + "\n".join(failures[:20])


def test_cli_error_is_one_line_with_damaged_images(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    bad_tiff = b"II*\x00\x08\x00\x00\x00\x05\x00"  # a TIFF header whose first directory is cut off
    for cls, name, blob in (("a", "x.png", bytes(range(256)) * 2), ("a", "y.tif", bad_tiff), ("b", "z.tif", bad_tiff)):
        (tmp_path / "tree" / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / cls / name).write_bytes(blob)
    cfg = tmp_path / "exp.toml"
    cfg.write_text(toml_document({"datasets": [{"name": "folder", "root": str(tmp_path / "tree")}],
                                  "extractors": [{"name": "pixels"}], "classifiers": [{"name": "logreg"}]}))
    code = main(["run", str(cfg), "--out", str(tmp_path / "out")])
    err = capfd.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("featbench: error: "), err
