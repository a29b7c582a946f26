"""Where local data lives: ``$FEATBENCH_DATA``, read in one place for the whole package.

Datasets, deep-extractor weights and the perf harness all ask :func:`featbench_data`;
this module imports nothing of featbench but its errors, so any stage may use it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from featbench.errors import DatasetError

__all__ = ["expand_path", "featbench_data"]

_ENV_REF = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand_path(value: str, what: str) -> str:
    """``~`` and ``$VAR`` / ``${VAR}`` expansion of a user-given path.

    Parameters
    ----------
    value : str
        The path as the user wrote it.
    what : str
        What the path is, for the error message (e.g. ``"dataset folder"``).

    Returns
    -------
    str
        The expanded path.

    Raises
    ------
    DatasetError
        If ``value`` names an environment variable that is not set (the message names it).
    """
    for braced, plain in _ENV_REF.findall(value):
        var = braced or plain
        if var not in os.environ:
            raise DatasetError(
                f"{what} '{value}' uses the environment variable ${var}, which is not set; "
                f"set {var} or give the full path"
            )
    return os.path.expanduser(os.path.expandvars(value))


def featbench_data() -> Path | None:
    """The folder named by ``$FEATBENCH_DATA`` (``~`` and ``$VARS`` expanded), or None if unset or empty.

    Returns
    -------
    Path or None

    Raises
    ------
    DatasetError
        If its value names an environment variable that is not set.
    """
    value = os.environ.get("FEATBENCH_DATA")
    if not value:
        return None
    return Path(expand_path(value, "FEATBENCH_DATA"))
