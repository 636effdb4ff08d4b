"""What the PostgreSQL server itself did during a ``dag_scale`` run: WAL written, WAL files, checkpoints.

A run's wall time on PostgreSQL depends on the server as well as on the product. Two of the server's
doings showed in the twentieth session's runs (benchmarks/analysis.md): a 1,000,000-profile run writes
about 2 GB of write-ahead log at PostgreSQL's default ``max_wal_size`` of 1 GB (three or four
checkpoints a run, each followed by full-page images), and a server that has not written that much lately creates
new 16 MB WAL segment files, zero-filled and synced, during the run (the session's first run went from
5 to 64 of them and was the slowest). Later runs recycle those files. So each PostgreSQL result keeps
the server's counters taken just before and after the DAG run, and the report prints them beside the
wall time.

The counters are the server's, not the run's database's alone: another client's work on a shared
server counts too. A backend reports its WAL figures when it waits for its next command (at most
once a second) and when it ends; the run's backends end with the run, just before the second snapshot,
so a backend still ending then may leave its last moment out. A counter the connecting role may not
read (``pg_ls_waldir`` needs a superuser or ``pg_monitor``), or one this server version lacks, is None.
"""

from __future__ import annotations

from typing import Any

#: The queries of one snapshot, each alone: one that fails (no such view, no right) leaves the others.
#: PostgreSQL 17 moved the checkpoint counts from ``pg_stat_bgwriter`` to ``pg_stat_checkpointer``.
QUERIES = {
    "wal_bytes": ["SELECT wal_bytes FROM pg_stat_wal"],
    "wal_files": ["SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'"],
    "checkpoints_requested": [
        "SELECT num_requested FROM pg_stat_checkpointer",
        "SELECT checkpoints_req FROM pg_stat_bgwriter",
    ],
    "checkpoints_timed": [
        "SELECT num_timed FROM pg_stat_checkpointer",
        "SELECT checkpoints_timed FROM pg_stat_bgwriter",
    ],
}
SETTINGS = ("max_wal_size", "min_wal_size", "shared_buffers", "wal_init_zero")


def snapshot(conn: Any) -> dict[str, Any]:
    """Return the server's counters and WAL settings through ``conn`` (an autocommit psycopg connection)."""
    figures: dict[str, Any] = {}
    for name, candidates in QUERIES.items():
        figures[name] = None
        for sql in candidates:
            try:
                value = conn.execute(sql).fetchone()[0]
            except Exception:  # psycopg.Error: no such view or column here, or no right to read it
                continue
            figures[name] = None if value is None else int(value)
            break
    for name in SETTINGS:
        try:
            figures[name] = conn.execute(f"SHOW {name}").fetchone()[0]
        except Exception:
            figures[name] = None
    return figures


def activity(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Return what happened between two snapshots: WAL bytes written, WAL files before and after,
    checkpoints requested and timed, and the settings in force (as at the end)."""

    def grew(name: str) -> int | None:
        first, last = before.get(name), after.get(name)
        return None if first is None or last is None else last - first

    return {
        "wal_bytes": grew("wal_bytes"),
        "wal_files_before": before.get("wal_files"),
        "wal_files_after": after.get("wal_files"),
        "checkpoints_requested": grew("checkpoints_requested"),
        "checkpoints_timed": grew("checkpoints_timed"),
        **{name: after.get(name) for name in SETTINGS},
    }


def describe(server: dict[str, Any]) -> str:
    """One sentence for the report and the console: what the server wrote and created during the run."""
    parts = []
    written = server.get("wal_bytes")
    if written is not None:
        parts.append(
            f"{written / 1e9:.2f} GB of WAL written"
            if written >= 1e8
            else f"{written / 1e6:.1f} MB of WAL written"
        )
    first, last = server.get("wal_files_before"), server.get("wal_files_after")
    if first is not None and last is not None:
        created = f", {last - first} created during the run" if last > first else ""
        parts.append(f"WAL segment files {first} -> {last}{created}")
    requested, timed = server.get("checkpoints_requested"), server.get("checkpoints_timed")
    if requested is not None:
        parts.append(f"checkpoints: {requested} requested, {timed} timed")
    if not parts:
        return "PostgreSQL server: its counters could not be read"
    settings = ", ".join(f"{name} {server[name]}" for name in SETTINGS if server.get(name) is not None)
    return (
        "PostgreSQL server during the run (every database's): "
        + "; ".join(parts)
        + (f" ({settings})" if settings else "")
    )
