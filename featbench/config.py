"""Experiment files (TOML): datasets × extractors × classifiers, validated before anything runs.

Example
-------
.. code-block:: toml

    name = "mine"                 # results go to results/mine/
    plugins = ["my_extractor.py"] # .py files (relative to this file) or module names

    [run]
    n_jobs = -1                   # extraction workers (-1: all cores)
    backend = "loky"              # "loky", "threading" or "dask"

    [protocol]                    # default for every dataset
    kind = "holdout"              # "official", "holdout" or "kfold"
    repeats = 3
    test_size = 0.25

    [[datasets]]
    name = "digits"
    limit_per_class = 100         # any other key is a parameter of the loader

    [[extractors]]
    name = "hog"
    size = 32                     # any other key is a parameter of the extractor

    [[extractors]]                # sweep: one extractor row per value of the named key(s),
    name = "keras-app"            # labelled "mobilenet[layer=conv_pw_3_relu]", ...
    label = "mobilenet"
    layer = ["conv_pw_3_relu", "conv_pw_13_relu"]
    sweep = "layer"               # or a list of keys: their product

    [[classifiers]]
    name = "linear-svm"
    C = [0.01, 0.1, 1]
    scale = "standard"            # or "none": features as they are (default "standard")
"""

from __future__ import annotations

import codecs
import difflib
import fnmatch
import inspect
import json
import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sklearn.utils._param_validation import InvalidParameterError

from featbench.errors import ConfigError, FeatbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from featbench.classifiers import check_scale
from featbench.evaluation.splits import KINDS, Protocol
from featbench.registry import CLASSIFIERS, DATASETS, TASKS, create_extractor, load_plugin

__all__ = [
    "Experiment",
    "RunSettings",
    "DatasetConfig",
    "ExtractorConfig",
    "ClassifierConfig",
    "TaskConfig",
    "load_experiment",
    "parse_experiment",
]

BACKENDS = ("loky", "threading", "dask")
#: Seeds are handed to NumPy and scikit-learn, which accept 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
#: Bounds that keep a typo (``repeats = 100000000000``) from hanging a run: far above any real protocol.
MAX_REPEATS = 1000
MAX_FOLDS = 100
#: Keys every dataset loader takes (README: "every loader takes limit_per_class and seed").
COMMON_DATASET_KEYS = ("limit_per_class", "seed")


@dataclass(frozen=True)
class RunSettings:
    n_jobs: int = -1
    backend: str = "loky"
    scheduler: str | None = None
    cache_dir: str | None = None
    inner_folds: int = 3
    seed: int = 0


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    label: str
    params: dict
    protocol: Protocol


@dataclass(frozen=True)
class ExtractorConfig:
    name: str
    label: str
    params: dict


@dataclass(frozen=True)
class ClassifierConfig:
    name: str
    label: str
    grid: tuple[float, ...]
    scale: str = "standard"
    param: str = "C"

    @property
    def C(self) -> tuple[float, ...]:  # noqa: N802  (the grid's name for C classifiers)
        return self.grid


@dataclass(frozen=True)
class TaskConfig:
    name: str
    label: str
    params: dict
    #: Labels (or fnmatch patterns) of the extractors the task is asked of; ``None``: every extractor.
    extractors: tuple[str, ...] | None = None

    def applies_to(self, extractor_label: str) -> bool:
        """Whether this task is asked of the extractor row labelled ``extractor_label``."""
        return self.extractors is None or any(fnmatch.fnmatchcase(extractor_label, p) for p in self.extractors)


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str
    description: str = ""
    plugins: tuple[str, ...] = ()
    run: RunSettings = field(default_factory=RunSettings)
    protocol: Protocol = field(default_factory=Protocol)
    datasets: tuple[DatasetConfig, ...] = ()
    extractors: tuple[ExtractorConfig, ...] = ()
    classifiers: tuple[ClassifierConfig, ...] = ()
    tasks: tuple[TaskConfig, ...] = ()
    raw: dict = field(default_factory=dict, compare=False)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; user plugins named in it are imported."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"experiment file {str(path)!r} is a directory; give a .toml file, "
                          "e.g. experiments/default.toml")
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"experiment file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    data = _parse_toml(raw, str(path))
    return parse_experiment(data, source=str(path), base=path.parent, default_name=path.stem)


def _parse_toml(raw: bytes, where: str) -> dict:
    if raw.startswith(codecs.BOM_UTF8):
        raise ConfigError(f"{where}: starts with a UTF-8 byte-order mark (BOM); TOML files must be UTF-8 "
                          "without a BOM: save it again as plain UTF-8")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"{where}: is UTF-16 text; TOML files must be UTF-8: save it again as UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "an experiment file is TOML, written as UTF-8") from exc
    if "\x00" in text:
        raise ConfigError(f"{where}: contains NUL bytes (a binary file?); an experiment file is TOML text")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {' '.join(str(exc).split())}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{where}: not valid TOML: nested too deeply") from exc


def parse_experiment(
    data: dict, source: str = "<config>", base: Path | None = None, default_name: str = "run"
) -> Experiment:
    """Validate a parsed experiment dictionary; see the module docstring for its keys."""
    where = source
    _check_keys(data, {"name", "description", "plugins", "run", "protocol", "datasets", "extractors",
                       "classifiers", "tasks"}, where, "top level")
    name = _typed(data, "name", str, default_name, where)
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise ConfigError(f"{where}: name {name!r} must be a plain folder name (no '/', not starting with '.')")
    plugins = _typed(data, "plugins", list, [], where)
    for p in plugins:
        if not isinstance(p, str):
            raise ConfigError(f"{where}: plugins must be a list of strings (paths or module names), got {p!r}")
        load_plugin(p, base)

    run = _dataclass_from(RunSettings, _typed(data, "run", dict, {}, where), f"{where} [run]")
    if run.backend not in BACKENDS:
        raise ConfigError(f"{where} [run]: backend {run.backend!r} is not one of {', '.join(BACKENDS)}")
    if run.n_jobs == 0:
        raise ConfigError(f"{where} [run]: n_jobs must be -1 (all cores) or a positive number, got 0")
    if run.n_jobs < -(2**15) or run.n_jobs > 2**15:
        raise ConfigError(f"{where} [run]: n_jobs must be -1 (all cores) or a positive number, got {run.n_jobs}")
    if not 2 <= run.inner_folds <= MAX_FOLDS:
        raise ConfigError(f"{where} [run]: inner_folds must be an integer in [2, {MAX_FOLDS}], got {run.inner_folds}")
    if not 0 <= run.seed <= MAX_SEED:
        raise ConfigError(f"{where} [run]: seed must be an integer in [0, 2**32 - 1], got {run.seed}")
    if run.scheduler is not None and run.backend != "dask":
        raise ConfigError(f"{where} [run]: scheduler is only used with backend = \"dask\", "
                          f"got backend {run.backend!r}")
    protocol = _protocol(_typed(data, "protocol", dict, {}, where), Protocol(), f"{where} [protocol]")

    datasets = []
    for i, d in enumerate(_tables(data, "datasets", where)):
        w = f"{where} [[datasets]] #{i + 1}"
        dname = _required_str(d, "name", w)
        loader = _lookup(DATASETS, dname, w)
        params = {k: v for k, v in d.items() if k not in ("name", "label", "protocol")}
        _check_signature(loader, params, f"{w} ({dname})", "dataset")
        _check_common_dataset_params(params, f"{w} ({dname})")
        proto = _protocol(_typed(d, "protocol", dict, {}, w), protocol, f"{w} [protocol]")
        label = _typed(d, "label", str, dname, w)
        datasets.append(DatasetConfig(dname, label, params, proto))

    extractors = []
    for i, e in [(n, row) for n, table in enumerate(_tables(data, "extractors", where))
                 for row in _expand_sweep(table, f"{where} [[extractors]] #{n + 1}")]:
        w = f"{where} [[extractors]] #{i + 1}"
        ename = _required_str(e, "name", w)
        params = {k: v for k, v in e.items() if k not in ("name", "label")}
        try:
            extractor = create_extractor(ename, **params)
            extractor.validate()
        except InvalidParameterError as exc:
            raise ConfigError(f"{w} ({ename}): {_one_line(exc)}") from None
        except FeatbenchError as exc:
            raise ConfigError(f"{w}: {_one_line(exc)}") from None
        except Exception as exc:  # a plugin's own checks may raise anything on a value of the wrong type
            raise ConfigError(f"{w} ({ename}): invalid parameters {params!r}: "
                              f"{type(exc).__name__}: {_one_line(exc)}") from exc
        label = _typed(e, "label", str, extractor.label, w)
        extractors.append(ExtractorConfig(ename, label, params))

    classifiers = [_classifier(c, f"{where} [[classifiers]] #{i + 1}")
                   for i, c in enumerate(_tables(data, "classifiers", where))]
    tasks = [_task(t, f"{where} [[tasks]] #{i + 1}", [e.label for e in extractors],
                   {e.label: e.name for e in extractors})
             for i, t in enumerate(_tables(data, "tasks", where))]
    asked = [json.dumps([t.name, t.params, t.extractors], sort_keys=True, default=repr) for t in tasks]
    for i, a in enumerate(asked):
        if asked.index(a) != i:
            raise ConfigError(f"{where}: [[tasks]] #{asked.index(a) + 1} and #{i + 1} ask the same question "
                              f"({tasks[i].name} with the same parameters); remove one")
    if not tasks:  # every experiment written before tasks existed: today's classification
        tasks = [TaskConfig("classification", "classification", {})]
    needs_classifiers = any(_lookup(TASKS, t.name, where).uses_classifiers for t in tasks)
    if classifiers and not needs_classifiers:
        raise ConfigError(f"{where}: [[classifiers]] are given but no task uses them; add a "
                          "[[tasks]] table with name = \"classification\" or remove the classifiers")

    kinds = [("datasets", datasets), ("extractors", extractors), ("tasks", tasks)]
    kinds += [("classifiers", classifiers)] if needs_classifiers else []
    for kind, items in kinds:
        if not items:
            raise ConfigError(f"{where}: needs at least one [[{kind}]] table")
        labels = [x.label for x in items]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ConfigError(f"{where}: two [[{kind}]] have the same label {sorted(dup)[0]!r}; "
                              "give each a distinct label = \"...\"")
    return Experiment(
        name=name,
        source=source,
        description=_typed(data, "description", str, "", where),
        plugins=tuple(plugins),
        run=run,
        protocol=protocol,
        datasets=tuple(datasets),
        extractors=tuple(extractors),
        classifiers=tuple(classifiers),
        tasks=tuple(tasks),
        raw=data,
    )


def _classifier(c: dict, w: str) -> ClassifierConfig:
    cname = _required_str(c, "name", w)
    cls = _lookup(CLASSIFIERS, cname, w)
    param = getattr(cls, "param", "C")
    _check_keys(c, {"name", "label", param, "scale"}, w, f"a {cname} classifier table")
    grid = c.get(param, list(cls.default_grid()) if hasattr(cls, "default_grid") else list(cls.default_C))
    if isinstance(grid, (int, float)) and not isinstance(grid, bool):
        grid = [grid]
    if getattr(cls, "param_kind", "real") == "int":
        if not isinstance(grid, list) or not grid or not all(
            isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 100_000 for x in grid
        ):
            raise ConfigError(f"{w}: {param} must be a positive integer (at most 100000) or a non-empty list "
                              f"of them, got {grid!r}")
    elif not isinstance(grid, list) or not grid or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 < x <= 1e12
        for x in grid
    ):
        raise ConfigError(f"{w}: {param} must be a positive finite number (at most 1e12) or a non-empty list "
                          f"of them, got {grid!r}")
    label = _typed(c, "label", str, cname, w)
    try:
        scale = check_scale(_typed(c, "scale", str, getattr(cls, "default_scale", "standard"), w))
    except ValueError as exc:
        raise ConfigError(f"{w}: {exc}") from None
    values = tuple(int(x) for x in grid) if getattr(cls, "param_kind", "real") == "int" else tuple(float(x) for x in grid)
    return ClassifierConfig(cname, label, values, scale, param)


def _task(t: dict, w: str, extractor_labels: list[str], names: dict[str, str]) -> TaskConfig:
    tname = _required_str(t, "name", w)
    cls = _lookup(TASKS, tname, w)
    if not getattr(cls, "name", ""):  # an entry point's class: its registered name is its name
        cls.name = tname
    only = None
    if "extractors" in t:
        only = t["extractors"]
        if isinstance(only, str):
            only = [only]
        if not isinstance(only, list) or not only or not all(isinstance(p, str) for p in only):
            raise ConfigError(f"{w}: extractors must be a list of extractor labels (or patterns such as "
                              f"'hog*'), got {t['extractors']!r}")
        for pattern in only:
            if not fnmatch.filter(extractor_labels, pattern):
                stems = {label.split("(")[0].split("[")[0]: label for label in extractor_labels}
                close = [c if c in extractor_labels else f"{c}*" for c in
                         difflib.get_close_matches(pattern, [*extractor_labels, *stems], n=3)]
                hint = f"; did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?" if close else ""
                raise ConfigError(f"{w}: extractors: {pattern!r} matches no [[extractors]] label{hint} (labels: "
                                  f"{', '.join(extractor_labels)}; 'hog*' matches every label starting with hog)")
        only = tuple(only)
    written = {k: v for k, v in t.items() if k not in ("name", "label", "extractors")}
    try:
        params = cls.check_params(dict(written))
    except FeatbenchError as exc:
        raise ConfigError(f"{w} ({tname}): {_one_line(exc)}") from None
    except Exception as exc:  # a plugin task's own checks may raise anything on a value of the wrong type
        raise ConfigError(f"{w} ({tname}): invalid parameters {written!r}: {type(exc).__name__}: "
                          f"{_one_line(exc)}") from exc
    rows = [(label, names[label]) for label in extractor_labels
            if only is None or any(fnmatch.fnmatchcase(label, p) for p in only)]
    try:
        cls.check_rows(written, rows)
    except FeatbenchError as exc:
        raise ConfigError(f"{w} ({tname}): {_one_line(exc)}") from None
    return TaskConfig(tname, _typed(t, "label", str, tname, w), params, only)


# -- helpers ------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _expand_sweep(table: dict, where: str) -> list[dict]:
    """An [[extractors]] table with ``sweep = "key"`` (or a list of keys) as one table per value of
    each swept key (their product, in the order written), labelled ``<label>[key=value,...]``."""
    if "sweep" not in table:
        return [table]
    keys = table["sweep"]
    keys = [keys] if isinstance(keys, str) else keys
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"{where}: sweep must name a parameter (a string) or a list of them, got {keys!r}")
    for key in keys:
        if key in ("name", "label", "sweep") or key not in table:
            raise ConfigError(f"{where}: sweep names {key!r}, which must be a parameter given in this table "
                              "as a list of the values to sweep")
        if not isinstance(table[key], list) or not table[key]:
            raise ConfigError(f"{where}: sweep = {keys!r}: {key} must be a non-empty list of values, "
                              f"got {table[key]!r}")
    label = table.get("label", table.get("name"))
    tables = [{k: v for k, v in table.items() if k != "sweep"}]
    for key in keys:
        tables = [{**t, key: value} for t in tables for value in table[key]]
    for t in tables:
        t["label"] = f"{label}[{','.join(f'{k}={t[k]}' for k in keys)}]"
    return tables


def _check_common_dataset_params(params: dict, where: str) -> None:
    """``seed`` and ``limit_per_class``, taken by every loader, checked before anything loads."""
    if "seed" in params:
        seed = params["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{where}: seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    if "limit_per_class" in params:
        limit = params["limit_per_class"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"{where}: limit_per_class must be a positive integer, got {limit!r}")


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a table"}


def _typed(table: dict, key: str, typ: type, default: Any, where: str) -> Any:
    if key not in table:
        return default
    value = table[key]
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(f"{where}: {key} must be {_TYPE_NAMES.get(typ, typ.__name__)}, got {value!r}")
    return value


def _check_keys(table: dict, accepted: set[str], where: str, what: str) -> None:
    for key in table:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: unknown key {key!r} in {what}; {hint}accepted: {', '.join(sorted(accepted))}")


def _tables(data: dict, key: str, where: str) -> list[dict]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise ConfigError(f"{where}: {key} must be an array of tables, written [[{key}]]")
    return items


def _required_str(table: dict, key: str, where: str) -> str:
    if key not in table:
        raise ConfigError(f"{where}: missing required key {key!r}")
    return _typed(table, key, str, None, where)


def _lookup(registry, name: str, where: str):
    try:
        return registry.get(name)
    except FeatbenchError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_signature(fn, params: dict, where: str, kind: str) -> None:
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [n for n, p in sig.parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"{where}: unknown {kind} parameter {key!r}; {hint}accepted: {', '.join(accepted)}")
    missing = [n for n, p in sig.parameters.items()
               if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in params]
    if missing:
        raise ConfigError(f"{where}: missing required {kind} parameter {missing[0]!r}")


def _dataclass_from(cls, table: dict, where: str):
    types = {f.name: f.type for f in fields(cls)}
    _check_keys(table, set(types), where, "this table")
    values = {}
    for key, value in table.items():
        t = types[key]
        if "int" in t and "float" not in t:
            values[key] = _typed(table, key, int, None, where)
        elif "float" in t and "int" not in t:
            values[key] = _typed(table, key, float, None, where)
        elif t.startswith("str"):
            values[key] = _typed(table, key, str, None, where)
        else:
            values[key] = value
    return cls(**values)


def _protocol(table: dict, default: Protocol, where: str) -> Protocol:
    names = {f.name for f in fields(Protocol)}
    _check_keys(table, names, where, "a protocol table")
    values = {}
    for key in ("kind",):
        if key in table:
            values[key] = _typed(table, key, str, None, where)
            if values[key] not in KINDS:
                raise ConfigError(f"{where}: kind {values[key]!r} is not one of {', '.join(KINDS)}")
    bounds = {"repeats": (1, MAX_REPEATS, str(MAX_REPEATS)), "folds": (2, MAX_FOLDS, str(MAX_FOLDS)),
              "seed": (0, MAX_SEED, "2**32 - 1")}
    for key, (low, high, high_text) in bounds.items():
        if key in table:
            values[key] = _typed(table, key, int, None, where)
            if not low <= values[key] <= high:
                raise ConfigError(f"{where}: {key} must be an integer in [{low}, {high_text}], got {values[key]}")
    for key in ("test_size", "train_size"):
        if key in table:
            v = table[key]
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
                    or (isinstance(v, float) and v >= 1)):
                raise ConfigError(
                    f"{where}: {key} must be a fraction in (0, 1) or a positive number of images, got {v!r}"
                )
            values[key] = v
    return replace(default, **values)
