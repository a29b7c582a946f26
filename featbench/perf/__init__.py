"""``make perf``: speed and memory as ratios against a reference measured in the same run.

A benchmark is a function registered with :func:`benchmark`; it returns
:class:`Measurement` rows. Each row compares a featbench number with a reference
number taken on the same machine in the same process run (e.g. featbench's HOG
against a plain OpenCV loop on the same images), so the ratio means something on
any machine; absolute numbers are reported beside it. ``target`` states what the
ratio must satisfy; ``featbench perf`` writes ``results/perf/perf.csv`` and
``perf.md`` and exits 1 if a target is missed.
"""

from __future__ import annotations

import fnmatch
import importlib
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Measurement", "benchmark", "run_benchmarks", "best_time", "BENCHMARKS"]

#: name → function(quick: bool) -> list[Measurement]
BENCHMARKS: dict[str, Callable[[bool], list[Measurement]]] = {}
_MODULES = ["featbench.perf.classical", "featbench.perf.haar", "featbench.perf.deep", "featbench.perf.retrieval",
            "featbench.perf.classifiers", "featbench.perf.texture",
            "featbench.perf.color"]


@dataclass
class Measurement:
    """One comparison: ``ratio = value / reference_value`` (see ``higher_is_better``).

    ``target`` is the bound the ratio must meet, e.g. ``<= 1.2`` for a time ratio or
    ``>= 20`` for a speed-up; None when the row is informative only.
    """

    benchmark: str
    subject: str
    reference: str
    value: float
    reference_value: float
    unit: str
    target: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.reference_value if self.reference_value else float("nan")

    @property
    def passed(self) -> bool | None:
        if not self.target:
            return None
        op, bound = self.target.split()
        return {"<=": self.ratio <= float(bound), ">=": self.ratio >= float(bound)}[op]

    def row(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 4), "passed": self.passed}


def benchmark(name: str) -> Callable:
    """Decorator registering a benchmark function ``f(quick: bool) -> list[Measurement]``."""

    def deco(fn):
        BENCHMARKS[name] = fn
        return fn

    return deco


def best_time(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.2) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeats`` rounds (after one warm-up call).

    The minimum is the least disturbed by other processes (timeit's advice).
    """
    fn()
    best = float("inf")
    spent = 0.0
    rounds = 0
    while rounds < repeats or spent < min_time:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        rounds += 1
        if rounds >= 50:
            break
    return best


def _load() -> None:
    for module in _MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def _num(x, spec: str) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "—"
    return "—" if x != x else format(x, spec)


def run_benchmarks(pattern: str = "*", out: str | Path = "results/perf", quick: bool = False) -> list[dict]:
    """Run the benchmarks matching ``pattern``; write ``perf.csv`` and ``perf.md`` into ``out``."""
    import pandas as pd

    from featbench._io import atomic_write_text
    from featbench.runner import environment_info

    _load()
    rows = []
    for name in sorted(BENCHMARKS):
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        print(f"perf: {name} ...", flush=True)
        try:
            rows += [m.row() for m in BENCHMARKS[name](quick)]
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append({"benchmark": name, "subject": "", "reference": "", "value": float("nan"),
                         "reference_value": float("nan"), "unit": "", "target": "runs",
                         "note": f"failed: {type(exc).__name__}: {exc}", "ratio": float("nan"), "passed": False})
    out = Path(out)
    ran = {r["benchmark"] for r in rows}
    if (out / "perf.csv").is_file():  # keep the rows of benchmarks not run this time
        old = pd.read_csv(out / "perf.csv", keep_default_na=False, na_values=[""])
        old = old[~old["benchmark"].isin(ran)]
        kept = old.astype(object).where(old.notna(), None).to_dict("records")
        for r in kept:
            r["passed"] = None if r["passed"] in (None, "") else str(r["passed"]) == "True"
            r["note"] = (r["note"] or "") + ("" if "(earlier run)" in (r["note"] or "") else " (earlier run)")
        rows = sorted(kept + rows, key=lambda r: r["benchmark"])
    df = pd.DataFrame(rows)
    atomic_write_text(out / "perf.csv", df.to_csv(index=False))
    env = environment_info()
    lines = [
        "# featbench perf",
        "",
        f"Measured on {env['cpu']} ({env['cores']} cores), Python {env['python']}, "
        f"commit {env['git_commit'] or '?'}{' (quick mode)' if quick else ''}. Every ratio compares two "
        "numbers measured in this same run on this machine; *target* is what the ratio must satisfy.",
        "",
        "| benchmark | subject | value | reference | reference value | unit | ratio | target | ok | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = {True: "yes", False: "**NO**", None: ""}[r["passed"]]
        r = {**r, "target": r["target"] or "", "note": r["note"] or ""}
        lines.append(f"| {r['benchmark']} | {r['subject']} | {_num(r['value'], '.4g')} | {r['reference']} | "
                     f"{_num(r['reference_value'], '.4g')} | {r['unit']} | {_num(r['ratio'], '.3g')} | "
                     f"{r['target']} | {ok} | {r['note']} |")
    atomic_write_text(out / "perf.md", "\n".join(lines) + "\n")
    return rows
