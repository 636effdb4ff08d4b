"""Judge an ``airflow dags test`` run by the state Airflow recorded, not by the command's exit status.

``airflow dags test`` runs the tasks in its own process. When that process staged or read chunk files
(Arrow), its normal interpreter exit can abort with SIGABRT after the run was recorded (Arrow's thread
pool torn down with the interpreter, apache/arrow#34314; docs/operations.md). The run, its delivery log
and its report are complete then, so the demo and the benchmarks read the DAG run's recorded state and
say what the exit status was when the two disagree.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathlib

#: How a process killed by SIGABRT shows: ``subprocess`` gives -6, a shell gives 128 + 6.
ABORT_STATUSES = frozenset({-signal.SIGABRT, 128 + signal.SIGABRT})


@dataclass(frozen=True)
class RunOutcome:
    """What became of one DAG run: whether it succeeded, and a sentence for the user."""

    succeeded: bool
    message: str


def recorded_run_state(airflow_db: pathlib.Path, dag_id: str) -> str | None:
    """Return the state of the DAG's latest run in a SQLite metadata database (None: no run recorded)."""
    if not airflow_db.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True)) as conn:
        try:
            row = conn.execute(
                "SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
        except sqlite3.OperationalError:  # no dag_run table: the database was never migrated
            return None
    return row[0] if row else None


def run_outcome(returncode: int, state: str | None, command: str = "airflow dags test") -> RunOutcome:
    """Judge a run by its recorded state; explain an exit status that disagrees with it.

    :param command: what ran the DAG, as the messages name it.
    """
    if state == "success":
        if returncode == 0:
            return RunOutcome(True, "succeeded")
        if returncode in ABORT_STATUSES:
            return RunOutcome(
                True,
                f"succeeded (recorded state success); `{command}` then aborted at its exit "
                f"(status {returncode}, SIGABRT: Arrow's thread pool at interpreter exit, "
                "docs/operations.md), after the run was complete",
            )
        return RunOutcome(
            True, f"succeeded (recorded state success), but `{command}` exited with status {returncode}"
        )
    if state is None:
        return RunOutcome(False, f"FAILED: no DAG run was recorded (`{command}` exit status {returncode})")
    return RunOutcome(False, f"FAILED: recorded state {state} (`{command}` exit status {returncode})")
