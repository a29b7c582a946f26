"""``one_thread`` limits every BLAS / OpenMP pool to one thread inside the block and restores them after,
as ``threadpool_limits(limits=1)`` does, and notices modules imported since its last use."""

from __future__ import annotations

import sys

from threadpoolctl import threadpool_info

import featbench._threads as threads


def _counts():
    return {(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()}


def test_one_thread_limits_every_pool_and_restores_them():
    import scipy.linalg  # noqa: F401  (its own BLAS, beside numpy's)

    before = _counts()
    assert before, "no BLAS/OpenMP library found to limit"
    with threads.one_thread():
        inside = _counts()
    assert set(inside) == set(before) and set(inside.values()) == {1}
    assert _counts() == before


def test_a_module_imported_since_the_last_use_renews_the_controller(monkeypatch):
    with threads.one_thread():
        pass
    first = threads._controller
    with threads.one_thread():
        pass
    assert threads._controller is first  # nothing imported: the same controller, no new scan
    monkeypatch.setitem(sys.modules, "featbench_test_newly_imported", sys)
    with threads.one_thread():
        pass
    assert threads._controller is not first
