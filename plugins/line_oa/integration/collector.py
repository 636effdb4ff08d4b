"""Spare Python's cyclic garbage collector the objects a task process already held when a task began.

A full collection walks every object the process tracks. In an ``airflow dags test`` process, or any
worker that has not frozen what it loaded, that is Airflow's objects, the DAG's and what earlier tasks
left, and one full collection took 0.39-0.46 s there (a fast machine, benchmarks/analysis.md,
twenty-first session). A task that builds a chunk (50,000 rows, their requests, their outcomes) sets
off one or more of them: five in the push tasks of a 110,000-profile run, at the chunk's planning,
on the log's writer thread during the sends (every thread waits then) and at the chunk's last writes.

``young_objects_only`` moves the objects that exist when the task starts into the permanent
generation (``gc.freeze``), which collections skip, and puts them back when it ends
(``gc.unfreeze``): the task's own objects are collected as before, cyclic garbage among the older ones
is collected after the task, and nothing stays uncollected. Where the permanent generation already
holds objects it does nothing, since unfreezing would release those too: Airflow's LocalExecutor and
Celery workers freeze what they loaded before they fork (with the ``fork`` start method, Linux's
default), so their task processes inherit a frozen generation and already have what this gives.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def young_objects_only() -> Iterator[None]:
    """Freeze the process's objects for the duration (unless something froze objects already)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def collecting_young_objects_only(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` inside ``young_objects_only`` (a decorator for a task's callable)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with young_objects_only():
            return function(*args, **kwargs)

    return wrapper
