"""``featbench compare``: extractors chosen by what the images allow (and the others named with the reason),
the experiment file it saves reproduces the run, the Python API returns the CSV's numbers, bad input is one
line and exit 2; the terminal answer's Pareto front."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import featbench
from featbench.cli import main
from featbench.reporting.answer import answer_lines, pareto_front

METRICS = ["accuracy", "balanced_accuracy", "f1_macro", "C"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def _tiny_folder(root, side: int = 16, per_class: int = 4, classes=("a", "b", "c"), colour: bool = True):
    """Tiny images whose class is their mean brightness (so every extractor has something to find)."""
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (side, side, 3) if colour else (side, side)
            img = np.clip(rng.normal(60 + 70 * k, 20, shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")
    return root


def test_tiny_images_get_only_extractors_that_work_and_the_others_are_named(tmp_path, capsys):
    folder = _tiny_folder(tmp_path / "tiny")
    assert main(["compare", str(folder), "--quick"]) == 0
    out = capsys.readouterr().out
    chosen = out.split("extractors: ", 1)[1].splitlines()[0].split(", ")
    assert {"pixels", "hog", "lbp"} <= set(chosen)
    assert not {"sift-bovw", "dense-sift-fisher", "orb-bovw"} & set(chosen)
    for kind in ("sift", "dense-sift", "orb"):
        assert f"left out {kind}: images are 16 px" in out
    # no random-weight network in the default answer
    assert "random" not in " ".join(chosen)
    # the ranked answer: one row per extractor, best first
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit() and " px" not in line]
    accs = [float(r[3]) for r in rows]
    assert accs == sorted(accs, reverse=True) and {r[1] for r in rows} == set(chosen)
    assert (tmp_path / "results" / "tiny" / "report.md").is_file()


def test_saved_experiment_reproduces_the_records(tmp_path, capsys):
    folder = _tiny_folder(tmp_path / "imgs", side=20, per_class=6)
    assert main(["compare", str(folder), "--quick", "--extractors", "pixels,hog"]) == 0
    capsys.readouterr()
    first = pd.read_csv(tmp_path / "results" / "imgs" / "results.csv")
    exp = tmp_path / "results" / "imgs" / "experiment.toml"
    assert main(["run", str(exp), "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again" / "results.csv")
    assert len(first) == len(again) == 2
    pd.testing.assert_frame_equal(first[["extractor", "classifier", "split", *METRICS]],
                                  again[["extractor", "classifier", "split", *METRICS]])
    assert list(first["cell_id"]) == list(again["cell_id"])  # the same cells, by identity


def test_python_api_returns_the_numbers_of_the_csv(tmp_path):
    folder = _tiny_folder(tmp_path / "imgs", side=20, per_class=6)
    result = featbench.compare(folder, extractors=["pixels", "lbp"], quick=True, out=tmp_path / "out")
    csv = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert isinstance(result.summary, pd.DataFrame) and len(result.summary) == 2
    pd.testing.assert_frame_equal(result.summary, csv)
    by_cell = {(r["extractor"], r["classifier"]): r["accuracy"] for r in result.records}
    for _, row in result.summary.iterrows():  # one split: the mean is the cell's accuracy (CSV: 6 digits)
        assert row["accuracy_mean"] == pytest.approx(by_cell[(row["extractor"], row["classifier"])], abs=5e-7)
    assert "<table" in result._repr_html_()
    assert (tmp_path / "out" / "experiment.toml").is_file()


def _empty(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    return tmp_path / "empty"


@pytest.mark.parametrize("make, extra, expected", [
    (lambda p: str(p / "nowhere"), [], "no such folder"),
    (lambda p: str(_empty(p)), [], "empty"),
    (lambda p: str(_tiny_folder(p / "one", classes=("only",))), [], "class"),
    (lambda p: str(_tiny_folder(p / "imgs")), ["--extractors", "hgo"], "hog"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, extra, expected):
    code = main(["compare", make(tmp_path), "--quick", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err.lower()


def test_pareto_front_and_cost_sentence():
    rows = pd.DataFrame({"extractor": ["deep", "sift", "hog", "pixels", "slow-bad"], "weights": [""] * 5,
                         "classifier": ["logreg"] * 5, "accuracy_mean": [0.90, 0.895, 0.80, 0.60, 0.50],
                         "extract_ms_per_image": [40.0, 8.0, 0.1, 0.01, 50.0]})
    assert [rows.loc[i, "extractor"] for i in pareto_front(rows)] == ["pixels", "hog", "sift", "deep"]
    records = [{"dataset": "d", "task": "classification", "task_name": "classification", "extractor": e,
                "weights": "", "classifier": "logreg", "split": "s0", "status": "ok", "accuracy": a,
                "balanced_accuracy": a, "f1_macro": a, "extract_ms_per_image": ms, "dim": 10, "n_train": 90,
                "n_test": 10, "family": "classical", "C": 1.0}
               for e, a, ms in zip(rows["extractor"], rows["accuracy_mean"], rows["extract_ms_per_image"])]
    text = "\n".join(answer_lines(records))
    assert "Fastest within 1 point of the best: sift (0.895), 5x cheaper than deep" in text
    assert text.index(" deep ") < text.index(" sift ") < text.index(" hog ")


def test_report_overview_has_a_column_per_dataset_and_the_best_in_bold():
    from featbench.reporting.answer import overview_lines
    from featbench.reporting.tables import results_table

    def rec(d, e, c, split, acc):
        return {"dataset": d, "task": "classification", "task_name": "classification", "extractor": e,
                "weights": "", "classifier": c, "split": split, "status": "ok", "accuracy": acc,
                "balanced_accuracy": acc, "f1_macro": acc, "extract_ms_per_image": 1.0, "dim": 4, "n_train": 9,
                "n_test": 3, "family": "classical", "C": 1.0}

    records = [rec("d1", "hog", "logreg", s, a) for s, a in (("s0", 0.8), ("s1", 0.9))]
    records += [rec("d1", "hog", "rbf-svm", s, a) for s, a in (("s0", 0.6), ("s1", 0.6))]
    records += [rec("d1", "lbp", "logreg", s, 0.5) for s in ("s0", "s1")]
    records += [rec("d2", "lbp", "logreg", s, 0.7) for s in ("s0", "s1")]
    lines = overview_lines(results_table(records))
    table = [ln for ln in lines if ln.startswith("| `")]
    assert lines[lines.index(table[0]) - 2] == "| extractor | d1 | d2 |"
    hog, lbp = ([c.strip() for c in ln.split("|")[1:-1]] for ln in table)
    assert hog == ["`hog`", "**0.850 ± 0.071 (logreg)**", "—"]  # its best classifier, the column's best
    assert lbp == ["`lbp`", "0.500 ± 0.000 (logreg)", "**0.700 ± 0.000 (logreg)**"]
    one = overview_lines(results_table([r for r in records if r["split"] == "s0"]))
    assert "| `hog` | **0.800 (1 split) (logreg)** | — |" in one  # one split: no ± 0.000 to read as certainty


def test_several_datasets_share_what_works_on_all_and_each_names_what_another_excluded(tmp_path):
    """compare of 8 px gray and 40 px colour images: one experiment, the extractors that work on both with
    the small images' parameters (LBP at 8 px, no HOG, no colour histogram); the large set names why HOG,
    dense SIFT and the colour histogram are missing from its rows."""
    from featbench.comparison import compare_experiment

    small = _tiny_folder(tmp_path / "small", side=8, colour=False)
    large = _tiny_folder(tmp_path / "large", side=40)
    data, choices = compare_experiment([large, small], quick=True)  # the larger first: order must not matter
    tables = {t["label"]: t for t in data["extractors"]}
    assert {"pixels", "lbp"} <= set(tables)  # (and MobileNet where its ImageNet weights are found)
    assert not {"hog", "color-hist", "dense-sift-fisher", "sift-bovw", "orb-bovw"} & set(tables)
    assert tables["lbp"]["size"] == 8
    own = dict(choices["large"].left_out)
    assert own["hog"].startswith("it cannot work on small, compared in the same run (images are 8 px")
    assert own["dense-sift"].startswith("it cannot work on small") and "compare large alone" in own["dense-sift"]
    assert own["color-hist"].startswith("it cannot work on small, compared in the same run (the images are gray")
    assert dict(choices["small"].left_out)["hog"].startswith("images are 8 px")  # its own reason, said once
    assert len(choices["small"].left_out) == len(dict(choices["small"].left_out))
