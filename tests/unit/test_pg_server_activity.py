"""The PostgreSQL server's activity that ``dag_scale`` reports beside a run on PostgreSQL (benchmarks/pg_server.py)."""

from __future__ import annotations

import os
import time
import uuid

import psycopg
import pytest

from benchmarks.pg_server import activity, describe, snapshot

pytestmark = pytest.mark.postgres

SERVER = {"host": "127.0.0.1", "port": 5432, "dbname": os.environ["LINE_OA_TEST_PG_DATABASE"]}


def connect(user: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(**SERVER, user=user, autocommit=True, connect_timeout=10)


def test_a_write_between_two_snapshots_shows_as_wal_written_and_the_settings_in_force():
    with connect() as conn:
        before = snapshot(conn)
        table = f"wal_probe_{uuid.uuid4().hex[:8]}"
        conn.execute(
            f"CREATE TABLE {table} AS SELECT g, md5(g::text) AS h FROM generate_series(1, 50000) AS g"
        )
        conn.execute("CHECKPOINT")
        # a backend reports its WAL figures when it next waits for a command (at most once a second,
        # unless told to, as here); a DAG run's backends report theirs as they end with the run
        conn.execute("SELECT pg_stat_force_next_flush()")
        after = snapshot(conn)
        # the checkpointer wakes the CHECKPOINT's caller first and reports its own counters just after
        deadline = time.monotonic() + 10
        while (
            after["checkpoints_requested"] == before["checkpoints_requested"] and time.monotonic() < deadline
        ):
            time.sleep(0.05)
            after = snapshot(conn)
        conn.execute(f"DROP TABLE {table}")
    server = activity(before, after)
    assert server["wal_bytes"] > 50_000 * 40  # each row's tuple (a 4-byte int and 32 characters) at least
    assert server["checkpoints_requested"] >= 1  # the CHECKPOINT above
    assert server["wal_files_before"] >= 1  # a superuser may list pg_wal
    assert server["wal_files_after"] >= 1
    assert server["max_wal_size"]
    assert server["shared_buffers"]
    sentence = describe(server)
    assert "MB of WAL written" in sentence or "GB of WAL written" in sentence
    assert f"WAL segment files {server['wal_files_before']} -> {server['wal_files_after']}" in sentence
    assert f"max_wal_size {server['max_wal_size']}" in sentence


def test_a_role_that_may_not_list_the_wal_directory_still_gets_the_other_counters():
    role = f"line_oa_probe_{uuid.uuid4().hex[:8]}"
    with connect() as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            with connect(role) as conn:
                figures = snapshot(conn)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT count(*) FROM pg_ls_waldir()")
        finally:
            admin.execute(f"DROP ROLE {role}")
    assert figures["wal_files"] is None
    assert figures["wal_bytes"] is not None
    assert figures["checkpoints_requested"] is not None
    server = activity(figures, figures)
    assert server["wal_bytes"] == 0
    assert server["wal_files_before"] is None
    sentence = describe(server)
    assert "WAL segment files" not in sentence
    assert "0.0 MB of WAL written" in sentence
