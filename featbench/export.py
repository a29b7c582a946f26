"""``featbench extract``: one extractor's features of a dataset, written to ``.npz`` or Parquet with a manifest.

Once a user has picked an extractor, its features go to their own model, a vector database or a notebook.
:func:`extract` computes them exactly as a run does — the same dataset loaders, the same splits, the
extractor fitted on a split's training part only (or on nothing, for extractors that learn nothing), the
same parallel transform — and serves them from the feature cache when a run has computed them already.
:func:`write_features` writes one row per image (dataset position, file path where the images are files,
label, class, which part of the split it is in, the vector) and a JSON manifest beside it that names
everything needed to make the same file again: featbench version, extractor name and parameters, the
weights' digest, the dataset's content fingerprint, the split and its digest, and the command.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featbench._io import atomic_write, atomic_write_json
from featbench.cache import feature_key, usable_cache
from featbench.config import Experiment, parse_experiment
from featbench.errors import ConfigError
from featbench.evaluation import Split, make_splits
from featbench.features import parallel_backend, split_features
from featbench.registry import DATASETS, create_extractor
from featbench.version import __version__

__all__ = ["Extracted", "extract", "experiment_for", "write_features", "FORMATS"]

#: File suffix → format written by :func:`write_features`.
FORMATS = {".npz": "npz", ".parquet": "parquet"}


@dataclass
class Extracted:
    """Features of every image of a dataset, in the dataset's order, and how they were made."""

    features: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    positions: np.ndarray
    parts: np.ndarray
    paths: list[str] | None
    manifest: dict = field(default_factory=dict)


def experiment_for(dataset: str | None, extractor: str, params: dict | None = None, *,
                   config: str | Path | None = None) -> Experiment:
    """The one-dataset, one-extractor experiment ``featbench extract`` runs.

    Without ``config``: ``dataset`` is an image folder (``root/<class>/*``) or a registered dataset name,
    ``extractor`` a registered extractor name with ``params``; the protocol is featbench's default. With
    ``config`` (an experiment file): ``dataset`` and ``extractor`` are labels (or names) of its tables, and
    its protocol, cache and run settings apply; ``dataset`` may be left out when the file has one dataset.
    """
    from featbench.config import load_experiment

    if config is not None:
        exp = load_experiment(config)
        if params:
            raise ConfigError("--set cannot be combined with --config: change the extractor's table in "
                              f"{config} instead")
        d = _pick(exp.datasets, dataset, "dataset", config)
        e = _pick(exp.extractors, extractor, "extractor", config)
        data = dict(exp.raw)
        data["datasets"] = [exp.raw["datasets"][d]]
        data["extractors"] = [exp.raw["extractors"][e]]
        # extract runs no task; a task's ``extractors`` filter may name rows left out here
        data.pop("tasks", None)
        return parse_experiment(data, source=str(config), base=Path(config).parent, default_name=exp.name)
    if not dataset:
        raise ConfigError("featbench extract: give a dataset (an image folder or a built-in dataset name such "
                          f"as {', '.join(DATASETS.list())}) or --config with an experiment file")
    path = Path(dataset).expanduser()
    if path.is_dir():
        table = {"name": "folder", "root": str(path.resolve()), "label": path.resolve().name or "folder"}
    elif dataset in DATASETS.list():
        table = {"name": dataset}
    else:
        raise ConfigError(f"dataset {dataset!r}: neither an image folder nor a built-in dataset name "
                          f"({', '.join(DATASETS.list())})")
    # An experiment names at least one classifier; extract uses none.
    data = {"name": "extract", "datasets": [table], "extractors": [{"name": extractor, **(params or {})}],
            "classifiers": [{"name": "linear-svm"}]}
    return parse_experiment(data, source="featbench extract")


def _pick(configs, wanted: str | None, what: str, config) -> int:
    """Index of the table labelled (or, if unique, named) ``wanted``; the only one when ``wanted`` is None."""
    labels = ", ".join(repr(c.label) for c in configs)
    if wanted is None:
        if len(configs) == 1:
            return 0
        how = "with --extractor" if what == "extractor" else "as the first argument"
        raise ConfigError(f"{config}: has {len(configs)} {what}s ({labels}); name one {how}")
    for i, c in enumerate(configs):
        if c.label == wanted:
            return i
    named = [i for i, c in enumerate(configs) if c.name == wanted]
    if len(named) == 1:
        return named[0]
    raise ConfigError(f"{config}: no {what} labelled {wanted!r}" + (" (several have that name)" if named else "")
                      + f"; its {what}s are {labels}")


def extract(exp: Experiment, split: int | str | None = None, *, n_jobs: int | None = None,
            progress: bool | None = None, command: str | None = None) -> Extracted:
    """Features of every image of ``exp``'s one dataset for its one extractor.

    Parameters
    ----------
    exp : Experiment
        One dataset and one extractor (see :func:`experiment_for`).
    split : int, "all" or None
        For an extractor that learns (a codebook, a network): fit on the training part of this split of
        the experiment's protocol (default 0), or on every image (``"all"``; such features are not those of
        any benchmark cell). Extractors that learn nothing ignore it, apart from the ``part`` column.
    n_jobs : int, optional
        Workers for the transform (default: the experiment's ``[run] n_jobs``).
    progress : bool, optional
        Progress bars (default: when stderr is a terminal).
    command : str, optional
        The command line to record in the manifest.
    """
    from featbench.runner import _load

    dcfg, ecfg = exp.datasets[0], exp.extractors[0]
    images = _load(dcfg)
    if len(images) == 0:
        raise ConfigError(f"dataset {dcfg.label!r} has no images to extract features from")
    extractor = create_extractor(ecfg.name, **ecfg.params)
    n = len(images)
    fitted = bool(extractor.spec.fitted)
    if split == "all" or (split is None and not fitted):
        chosen = Split("all", np.arange(n), np.arange(0))
    else:
        splits = make_splits(images.labels, dcfg.protocol, images.official_split, dataset=dcfg.label)
        index = 0 if split is None else split
        if not isinstance(index, int) or not 0 <= index < len(splits):
            raise ConfigError(f"--split {split!r}: the protocol of dataset {dcfg.label!r} has {len(splits)} "
                              f"split(s): give 0 to {len(splits) - 1}, or 'all'")
        chosen = splits[index]
    cache = usable_cache(exp.run.cache_dir)
    disable = None if progress is None else not progress
    t0 = time.perf_counter()
    with parallel_backend(exp.run.backend, exp.run.scheduler, n_jobs or exp.run.n_jobs):
        feats = split_features(extractor, images, chosen, cache, {}, n_jobs or exp.run.n_jobs,
                               exp.run.backend, disable)
    wall = time.perf_counter() - t0
    order = np.concatenate([chosen.train, chosen.test]).astype(np.int64)
    X = np.empty((n, feats.train.shape[1]), dtype=np.float32)
    X[order] = np.concatenate([feats.train, feats.test])
    parts = np.full(n, "all" if chosen.id == "all" else "test", dtype=object)
    if chosen.id != "all":
        parts[chosen.train] = "train"
    sources = getattr(images, "_sources", None)
    paths = [str(s) for s in (sources[int(i)] for i in images._index)] \
        if sources is not None and all(isinstance(s, (str, Path)) for s in sources[:1]) else None
    key = feature_key(images.fingerprint, extractor, chosen.digest if fitted else None)
    manifest = {
        "featbench": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": n, "dim": int(X.shape[1]), "dtype": "float32",
        "dataset": {"label": dcfg.label, "name": dcfg.name, "params": dcfg.params,
                    "fingerprint": images.fingerprint, "n_images": n, "class_names": list(images.class_names),
                    "skipped_files": len(images.skipped)},
        "extractor": {"label": ecfg.label, "name": ecfg.name, "params": ecfg.params,
                      "all_params": {k: _jsonable(v) for k, v in sorted(extractor.get_params().items())},
                      "class": f"{type(extractor).__module__}.{type(extractor).__qualname__}",
                      "family": extractor.spec.family,
                      "weights": getattr(extractor, "weights_label", None),
                      "weights_digest": extractor.content_token() if hasattr(extractor, "content_token") else None},
        "fitted_on": (
            "nothing: the extractor learns nothing from images" if not fitted else
            "every image of the dataset (--split all)" if chosen.id == "all" else
            f"the training part of split {chosen.id} ({len(chosen.train)} images)"),
        "split": None if chosen.id == "all" else {
            "id": chosen.id, "digest": chosen.digest, "n_train": len(chosen.train), "n_test": len(chosen.test),
            "protocol": {k: _jsonable(v) for k, v in vars(dcfg.protocol).items()}},
        "feature_cache_key": key,
        "from_cache": bool(feats.from_cache),
        "extractor_fit_s": round(feats.fit_s, 4),
        "extract_ms_per_image": round(feats.extract_ms_per_image, 4),
        "wall_s": round(wall, 3),
        "info": feats.info,
        "command": command,
    }
    return Extracted(X, images.labels.copy(), list(images.class_names), np.arange(n), parts, paths, manifest)


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return repr(v)


def write_features(result: Extracted, out: str | Path) -> tuple[Path, Path]:
    """Write ``result`` to ``out`` (``.npz`` or ``.parquet``) and its manifest to ``out`` + ``.json``,
    each atomically. Returns both paths.

    ``.npz``: arrays ``features`` ``(n, d)`` float32, ``labels``, ``positions``, ``parts``, ``class_names``
    and ``paths`` (when the images are files). ``.parquet``: one row per image with columns ``position``,
    ``path`` (when files), ``label``, ``class``, ``part`` and ``vector`` (a list of float32).
    """
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {str(out)!r}: the file name must end in {' or '.join(FORMATS)}")
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give a file name ending in {' or '.join(FORMATS)}")
    names = np.asarray(result.class_names, dtype=object)[result.labels]
    if fmt == "npz":
        arrays = {"features": result.features, "labels": result.labels, "positions": result.positions,
                  "parts": result.parts.astype(str), "class_names": np.asarray(result.class_names, dtype=str)}
        if result.paths is not None:
            arrays["paths"] = np.asarray(result.paths, dtype=str)
        atomic_write(out, lambda f: np.savez(f, **arrays))
    else:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {"position": result.positions}
        if result.paths is not None:
            columns["path"] = result.paths
        columns.update({"label": result.labels, "class": names, "part": result.parts})
        table = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
        d = result.features.shape[1]
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(result.features.reshape(-1), type=pa.float32()), d) \
            if d else pa.array([[] for _ in range(len(result.features))], type=pa.list_(pa.float32()))
        table = table.append_column("vector", vectors)
        meta = {**(table.schema.metadata or {}), b"featbench": json.dumps(result.manifest, default=str).encode()}
        table = table.replace_schema_metadata(meta)
        atomic_write(out, lambda f: pq.write_table(table, f))
    manifest = {**result.manifest, "file": out.name, "format": fmt}
    manifest_path = atomic_write_json(out.with_name(out.name + ".json"), manifest)
    return out, manifest_path


def command_line(argv: list[str]) -> str:
    """``featbench`` + the arguments, quoted for a shell."""
    return "featbench " + " ".join(shlex.quote(a) for a in argv)
