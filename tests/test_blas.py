"""BLAS on one thread while indexing describes images, and back as it was after."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from lookalike.blas import single_threaded_blas


def _blas_threads() -> set[int]:
    """The thread counts of numpy's own BLAS (other packages may bring theirs)."""
    np.ones((4, 4)) @ np.ones((4, 4))  # loaded
    return {
        int(i["num_threads"])
        for i in threadpool_info()
        if i["user_api"] == "blas" and "numpy" in str(i.get("filepath", ""))
    }


@pytest.fixture()
def threads() -> set[int]:
    found = _blas_threads()
    if not found or min(found) < 2:
        pytest.skip("numpy's BLAS runs on one thread here already (or is not found)")
    return found


def test_blas_runs_on_one_thread_inside_nested_uses_and_as_before_after(
    threads: set[int],
) -> None:
    with single_threaded_blas():
        assert _blas_threads() == {1}
        with single_threaded_blas():
            assert _blas_threads() == {1}
        assert _blas_threads() == {1}  # the outer use is still inside
    assert _blas_threads() == threads


def test_a_second_thread_shares_the_first_ones_limit_and_changes_nothing(
    threads: set[int],
) -> None:
    entered, leave, seen = threading.Event(), threading.Event(), []

    def other() -> None:
        with single_threaded_blas():
            seen.append(_blas_threads())
            entered.set()
            assert leave.wait(10)
        seen.append(_blas_threads())

    # The main thread first: the other comes and goes under its limit.
    with single_threaded_blas():
        worker = threading.Thread(target=other)
        worker.start()
        assert entered.wait(10)
        leave.set()
        worker.join()
        assert _blas_threads() == {1}
    assert seen == [{1}, {1}] and _blas_threads() == threads

    # The other first: its limit is lifted when it leaves, not left behind.
    entered.clear()
    leave.clear()
    seen.clear()
    worker = threading.Thread(target=other)
    worker.start()
    assert entered.wait(10)
    with single_threaded_blas():
        assert _blas_threads() == {1}
        leave.set()
        worker.join()
    assert seen == [{1}, threads] and _blas_threads() == threads
