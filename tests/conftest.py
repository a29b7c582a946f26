"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def featbench_data() -> Path:
    """The local data folder named by ``FEATBENCH_DATA`` (see ../shared/data/SOURCES.md).

    Skips the test when it is not set or not a folder; in CI (``CI=true``) that is a
    failure instead, so real-data tests cannot silently stop running.
    """
    value = os.environ.get("FEATBENCH_DATA")
    if not value:
        problem = "FEATBENCH_DATA is not set (point it at the local data folder, e.g. ../shared/data)"
    elif not Path(value).expanduser().is_dir():
        problem = f"FEATBENCH_DATA={value!r} is not a folder"
    else:
        return Path(value).expanduser()
    skip_unless_ci(problem)


def skip_unless_ci(reason: str) -> None:
    """Skip with ``reason`` on a user's machine; fail in CI (``CI=true``), where real-data tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the real-data tests")
    pytest.skip(reason)
