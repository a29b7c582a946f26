"""Peak resident memory of a piece of work, not of the whole process's life.

On Linux the kernel keeps a process's peak resident set (``VmHWM`` in ``/proc/self/status``) and lets
the process reset it (``echo 5 > /proc/self/clear_refs``, Linux ≥ 4.0): :class:`PeakMemory` resets it
when the work starts and reads it when the work ends, so a cell's figure is the peak of the work it did
(plus what the process already held), whatever ran in that process before. Where the reset is not
possible (other systems, a locked-down ``/proc``), the figure is the process's lifetime peak
(``getrusage``) and :attr:`PeakMemory.lifetime` says so.
"""

from __future__ import annotations

import resource
import sys

__all__ = ["PeakMemory", "peak_rss_mb", "reset_peak_rss"]


def _hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set to its current size; False where that is not possible."""
    if _hwm_kib() is None:
        return False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: since the last :func:`reset_peak_rss` where the system
    supports it, else since the process started."""
    kib = _hwm_kib()
    if kib is not None:
        return kib / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class PeakMemory:
    """Context manager: the peak resident memory (MiB) of this process while the block ran.

    >>> with PeakMemory() as mem:
    ...     work()
    >>> mem.mb, mem.lifetime
    """

    def __enter__(self) -> PeakMemory:
        self.lifetime = not reset_peak_rss()
        self.mb = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.mb = round(peak_rss_mb(), 1)
