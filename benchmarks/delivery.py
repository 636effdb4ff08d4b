"""Run the project's delivery engine against the simulator with the delivery log on SQLite, PostgreSQL or nothing."""

from __future__ import annotations

import atexit
import contextlib
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from benchmarks.environment import define_connection
from line_simulator import DEFAULT_TOKEN

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterable, Iterator

    from line_oa.delivery_log.store import LedgerRow

LINE_CONN_ID = "bench_line"
POSTGRES_CONN_ID = "bench_pg"
MESSAGES = [{"type": "text", "text": "hi"}]
LEDGER_KINDS = ("sqlite", "postgres", "none")


class InMemoryLog:
    """A delivery log that keeps rows in a dict and writes nothing: the "no log" baseline.

    It has the members ``deliver_chunk`` and ``DeliveryEngine`` use in push mode (the engine's
    multicast path also needs ``mark_batch``/``settle_batch``/``rebatch``, which this class does not have).
    """

    def __init__(self, *, campaign_id: str, run_id: str):
        self.campaign_id = campaign_id
        self.run_id = run_id
        self._rows: dict[str, LedgerRow] = {}
        self.writes = 0
        self.abandoned = False
        self._epochs: dict[int, int] = {}

    @staticmethod
    def clock() -> datetime:
        return datetime.now(UTC)

    def add(self, rows: Iterable[LedgerRow]) -> int:
        added = 0
        for row in rows:
            if row.profile_id not in self._rows:
                self._rows[row.profile_id] = row
                added += 1
        return added

    def add_pending(self, chunk_index, profile_ids, line_user_ids, retry_keys, *, is_test=False) -> int:
        """Keep the chunk's ``pending`` rows, as ``DeliveryLog.add_pending`` writes them."""
        from line_oa.delivery_log.store import LedgerRow

        return self.add(
            LedgerRow(profile, user, "pending", chunk_index=chunk_index, retry_key=key, is_test=is_test)
            for profile, user, key in zip(profile_ids, line_user_ids, retry_keys, strict=True)
        )

    def refresh_statistics(self) -> None:
        """No planner here."""

    def upsert(self, rows: Iterable[LedgerRow]) -> int:
        for row in rows:
            self._rows[row.profile_id] = row
            self.writes += 1
        return self.writes

    def chunk_size_logged(self, chunk_index: int) -> int:
        return sum(1 for row in self._rows.values() if row.chunk_index == chunk_index)

    def rows_to_send(self, chunk_index: int) -> list[LedgerRow]:
        return [
            r
            for r in self._rows.values()
            if r.chunk_index == chunk_index and r.status in ("pending", "sending")
        ]

    def is_stale(self, row: LedgerRow, margin: timedelta = timedelta(0)) -> bool:
        return False

    def claim_chunk(self, chunk_index: int, owner: str) -> int:
        self._epochs[chunk_index] = self._epochs.get(chunk_index, 0) + 1
        return self._epochs[chunk_index]

    def mark_push(self, rows: list[LedgerRow]) -> int:
        now = self.clock().isoformat()
        for row in rows:
            row.dispatched_at = row.dispatched_at or now
        return len(rows)

    def unsent_count(self) -> int:
        return sum(1 for row in self._rows.values() if row.status in ("pending", "sending"))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        self._rows.clear()


_LOG_DATABASE: list[dict] = []


def log_database() -> dict:
    """Return the connection of this benchmark process's own PostgreSQL database for delivery logs.

    Created at first use and dropped at exit: runs left in a shared database grew its log table (2.2
    million rows, 1.1 million dead, 1.9 GB in ``test`` on 2026-12-06), and each later run was measured
    against that larger, bloated table instead of the one a campaign meets.
    """
    if not _LOG_DATABASE:
        from benchmarks.cdp_postgres import scratch_database

        scratch = scratch_database("line_oa_bench_log")
        _LOG_DATABASE.append(scratch.__enter__())
        atexit.register(scratch.__exit__, None, None, None)
    return _LOG_DATABASE[0]


def define_line_connection(base_url: str) -> None:
    """Define the ``bench_line`` (line_oa) and ``bench_http`` (http) connections at the simulator."""
    define_connection(LINE_CONN_ID, {"conn_type": "line_oa", "host": base_url, "password": DEFAULT_TOKEN})
    define_connection("bench_http", {"conn_type": "http", "host": base_url})


def open_ledger(kind: str, work: pathlib.Path, campaign_id: str):
    """Open a fresh run's delivery log of ``kind`` (``sqlite`` file, ``postgres`` database, or ``none``)."""
    run_id = f"bench-{uuid.uuid4().hex[:12]}"
    if kind == "none":
        return InMemoryLog(campaign_id=campaign_id, run_id=run_id)
    from line_oa.delivery_log.store import DeliveryLog, ledger_hook, sqlite_file_hook

    if kind == "sqlite":
        hook = sqlite_file_hook(work / f"delivery_log-{run_id}.db")
    elif kind == "postgres":
        if not _LOG_DATABASE:  # the first PostgreSQL log: only cases that use one need the server
            define_connection(POSTGRES_CONN_ID, log_database())
        hook = ledger_hook(POSTGRES_CONN_ID)
    else:
        raise ValueError(f"unknown delivery log kind {kind!r}; use one of {LEDGER_KINDS}")
    return DeliveryLog(hook, campaign_id=campaign_id, run_id=run_id)


@dataclass
class EngineOutcome:
    """One engine run: recipients and requests, wall time of ``deliver_chunk`` and the engine's send time."""

    recipients: int
    sent: int
    requests: int
    retries: int
    wall_seconds: float
    send_seconds: float
    failed: dict
    registration_seconds: float | None = None
    cpu_seconds: float | None = None  # this process's CPU during the timed part (the log's writer thread too)
    server_cpu_seconds: float | None = None  # the PostgreSQL log's server process (None: no such server here)

    @property
    def per_second(self) -> float:
        return self.sent / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def requests_per_send_second(self) -> float:
        return self.requests / self.send_seconds if self.send_seconds else 0.0


def run_engine(
    *,
    recipients: list[str],
    ledger,
    mode: str,
    rate: float | None,
    max_in_flight: int = 128,
    registered: bool = False,
) -> EngineOutcome:
    """Deliver ``recipients`` as one chunk with ``deliver_chunk`` and the default retry policy; time it.

    :param registered: register the chunk in the log first, untimed, as ``chunk_profiles`` does in a
        DAG run (``registration_seconds`` says how long that took); otherwise ``deliver_chunk``
        registers it while it sends, as for a chunk the log has never seen.
    """
    from line_oa.delivery.chunk import deliver_chunk, register_pending
    from line_oa.delivery.results import RetryPolicy
    from line_oa.integration.hooks import LineOAHook

    hook = LineOAHook(line_oa_conn_id=LINE_CONN_ID)
    people = [(f"p{n:08d}", user_id) for n, user_id in enumerate(recipients)]
    policy = RetryPolicy()  # the campaign file's default: 5 attempts, 1-60 s backoff
    registration = None
    try:
        if registered:
            started = time.perf_counter()
            register_pending(ledger, 0, [p for p, _ in people], [u for _, u in people])  # as chunk_profiles
            ledger.refresh_statistics()  # as chunk_profiles does: else PostgreSQL's planner may walk the run
            registration = time.perf_counter() - started
        server, cpu, started = server_cpu_seconds(ledger), time.process_time(), time.perf_counter()
        result = deliver_chunk(
            client_factory=lambda: hook.async_client(max_in_flight=max_in_flight),
            ledger=ledger,
            chunk_index=0,
            recipients=people,
            messages=MESSAGES,
            mode=mode,
            policy=policy,
            rate=rate,
            max_in_flight=max_in_flight,
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_after = server_cpu_seconds(ledger)
        server = None if server is None or server_after is None else server_after - server
    finally:
        hook.close()
        ledger.close()
    return EngineOutcome(
        recipients=len(recipients),
        sent=result.sent,
        requests=result.requests,
        retries=result.retries,
        wall_seconds=wall,
        send_seconds=result.duration_seconds,
        failed=dict(result.failed),
        registration_seconds=registration,
        cpu_seconds=cpu,
        server_cpu_seconds=server,
    )


def server_cpu_seconds(ledger) -> float | None:
    """CPU seconds the PostgreSQL log's server process has used so far (None for another log, or for a
    server that is not on this machine: read from ``/proc``)."""
    if getattr(ledger, "dialect", None) != "postgres":
        return None
    cursor = ledger._conn.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    ledger._conn.commit()
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
