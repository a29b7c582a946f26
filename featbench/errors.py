"""Errors a user can act on.

Every :class:`FeatbenchError` is shown by the command line as one line and exit
code 2, without a traceback (``--debug`` shows it). Its message names the file,
key or value at fault and what would be accepted.
"""

from __future__ import annotations


class FeatbenchError(Exception):
    """Base class of errors caused by the user's input, not by a bug."""


class ConfigError(FeatbenchError, ValueError):
    """An experiment file or parameter is invalid."""


class DatasetError(FeatbenchError, ValueError):
    """A dataset cannot be found or read."""


class ImageError(FeatbenchError, ValueError):
    """An image array has a sample type or shape that cannot be read as an image."""


class UnknownNameError(FeatbenchError, KeyError):
    """A registry lookup found no entry of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsUnavailableError(FeatbenchError):
    """Pretrained weights cannot be found offline nor downloaded.

    The runner records the affected rows as ``skipped: <message>``.
    """
