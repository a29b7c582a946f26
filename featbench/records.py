"""The cell store: one JSON record per finished cell, written atomically, read back for resume and reports.

A cell is one (dataset, extractor, classifier, split); its record holds the metrics, the costs and a
``status`` (``ok`` / ``skipped: why`` / ``failed: why``). A cell file that cannot be read (truncated by a
kill, garbage, not a JSON object) counts as missing: ``run`` recomputes it, ``report`` counts it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from featbench._io import atomic_write_json
from featbench.errors import ConfigError

__all__ = ["read_cell", "write_cell", "read_cells", "check_output_dir", "REPORT_FILES"]

#: Files a run writes at the top of its output folder.
REPORT_FILES = ("results.csv", "summary.csv", "report.md", "run.json")


def read_cell(path: Path) -> dict | None:
    """The record in ``path``, or None when it is missing or unreadable (not a JSON object)."""
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "cell_id" in rec and "status" in rec else None


def write_cell(path: Path, record: dict) -> None:
    """Write one record atomically: a reader never sees half of it."""
    atomic_write_json(path, record)


def read_cells(cells_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """Every readable record in ``cells_dir`` by file name, and the names of the unreadable ones."""
    good: dict[str, dict] = {}
    bad: list[str] = []
    if not cells_dir.is_dir():
        return good, bad
    for path in sorted(cells_dir.glob("*.json")):
        rec = read_cell(path)
        if rec is None:
            bad.append(path.name)
        else:
            good[path.name] = rec
    return good, bad


def check_output_dir(out_dir: Path) -> None:
    """Make sure a run can write all it produces into ``out_dir``, before its first cell is computed.

    Raises
    ------
    ConfigError
        One line naming the path and why it cannot be written.
    """
    out_dir = Path(out_dir)
    cells = out_dir / "cells"
    for path in (out_dir, cells, out_dir / "plots"):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output path {str(path)!r} is a file, not a folder; choose another --out "
                              "or move the file away")
    for name in REPORT_FILES:
        path = out_dir / name
        if path.is_dir():
            raise ConfigError(f"output path {str(path)!r} is a folder where the run writes a file; "
                              "choose another --out or move the folder away")
    for path in (cells, out_dir / "plots"):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create output folder {str(path)!r}: {exc.strerror or exc}; "
                              "choose a writable --out") from None
    for path in (out_dir, cells, out_dir / "plots"):
        try:
            fd, tmp = tempfile.mkstemp(prefix=".featbench-write-test.", dir=path)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise ConfigError(f"cannot write in output folder {str(path)!r}: {exc.strerror or exc}; "
                              "choose a writable --out") from None
