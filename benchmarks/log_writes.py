"""Case ``log_writes``: what writing a chunk's push outcomes costs the task and the PostgreSQL server.

20,000 outcomes (``sent``, a request id, a time), written in 40 batches of 500 as the push engine writes
them, two ways side by side on fresh runs of one PostgreSQL log: the log's own ``upsert`` (one
statement a batch, from a JSON array) and one statement a row (psycopg's pipelined ``executemany`` of
``INSERT … VALUES … ON CONFLICT DO UPDATE``, as the log wrote them before). CPU is counted for the
benchmark's process and for its server process (read from ``/proc``, so only for a server on this
machine), which a wall time on a shared machine does not show.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import delivery, senders
from benchmarks.measure import median, ratio, rotated

OUTCOMES = 20_000
BATCH = 500  # the push engine's FLUSH_EVERY_ROWS
WAYS = ("log upsert", "statement a row")


def run(work, reps: int = 3) -> dict[str, Any]:
    runs = []
    for rep in range(reps):
        for way in rotated(list(WAYS), rep):
            row = _one(work, way, salt=400 + rep)
            row["rep"] = rep
            print(f"  log_writes rep {rep} {way:15s}: wall {row['wall_seconds']:.3f} s, task CPU "
                  f"{row['task_cpu_seconds']:.3f} s, server CPU {row['server_cpu_seconds']} s", flush=True)  # fmt: skip
            runs.append(row)
    table = []
    for way in WAYS:
        rows = [r for r in runs if r["way"] == way]
        table.append({
            "way": way,
            "runs": len(rows),
            **{f"{k}_median": median(r[k] for r in rows)
               for k in ("wall_seconds", "task_cpu_seconds", "server_cpu_seconds")},
            **{f"{k}_all": [r[k] for r in rows] for k in ("wall_seconds", "task_cpu_seconds", "server_cpu_seconds")},
        })  # fmt: skip
    cpu = {
        r["way"]: sum(r[f"{k}_median"] or 0 for k in ("task_cpu_seconds", "server_cpu_seconds"))
        for r in table
    }
    return {
        "settings": {"outcomes": OUTCOMES, "batch": BATCH, "repetitions": reps, "log": "postgres"},
        "runs": runs,
        "table": table,
        "cpu_ratio": ratio(cpu["statement a row"], cpu["log upsert"]),
        "targets": [],
    }


def _one(work, way: str, *, salt: int) -> dict[str, Any]:
    from line_oa.delivery.chunk import register_pending

    ledger = delivery.open_ledger("postgres", work, "bench_log_writes")
    try:
        profiles = [f"p{n:08d}" for n in range(OUTCOMES)]
        register_pending(ledger, 0, profiles, senders.user_ids(OUTCOMES, salt=salt))
        ledger.refresh_statistics()
        ledger.claim_chunk(0, "bench")
        rows = ledger.rows_to_send(0)
        for row in rows:
            row.status, row.http_status, row.attempts = "sent", 200, 1
            row.line_request_id, row.sent_at = f"req-{row.profile_id}", ledger.clock().isoformat()
        write = ledger.upsert if way == "log upsert" else lambda batch: _statement_a_row(ledger, batch)
        server, cpu, started = delivery.server_cpu_seconds(ledger), time.process_time(), time.perf_counter()
        for start in range(0, len(rows), BATCH):
            write(rows[start : start + BATCH])
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_after = delivery.server_cpu_seconds(ledger)
        server_cpu = None if server is None or server_after is None else round(server_after - server, 2)
        sent = ledger.counts().get(("sent", None, False), 0)
        if sent != OUTCOMES:
            raise AssertionError(f"{way}: {sent} of {OUTCOMES} outcomes in the log")
    finally:
        ledger.close()
    return {
        "way": way,
        "wall_seconds": round(wall, 3),
        "task_cpu_seconds": round(cpu, 3),
        "server_cpu_seconds": server_cpu,
    }


def _statement_a_row(ledger, rows) -> None:
    from line_oa.delivery_log.rows import COLUMNS, TABLE, UPDATED_ON_CONFLICT

    sql = (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
        "ON CONFLICT (run_key, profile_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in UPDATED_ON_CONFLICT)
    )
    now = ledger.clock().isoformat()
    with ledger.transaction():
        ledger._conn.cursor().executemany(sql, [ledger._values(row, now) for row in rows])
