"""One BLAS / OpenMP thread for a block of work, at the cost of a context switch.

``threadpoolctl.threadpool_limits`` inspects every shared library of the process on each use: about 8 ms
with TensorFlow loaded, paid by each of the thousands of small classifier searches of a run. A
:class:`threadpoolctl.ThreadpoolController` inspects them once and limits them in microseconds (the use
threadpoolctl recommends for repeated limits); it is made again when modules were imported since, so a
library loaded later is limited too.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager

from threadpoolctl import ThreadpoolController

__all__ = ["one_thread"]

_controller: ThreadpoolController | None = None
_modules_seen = -1


def one_thread() -> AbstractContextManager:
    """A context in which BLAS and OpenMP use one thread (as ``threadpool_limits(limits=1)``)."""
    global _controller, _modules_seen
    if _controller is None or len(sys.modules) != _modules_seen:
        _controller = ThreadpoolController()
        _modules_seen = len(sys.modules)
    return _controller.limit(limits=1)
