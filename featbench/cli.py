"""Command line: ``featbench run / compare / list / report / extract / perf``.

Errors in the user's input print one line and exit with code 2; ``--debug``
shows the traceback too.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from featbench.errors import FeatbenchError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse with featbench's one-line errors (exit 2), not a usage block."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"featbench: error: {self.prog}: {' '.join(message.split())} "
                                   f"(see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="featbench", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run an experiment file and write its reports")
    p.add_argument("config", help="experiment TOML file, e.g. experiments/default.toml")
    p.add_argument("--out", help="output folder (default: results/<experiment name>)")
    p.add_argument("--skip-existing", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse finished cells of an earlier or interrupted run (default: yes)")
    p.add_argument("--n-jobs", type=_n_jobs, help="extraction workers, overrides [run] n_jobs (-1: all cores)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")

    p = sub.add_parser("compare", help="compare features on image folders or built-in datasets, no experiment "
                                       "file needed (it writes one beside the reports)")
    p.add_argument("paths", nargs="+", help="image folders (root/<class>/*) or built-in dataset names")
    p.add_argument("--extractors", type=_names, help="comma-separated extractors (default: those that work on "
                                                     "the images), e.g. hog,sift,lbp,mobilenet")
    p.add_argument("--tasks", type=_names, help="comma-separated tasks (default: classification,retrieval; "
                                                "--quick: classification)")
    p.add_argument("--quick", action="store_true", help="one split and a smaller grid: a first look")
    p.add_argument("--random-weights", action="store_true",
                   help="add the deep networks with random weights (left out of the default answer)")
    p.add_argument("--name", help="name of the run (default: the folder names) -> results/<name>/")
    p.add_argument("--out", help="output folder (default: results/<name>)")
    p.add_argument("--n-jobs", type=_n_jobs, help="workers (-1: all cores)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")

    p = sub.add_parser("list", help="list registered extractors, datasets, classifiers or tasks")
    p.add_argument("kind", nargs="?", default="all", choices=["extractors", "datasets", "classifiers", "tasks", "all"])
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'h*'")

    p = sub.add_parser("perf", help="speed and memory benchmarks against references measured in the same run")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern of benchmark names")
    p.add_argument("--out", default="results/perf", help="output folder (default: results/perf)")
    p.add_argument("--quick", action="store_true", help="fewer images and repeats (a smoke test)")

    p = sub.add_parser("extract", help="write one extractor's features of a dataset to .npz or .parquet, "
                                       "with a JSON manifest")
    p.add_argument("dataset", nargs="?", help="an image folder (root/<class>/*) or a built-in dataset name; with "
                                              "--config, the label of one of its datasets")
    p.add_argument("-e", "--extractor", required=True,
                   help="an extractor name (featbench list extractors); with --config, one of its extractor labels")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="params",
                   help="an extractor parameter as a TOML value, e.g. --set size=64 --set 'P=[8, 16]' (repeatable)")
    p.add_argument("--config", help="take the dataset, the extractor and the protocol from this experiment file")
    p.add_argument("--split", type=_split, default=None,
                   help="fit an extractor that learns on this split's training part (0, 1, ...; default 0) or on "
                        "every image ('all')")
    p.add_argument("-o", "--out", required=True, help="output file: .npz or .parquet (the manifest goes to "
                                                      "<out>.json)")
    p.add_argument("--n-jobs", type=_n_jobs, help="workers (-1: all cores; default: the experiment's or -1)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")

    p = sub.add_parser("report", help="rewrite the reports of a finished run from its cells")
    p.add_argument("run_dir", help="a run's output folder, e.g. results/default")
    return parser


def _n_jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == 0 or value < -(2**15) or value > 2**15:
        raise argparse.ArgumentTypeError(f"{text!r}: give -1 (all cores) or a positive number of workers")
    return value


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated names, e.g. hog,lbp")
    return names


def _split(text: str) -> int | str:
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a split number (0, 1, ...) or 'all'")
    return value


def _params(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs, each value read as TOML (``64``, ``"hsv"``, ``[8, 16]``, ``true``); a bare word is a string."""
    from featbench.config import tomllib
    from featbench.errors import ConfigError

    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"--set {pair!r}: give KEY=VALUE, e.g. --set size=64")
        try:
            params[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            params[key] = value.strip()
    return params


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, like featbench's other messages (``--debug``: Python's own format, with the
    source line)."""
    print(f"featbench: warning: {' '.join(str(message).split())}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``featbench`` command; returns the exit code."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(level=logging.WARNING, format="featbench: %(levelname)s: %(message)s")
    logging.getLogger("featbench").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    if not args.debug:
        # Decoders speak for themselves on damaged files (OpenCV's C++ log, Pillow's warnings); featbench
        # already counts and names every file it skips, so their lines would only bury its one-line errors.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\..*)?")
        if "cv2" in sys.modules:  # imported already (featbench used from Python): the variable came too late
            sys.modules["cv2"].utils.logging.setLogLevel(sys.modules["cv2"].utils.logging.LOG_LEVEL_SILENT)
        warnings.showwarning = _one_line_warning
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "perf":
            return _cmd_perf(args)
        if args.command == "compare":
            return _cmd_compare(args)
        if args.command == "extract":
            return _cmd_extract(args, list(sys.argv[1:] if argv is None else argv))
        return _cmd_report(args)
    except FeatbenchError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"featbench: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("featbench: interrupted; finished cells are kept: run the same command to resume",
              file=sys.stderr)
        return 130
    except (Exception, SystemExit) as exc:  # a bug, or a plugin that exits: one line, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        print(f"featbench: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _cmd_run(args) -> int:
    from featbench.runner import run

    result = run(args.config, args.out, skip_existing=args.skip_existing, n_jobs=args.n_jobs,
                 progress=args.progress)
    _print_answer(result.records)
    bad = [r for r in result.records if r["status"] != "ok"]
    print(f"featbench: {len(result.records)} cells ({result.computed} computed, {result.reused} reused"
          f"{f', {len(bad)} not ok' if bad else ''}) -> {result.report}")
    return 0


def _cmd_list(args) -> int:
    from featbench.registry import CLASSIFIERS, DATASETS, EXTRACTORS, TASKS

    kinds = ["extractors", "datasets", "classifiers", "tasks"] if args.kind == "all" else [args.kind]
    registries = {"extractors": EXTRACTORS, "datasets": DATASETS, "classifiers": CLASSIFIERS, "tasks": TASKS}
    for kind in kinds:
        reg = registries[kind]
        rows = []
        for name in reg.list(args.pattern):
            obj = reg.get(name)
            rows.append((name, *_describe(kind, obj)))
        for name, u in sorted(reg.unavailable().items()):
            if fnmatch.fnmatchcase(name, args.pattern):
                rows.append((name, "?", f"(plugin from {u.source})", f"unavailable: {u.reason}"))
        if len(kinds) > 1:
            print(f"{kind}:")
        width = max([len(r[0]) for r in rows] + [4])
        fam = max([len(r[1]) for r in rows] + [6])
        for name, family, desc, avail in rows:
            print(f"  {name:<{width}}  {family:<{fam}}  {avail:<11}  {desc}")
        if not rows:
            print(f"  (no {kind} match {args.pattern!r})")
    return 0


def _describe(kind: str, obj) -> tuple[str, str, str]:
    if kind == "extractors":
        spec = obj.spec
        missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
        avail = f"needs {', '.join(missing)}" if missing else "available"
        return spec.family, spec.description, avail
    if kind == "classifiers":
        return obj.family, obj.description, "available"
    if kind == "tasks":
        return "task", obj.description, "available"
    doc = (obj.__doc__ or "").replace("``", "").strip().splitlines()
    return "dataset", doc[0] if doc else "", "available"


def _cmd_perf(args) -> int:
    from featbench.perf import run_benchmarks

    rows = run_benchmarks(args.pattern, args.out, quick=args.quick)
    missed = [r for r in rows if r["passed"] is False]
    print(f"featbench: {len(rows)} measurements, {len(missed)} target(s) missed -> {Path(args.out) / 'perf.md'}")
    return 1 if missed else 0


def _print_answer(records: list[dict]) -> None:
    from featbench.reporting.answer import answer_lines

    for line in answer_lines(records):
        print(line)


def _cmd_compare(args) -> int:
    from featbench.comparison import compare_experiment, write_experiment
    from featbench.runner import run

    data, choices = compare_experiment(args.paths, extractors=args.extractors, tasks=args.tasks, quick=args.quick,
                                       random_weights=args.random_weights, name=args.name)
    out = Path(args.out) if args.out else Path("results") / data["name"]
    for label, choice in choices.items():
        kept = [t["label"] for t in data["extractors"]]
        print(f"featbench: {label}: images about {choice.side} px, {'colour' if choice.colour else 'gray'}; "
              f"extractors: {', '.join(kept)}")
        for kind, why in choice.left_out:
            print(f"  left out {kind}: {why}")
    from featbench.records import check_output_dir

    check_output_dir(out)
    experiment = write_experiment(data, out / "experiment.toml", choices)
    result = run(experiment, out, n_jobs=args.n_jobs, progress=args.progress)
    _print_answer(result.records)
    bad = [r for r in result.records if r["status"] != "ok"]
    print(f"featbench: {len(result.records)} cells ({result.computed} computed, {result.reused} reused"
          f"{f', {len(bad)} not ok' if bad else ''}) -> {result.report}; experiment: {experiment} "
          f"(featbench run {experiment} reproduces it)")
    return 0


def _cmd_extract(args, argv: list[str]) -> int:
    from featbench.export import command_line, experiment_for, extract, write_features

    exp = experiment_for(args.dataset, args.extractor, _params(args.params), config=args.config)
    result = extract(exp, args.split, n_jobs=args.n_jobs, progress=args.progress, command=command_line(argv))
    out, manifest = write_features(result, args.out)
    m = result.manifest
    print(f"featbench: {m['rows']} x {m['dim']} features of {m['extractor']['label']} on {m['dataset']['label']} "
          f"(fitted on {m['fitted_on']}{'; from the feature cache' if m['from_cache'] else ''}) -> {out}, {manifest}")
    return 0


def _cmd_report(args) -> int:
    from featbench.errors import ConfigError
    from featbench.records import read_cells
    from featbench.reporting import write_reports

    run_dir = Path(args.run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise ConfigError(f"{info_path} not found; 'featbench report' takes the output folder of a finished run")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{info_path} is not readable JSON ({type(exc).__name__}); run the experiment "
                          "again to rewrite it") from None
    wanted = info.get("cell_files") if isinstance(info, dict) else None
    if not isinstance(info, dict) or not isinstance(wanted if wanted is not None else info.get("cell_ids"), list):
        raise ConfigError(f"{info_path} is not a featbench run.json (a JSON object listing the run's cells); "
                          "run the experiment again to rewrite it")
    good, bad = read_cells(run_dir / "cells")
    if wanted is not None:
        records = [good[name] for name in wanted if isinstance(name, str) and name in good]
        absent = [str(name) for name in wanted if not (isinstance(name, str) and name in good)]
        n_wanted = len(wanted)
    else:  # run.json written before cell_files existed: match by cell id
        by_id = {rec["cell_id"]: rec for rec in good.values()}
        records = [by_id[c] for c in info["cell_ids"] if isinstance(c, str) and c in by_id]
        absent = [f"cell id {c}" for c in info["cell_ids"] if not (isinstance(c, str) and c in by_id)]
        n_wanted = len(info["cell_ids"])
    missing = n_wanted - len(records)
    if not records:
        raise ConfigError(f"{run_dir / 'cells'} has none of the {n_wanted} cells {info_path} lists"
                          f"{f' ({len(bad)} unreadable)' if bad else ''}; run the experiment again")
    info.setdefault("cells", {})
    if isinstance(info["cells"], dict):
        info["cells"]["unreadable"] = missing
        info["cells"]["unreadable_names"] = absent
    write_reports(run_dir, records, info)
    shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
    note = f" ({missing} cell(s) missing or unreadable, left out: {shown}; run the experiment again to " \
        "recompute them)" if missing else ""
    print(f"featbench: rewrote {run_dir / 'report.md'} from {len(records)} cells{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
