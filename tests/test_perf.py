"""The perf harness: ratios, targets, reports (the benchmarks themselves run in `make perf`)."""

from __future__ import annotations

import pandas as pd

from featbench.perf import BENCHMARKS, Measurement, benchmark, run_benchmarks


def test_measurement_ratio_and_target():
    m = Measurement("b", "featbench", "opencv", value=1.1, reference_value=1.0, unit="ms/img", target="<= 1.2")
    assert abs(m.ratio - 1.1) < 1e-12 and m.passed is True
    assert Measurement("b", "x", "y", 1.3, 1.0, "ms", target="<= 1.2").passed is False
    assert Measurement("b", "x", "y", 30.0, 1.0, "x", target=">= 20").passed is True
    assert Measurement("b", "x", "y", 1.0, 1.0, "x").passed is None


def test_run_benchmarks_writes_reports_and_keeps_other_rows(tmp_path):
    @benchmark("test-fast")
    def fast(quick):
        return [Measurement("test-fast", "a", "b", 2.0, 1.0, "s", target="<= 1.5", note="slow on purpose")]

    @benchmark("test-broken")
    def broken(quick):
        raise RuntimeError("no such device")

    try:
        rows = run_benchmarks("test-*", tmp_path, quick=True)
        assert [r["passed"] for r in rows] == [False, False]
        assert "failed: RuntimeError: no such device" in rows[0]["note"]
        md = (tmp_path / "perf.md").read_text()
        assert "**NO**" in md and "slow on purpose" in md
        run_benchmarks("test-fast", tmp_path, quick=True)
        df = pd.read_csv(tmp_path / "perf.csv")
        assert sorted(df["benchmark"]) == ["test-broken", "test-fast"]
        assert "(earlier run)" in df.set_index("benchmark").loc["test-broken", "note"]
    finally:
        BENCHMARKS.pop("test-fast", None)
        BENCHMARKS.pop("test-broken", None)
