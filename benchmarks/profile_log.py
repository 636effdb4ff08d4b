"""Time the PostgreSQL delivery log's statements during one chunk: ``python -m benchmarks.profile_log [push|multicast] [N]``.

Used to explain what paces the sends on the PostgreSQL log (benchmarks/analysis.md, eighth session):
the chunk is registered first, as ``chunk_profiles`` does, then delivered against the simulator at
LINE's limits and the project's pacing, with the log's connection wrapped so that every statement and
commit is timed. Prints the send phase, the statements by kind (count, total, median, 90th
percentile), the share of the log's row updates PostgreSQL kept in their page (HOT) and the table's
bytes a row. Runs in the benchmarks' own PostgreSQL database (``benchmarks.delivery.log_database``).
"""

from __future__ import annotations

import collections
import shutil
import sys
import time
from typing import Any

from benchmarks.environment import prepare_airflow_home


class _TimedCursor:
    def __init__(self, cursor: Any, times: dict[str, list[float]]):
        self._cursor, self._times = cursor, times

    def execute(self, sql: str, params: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return self._cursor.execute(sql, params)
        finally:
            kind = sql.split(None, 1)[0].upper() + (" (claim)" if "line_delivery_claim" in sql else "")
            self._times[kind].append(time.perf_counter() - started)

    def executemany(self, sql: str, params_seq: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._cursor.executemany(sql, params_seq)
        finally:
            self._times[sql.split(None, 1)[0].upper() + " (many)"].append(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _TimedConnection:
    def __init__(self, conn: Any, times: dict[str, list[float]]):
        self._conn, self._times = conn, times

    def cursor(self, *args: Any, **kwargs: Any) -> _TimedCursor:
        return _TimedCursor(self._conn.cursor(*args, **kwargs), self._times)

    def commit(self) -> None:
        started = time.perf_counter()
        self._conn.commit()
        self._times["COMMIT"].append(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _table_figures(database: dict) -> tuple[int, int, float, float]:
    """Return the log table's row updates, those kept in their page (HOT), heap and index bytes a row."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user=database["login"], dbname=database["schema"])
    try:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT pg_relation_size('line_delivery_log'), pg_indexes_size('line_delivery_log'), "
            "(SELECT COUNT(*) FROM line_delivery_log)"
        )
        heap, indexes, rows = cursor.fetchone()
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'line_delivery_log'"
        )
        updates, in_page = cursor.fetchone()
    finally:
        conn.close()
    return updates, in_page, heap / rows, indexes / rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode = argv[0] if argv else "multicast"
    count = int(argv[1]) if len(argv) > 1 else (50_000 if mode == "multicast" else 10_000)
    work = prepare_airflow_home()
    from benchmarks import delivery, senders
    from benchmarks.push import simulator_config
    from line_oa.delivery.ratelimit import channel_share
    from line_simulator.testing import SimulatorProcess

    times: dict[str, list[float]] = collections.defaultdict(list)
    with SimulatorProcess(simulator_config(2000, 200)) as sim:
        delivery.define_line_connection(sim.base_url)
        ledger = delivery.open_ledger("postgres", work, f"profile_log_{mode}")
        database = delivery.log_database()  # this process's own: its counts start at zero
        analyze = ledger.refresh_statistics

        def timed_from_now() -> None:  # the end of registration (untimed, as in run_engine): time the rest
            analyze()
            ledger._conn = _TimedConnection(ledger._conn, times)

        ledger.refresh_statistics = timed_from_now
        outcome = delivery.run_engine(
            recipients=senders.user_ids(count, salt=4242),
            ledger=ledger,
            mode=mode,
            rate=channel_share(200 if mode == "multicast" else 2000),
            registered=True,
        )
    time.sleep(1.5)  # the log's server process reports its counts as it ends
    updates, in_page, heap, indexes = _table_figures(database)
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"{mode}: {outcome.sent} sent, {outcome.requests} requests, send phase {outcome.send_seconds:.3f} s"
    )
    for kind, spans in sorted(times.items(), key=lambda item: -sum(item[1])):
        spans.sort()
        print(f"  {kind:16s} {len(spans):6d} x, {sum(spans):7.3f} s in all, median "
              f"{spans[len(spans) // 2] * 1000:6.2f} ms, p90 {spans[int(len(spans) * 0.9)] * 1000:6.2f} ms")  # fmt: skip
    share = f"{in_page / updates:.1%}" if updates else "none read"
    print(f"  row updates kept in their page (HOT): {in_page} of {updates} ({share})")
    print(f"  line_delivery_log: heap {heap:.0f} B and indexes {indexes:.0f} B a row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
