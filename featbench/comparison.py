"""``featbench compare``: from a folder of images (or a built-in dataset) to an answer, with no experiment file.

:func:`compare_experiment` chooses the extractors that can work on the images — by their size, their
colour and the weights available offline — and says which it left out and why; it picks the protocol
and classifiers (``quick``: one split and a smaller grid, for a first look), and returns the experiment
as a dictionary, which :func:`write_experiment` saves as TOML beside the reports
(``results/<name>/experiment.toml``), so that ``featbench run`` on that file reproduces the run and a user
can edit it. :func:`compare` is the Python entry point for notebooks: it runs the experiment and returns a
:class:`Comparison` whose ``summary`` is a pandas DataFrame (one row per extractor × classifier × task).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featbench.errors import ConfigError

__all__ = ["Choice", "Comparison", "compare", "compare_experiment", "write_experiment", "DEFAULT_EXTRACTORS"]

#: Extractors tried by default, in this order (``--extractors`` picks among these names or any registered one).
DEFAULT_EXTRACTORS = ("pixels", "hog", "lbp", "color-hist", "sift", "dense-sift", "orb", "mobilenet", "vgg16",
                      "resnet50")
# Keypoint detectors find few or no keypoints on small images; dense SIFT needs room for its patches.
_MIN_KEYPOINT_SIDE = 64
_MIN_DENSE_SIDE = 32
_MIN_HOG_SIDE = 16
#: ImageNet weight files (Keras names, no top) of the deep defaults, looked for offline.
_IMAGENET_FILES = {
    "mobilenet": "mobilenet_2_5_224_tf_no_top.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
_SAMPLE = 32


@dataclass
class Choice:
    """The extractor tables chosen for some images, and the ones left out with the reason."""

    extractors: list[dict]
    left_out: list[tuple[str, str]]
    side: int
    colour: bool


def _image_facts(images) -> tuple[int, bool]:
    """Median shorter side and whether any image is in colour, over up to 32 images spread over the set."""
    n = len(images)
    idx = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE)).round().astype(int))
    sides, colour = [], False
    for i in idx:
        img = images[int(i)]
        sides.append(min(img.shape[:2]))
        colour |= img.ndim == 3 and img.shape[2] == 3 and not (
            np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]))
    return int(np.median(sides)), colour


def _weights_found(kind: str) -> Path | None:
    from featbench.extractors.deep import weights_folders

    for folder in weights_folders():
        path = folder / _IMAGENET_FILES[kind]
        if path.is_file():
            return path
    return None


def _candidate(kind: str, side: int, colour: bool, random_weights: bool) -> tuple[list[dict], str | None]:
    """The tables of extractor ``kind`` for images of shorter side ``side``, or why it cannot be used."""
    longer = 256 if side >= 256 else None
    if kind == "pixels":
        return [{"label": "pixels", "name": "pixels", "size": 16}], None
    if kind == "hog":
        if side < _MIN_HOG_SIDE:
            return [], f"images are {side} px; HOG's 16 px blocks need at least {_MIN_HOG_SIDE}"
        size = 64 if side >= 64 else (32 if side >= 32 else 16)
        return [{"label": "hog", "name": "hog", "size": size}], None
    if kind == "lbp":
        size = 128 if side >= 128 else max(8, side)
        return [{"label": "lbp", "name": "lbp", "size": size, "P": [8, 16] if size >= 64 else [8],
                 "R": [1, 2] if size >= 64 else [1], "grid": 4 if size >= 64 else 2}], None
    if kind == "color-hist":
        from featbench.registry import EXTRACTORS

        if "color-hist" not in EXTRACTORS.list():
            return [], "not installed in this featbench"
        if not colour:
            return [], "the images are gray"
        return [{"label": "color-hist", "name": "color-hist", "space": "hsv", "grid": 2}], None
    if kind == "sift":
        if side < _MIN_KEYPOINT_SIDE:
            return [], f"images are {side} px; keypoint detection needs at least {_MIN_KEYPOINT_SIDE}"
        return [{"label": "sift-bovw", "name": "sift", **({"max_size": longer} if longer else {}),
                 "root_sift": True, "encoding": "bovw", "n_words": 256, "pyramid": [1, 2],
                 "codebook_images": 300, "max_descriptors": 30000}], None
    if kind == "dense-sift":
        if side < _MIN_DENSE_SIDE:
            return [], f"images are {side} px; dense SIFT patches need at least {_MIN_DENSE_SIDE}"
        return [{"label": "dense-sift-fisher", "name": "sift", "mode": "dense",
                 **({"max_size": longer} if longer else {"min_size": 64}), "step": 8,
                 "scales": [16, 24, 32, 48] if side >= 128 else [16, 24], "root_sift": True, "encoding": "fisher",
                 "n_words": 16, "pca": 48 if side >= 128 else 32, "pyramid": [1, 2], "codebook_images": 300,
                 "max_descriptors": 30000}], None
    if kind == "orb":
        if side < _MIN_KEYPOINT_SIDE:
            return [], f"images are {side} px; ORB's 31 px patches need at least {_MIN_KEYPOINT_SIDE}"
        return [{"label": "orb-bovw", "name": "orb", **({"max_size": longer} if longer else {}),
                 "encoding": "bovw", "n_words": 256, "pyramid": [1, 2], "codebook_images": 300,
                 "max_descriptors": 30000}], None
    if kind in _IMAGENET_FILES:
        base = ({"name": "keras-app", "model": "MobileNet", "alpha": 0.25, "input_size": 224}
                if kind == "mobilenet" else {"name": kind})
        label = "mobilenet-0.25" if kind == "mobilenet" else kind
        tables = []
        if _weights_found(kind) is not None:
            tables.append({"label": f"{label}-imagenet", **base, "weights": "imagenet"})
        if random_weights:
            tables.append({"label": f"{label}-random", **base, "weights": "random", "random_state": 0})
        if tables:
            return tables, None
        from featbench.extractors.deep import weights_folders

        where = " or ".join(str(f) for f in weights_folders())
        return [], (f"ImageNet weights ({_IMAGENET_FILES[kind]}) not found in {where}; put the file there, or "
                    "add --random-weights for the untrained network")
    raise AssertionError(kind)


def choose_extractors(images, wanted: Sequence[str] | None = None, random_weights: bool = False) -> Choice:
    """Extractors for ``images``: the defaults that can work on them (or those in ``wanted``), with the
    reasons for the ones left out. A name in ``wanted`` that is not a default is used as registered, with
    its default parameters."""
    side, colour = _image_facts(images)
    return _choose(side, colour, wanted, random_weights)


def _choose(side: int, colour: bool, wanted: Sequence[str] | None, random_weights: bool) -> Choice:
    from featbench.registry import EXTRACTORS

    chosen, left_out = [], []
    for kind in (wanted or DEFAULT_EXTRACTORS):
        if kind in DEFAULT_EXTRACTORS:
            tables, why = _candidate(kind, side, colour, random_weights)
        else:
            EXTRACTORS.get(kind)  # unknown name: the registry's error, with close matches
            tables, why = [{"label": kind, "name": kind}], None
        if why:
            left_out.append((kind, why))
        chosen += tables
    return Choice(chosen, left_out, side, colour)


def _dataset_table(source: str | Path) -> dict:
    from featbench.registry import DATASETS

    path = Path(source).expanduser()
    if path.is_dir():
        return {"name": "folder", "label": _label(path.resolve().name or "folder"), "root": str(path.resolve())}
    if str(source) in DATASETS.list():
        return {"name": str(source)}
    if path.exists():
        raise ConfigError(f"{str(source)!r} is a file; give an image folder (root/<class>/*) or a built-in dataset "
                          f"name ({', '.join(DATASETS.list())})")
    raise ConfigError(f"{str(source)!r}: no such folder, and not a built-in dataset name "
                      f"({', '.join(DATASETS.list())})")


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "images"


def compare_experiment(sources: Sequence[str | Path], *, extractors: Sequence[str] | None = None,
                       tasks: Sequence[str] | None = None, quick: bool = False, random_weights: bool = False,
                       name: str | None = None) -> tuple[dict, dict[str, Choice]]:
    """The experiment ``featbench compare`` runs on ``sources`` (folders or built-in dataset names), as the
    dictionary an experiment file parses to, and the extractor choice made for each dataset.

    The extractors are those that work on every dataset, with the parameters for the smallest images; each
    dataset's :class:`Choice` names the ones left out, including those left out because of another dataset. ``quick``: one hold-out split, logistic regression with C = 1 only, classification only.
    """
    from featbench.config import parse_experiment
    from featbench.runner import _load

    if not sources:
        raise ConfigError("featbench compare: give at least one image folder or built-in dataset name")
    datasets = [_dataset_table(s) for s in sources]
    probe = parse_experiment({"name": "probe", "datasets": datasets, "extractors": [{"name": "pixels"}],
                              "classifiers": [{"name": "logreg"}]}, source="featbench compare")
    choices: dict[str, Choice] = {}
    for dcfg in probe.datasets:
        choices[dcfg.label] = choose_extractors(_load(dcfg), extractors, random_weights)
    # One experiment runs every extractor on every dataset: those that work on all of them, with the
    # parameters for the smallest images (and no colour extractor unless every dataset is in colour).
    common = _choose(min(c.side for c in choices.values()), all(c.colour for c in choices.values()),
                     extractors, random_weights)
    tables = common.extractors
    if len(choices) > 1:
        for label, choice in choices.items():
            own = {kind for kind, _ in choice.left_out}
            for kind, why in common.left_out:
                if kind not in own:
                    where = next((other for other, c in choices.items() if kind in {k for k, _ in c.left_out}),
                                 "the set of datasets")
                    choice.left_out.append((kind, f"it cannot work on {where}, compared in the same run ({why}); "
                                                  f"compare {label} alone to include it"))
    if not tables:
        raise ConfigError("featbench compare: no extractor can work on these images: "
                          + "; ".join(f"{k}: {w}" for c in choices.values() for k, w in c.left_out))
    task_names = list(tasks) if tasks else (["classification"] if quick else ["classification", "retrieval"])
    name = name or _label("+".join(d.get("label", d["name"]) for d in datasets))
    data: dict[str, Any] = {
        "name": name,
        "description": ("featbench compare" + (" --quick" if quick else "") + ": "
                        + ", ".join(str(s) for s in sources)),
        "run": {"n_jobs": -1, "backend": "loky"},
        "protocol": {"kind": "holdout", "repeats": 1 if quick else 3, "test_size": 0.25, "seed": 0},
        "datasets": datasets,
        "extractors": tables,
        "classifiers": ([{"name": "logreg", "C": [1.0]}] if quick else
                        [{"name": "logreg", "C": [0.1, 1.0]}, {"name": "rbf-svm", "C": [1.0, 10.0]}]),
        "tasks": [{"name": t} for t in task_names],
    }
    parse_experiment(data, source="featbench compare")  # every table checked before anything runs
    return data, choices


def _toml_value(value: Any) -> str:
    """A TOML value: JSON's string escapes are TOML's basic-string escapes; lists and inline tables nest."""
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_key(key: str) -> str:
    import json

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def experiment_toml(data: dict, header: str = "") -> str:
    """``data`` (an experiment dictionary) as an experiment file, arrays of tables as ``[[...]]``."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key, value in data.items():
        if not isinstance(value, (dict, list)) or (isinstance(value, list) and not any(
                isinstance(v, dict) for v in value)):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
    for key, value in data.items():
        if isinstance(value, list) and any(isinstance(v, dict) for v in value):
            for table in value:
                lines += ["", f"[[{key}]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_experiment(data: dict, path: str | Path, choices: dict[str, Choice] | None = None) -> Path:
    """Save ``data`` as an experiment file at ``path`` (atomically), with the choices made in a comment."""
    from featbench._io import atomic_write_text

    header = ["Written by featbench compare; `featbench run` on this file reproduces the run. Edit freely."]
    for label, choice in (choices or {}).items():
        header.append(f"{label}: images about {choice.side} px (shorter side), "
                      f"{'colour' if choice.colour else 'gray'}.")
        header += [f"  left out {kind}: {why}" for kind, why in choice.left_out]
    return atomic_write_text(path, experiment_toml(data, "\n".join(header)))


@dataclass
class Comparison:
    """What :func:`compare` produced: ``summary`` (one row per dataset × task × extractor × classifier, mean
    and std over the splits, as ``summary.csv``), ``records`` (every cell), the output folder and the
    extractors left out."""

    summary: pd.DataFrame
    records: list[dict]
    out_dir: Path
    experiment: Path
    left_out: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def results(self) -> pd.DataFrame:
        """One row per cell (as ``results.csv``)."""
        return pd.read_csv(self.out_dir / "results.csv")

    def _repr_html_(self) -> str:
        return self.summary._repr_html_()

    def __repr__(self) -> str:
        return f"Comparison({len(self.records)} cells -> {self.out_dir})\n{self.summary.to_string(max_rows=30)}"


def compare(images_or_folder: str | Path | Sequence[str | Path], labels: Any = None, *,
            extractors: Sequence[str] | None = None, tasks: Sequence[str] | None = None, quick: bool = False,
            random_weights: bool = False, name: str | None = None, out: str | Path | None = None,
            n_jobs: int | None = None, progress: bool | None = None) -> Comparison:
    """Compare features on a folder of images (``root/<class>/*``) or a built-in dataset, in one call.

    Parameters
    ----------
    images_or_folder : path, dataset name, or a list of them
        The images. (In-memory arrays: save them as ``root/<class>/<i>.png`` first, so the run can be
        reproduced from its experiment file.)
    labels : None
        Reserved: the labels come from the class folders.
    extractors, tasks, quick, random_weights, name
        As ``featbench compare``'s options.
    out : path, optional
        Output folder (default ``results/<name>``).
    n_jobs, progress
        As ``featbench run``'s options.

    Returns
    -------
    Comparison
        ``.summary`` is the DataFrame of ``summary.csv``; it renders as a table in Jupyter.
    """
    from featbench.runner import run

    if labels is not None:
        raise ConfigError("compare(labels=...): labels come from the class folders (root/<class>/*); save "
                          "in-memory images in that layout first")
    sources = [images_or_folder] if isinstance(images_or_folder, (str, Path)) else list(images_or_folder)
    data, choices = compare_experiment(sources, extractors=extractors, tasks=tasks, quick=quick,
                                       random_weights=random_weights, name=name)
    out_dir = Path(out) if out is not None else Path("results") / data["name"]
    experiment = write_experiment(data, out_dir / "experiment.toml", choices)
    result = run(experiment, out_dir, n_jobs=n_jobs, progress=progress)
    summary = pd.read_csv(out_dir / "summary.csv")
    return Comparison(summary, result.records, out_dir, experiment,
                      {label: c.left_out for label, c in choices.items()})
