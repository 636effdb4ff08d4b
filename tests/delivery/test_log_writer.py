"""The log writer's two paths: SQLite writes on the event loop while the log is free, on its thread otherwise.

A write that cannot start at once (another connection holds SQLite's write lock: a parallel chunk task,
a reader's checkpoint, an auditor's tool) goes to the writer thread, which waits for the lock; every
later write of the chunk follows it there until the thread has caught up. Generated sequences of lock
windows check that no write is lost, reordered into a double send, or turned into a failed chunk.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from line_oa.delivery.results import RetryPolicy
from line_oa.delivery_log.store import DeliveryLog, LogBusy, sqlite_file_hook

from .test_engine import recipients, run_chunk

RECIPIENTS = 400
QUICK = RetryPolicy(max_attempts=6, initial_backoff_seconds=0.01, max_backoff_seconds=0.05)
_runs = itertools.count()

lock_windows = st.lists(
    st.tuples(st.integers(0, RECIPIENTS - 1), st.integers(5, 300)),  # (after k requests, held ms)
    min_size=1,
    max_size=3,
)


class _LockHolder:
    """Hold SQLite's write lock from another connection for a while, as a parallel task's commit does."""

    def __init__(self, path: str):
        self.path = path
        self.threads: list[threading.Thread] = []

    def hold(self, milliseconds: int) -> None:
        taken = threading.Event()

        def holder() -> None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
            conn.execute("BEGIN EXCLUSIVE")
            taken.set()
            time.sleep(milliseconds / 1000)
            conn.execute("COMMIT")
            conn.close()

        thread = threading.Thread(target=holder, daemon=True)
        thread.start()
        taken.wait(5)
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)


@pytest.mark.timeout(120)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=lock_windows, in_flight=st.sampled_from([8, 32]))
def test_a_sqlite_log_locked_by_others_mid_chunk_delays_writes_but_loses_none(
    line_conn, sim, tmp_path, windows, in_flight
):
    run = next(_runs)
    path = tmp_path / "delivery_log.db"
    ledger = DeliveryLog(sqlite_file_hook(path), campaign_id="writer", run_id=f"run-{run}")
    people = recipients(RECIPIENTS, start=run * RECIPIENTS)
    locks = _LockHolder(str(path))
    at = dict(windows)

    def maybe_lock(requests: int) -> None:  # called on the event loop before each request leaves
        if requests in at:
            locks.hold(at.pop(requests))

    try:
        result = run_chunk(
            line_conn,
            ledger,
            people,
            mode="push",
            policy=QUICK,
            max_in_flight=in_flight,
            on_request=maybe_lock,
        )
    finally:
        locks.join()
        ledger.close()
    assert (result.sent, dict(result.failed)) == (RECIPIENTS, {})
    counts = sim.admin.delivery_counts()
    wanted = {user for _, user in people}
    assert {user: n for user, n in counts.items() if user in wanted and n != 1} == {}
    assert wanted <= set(counts), "a recipient was never delivered"
    log = DeliveryLog(sqlite_file_hook(path), campaign_id="writer", run_id=f"run-{run}")
    try:
        rows = list(log.rows())
        assert {row.status for row in rows} == {"sent"}, "the log lost an outcome the chunk reported"
        assert {row.line_user_id for row in rows} == wanted
    finally:
        log.close()


def test_a_transaction_that_would_wait_refuses_at_once_and_leaves_the_log_as_it_was(tmp_path):
    path = tmp_path / "delivery_log.db"
    ledger = DeliveryLog(sqlite_file_hook(path), campaign_id="writer", run_id="run-busy")
    try:
        waits = ledger._conn.execute("PRAGMA busy_timeout").fetchone()[0]
        with ledger.transaction_now():
            pass  # free: it runs
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"), ledger.transaction_now():
            pass
        assert time.monotonic() - started < 1.0, "it waited for the lock instead of refusing"
        other.execute("COMMIT")
        other.close()
        assert ledger._conn.execute("PRAGMA busy_timeout").fetchone()[0] == waits
        with ledger.transaction(), pytest.raises(LogBusy), ledger.transaction_now():  # one is open
            pass
    finally:
        ledger.close()
