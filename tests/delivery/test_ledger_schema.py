"""The delivery log creates its own tables, also when several tasks start at once on an empty database."""

from __future__ import annotations

import json
import logging
import threading
import uuid

import pytest

from line_oa.delivery_log.store import DeliveryLog, LedgerRow, ledger_hook, schema_sql


def admin_in(database: str):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database)
    conn.autocommit = True
    return conn.cursor()


@pytest.mark.postgres
def test_tasks_starting_together_on_an_empty_postgresql_database_all_get_the_tables(monkeypatch):
    database = f"ledger_race_{uuid.uuid4().hex[:8]}"
    admin = admin_in("test")
    admin.execute(f"CREATE DATABASE {database}")
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "schema": database,
    }
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_RACE", json.dumps(conn))
    errors: list[str] = []

    def open_ledger() -> None:
        try:
            DeliveryLog(ledger_hook("ledger_race"), campaign_id="race", run_id="r").close()
        except Exception as err:  # the assertion below reports it
            errors.append(repr(err))

    try:
        threads = [threading.Thread(target=open_ledger) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        ledger = DeliveryLog(ledger_hook("ledger_race"), campaign_id="race", run_id="r")
        assert ledger.counts() == {}
        ledger.close()

        # A log created by an earlier release, without room in its pages for in-page updates, gets it.
        cursor = admin_in(database)
        cursor.execute("ALTER TABLE line_delivery_log RESET (fillfactor)")
        DeliveryLog(ledger_hook("ledger_race"), campaign_id="race", run_id="r").close()
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'line_delivery_log'")
        assert cursor.fetchone()[0] == ["fillfactor=50"]
        cursor.connection.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.connection.close()


@pytest.mark.postgres
def test_a_task_role_without_ddl_rights_opens_an_older_log_and_is_told_how_to_tune_it(monkeypatch, caplog):
    """Tables created up front by an admin (docs/operations.md): the task's role cannot ALTER them."""
    database, role = f"ledger_role_{uuid.uuid4().hex[:8]}", f"line_task_{uuid.uuid4().hex[:8]}"
    admin = admin_in("test")
    admin.execute(f"CREATE DATABASE {database}")
    try:
        owner = admin_in(database)
        ddl = schema_sql("postgres")
        owner.execute(ddl.replace("WITH (fillfactor = 50)", ""))  # a log from before the fill factor
        owner.execute(f"CREATE ROLE {role} LOGIN")
        owner.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
        owner.connection.close()
        conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": role, "schema": database}
        monkeypatch.setenv("AIRFLOW_CONN_LEDGER_ROLE", json.dumps(conn))

        with caplog.at_level(logging.WARNING, logger="line_oa.delivery_log.store"):
            ledger = DeliveryLog(ledger_hook("ledger_role"), campaign_id="c", run_id="r")
        ledger.add([LedgerRow(profile_id="p1", line_user_id="U" + "0" * 32, status="pending")])
        assert ledger.counts() == {("pending", None, False): 1}
        # registration copies through a temporary table; ANALYZE, for the owner only, is skipped
        ledger.add_pending(0, ["p2", "p3"], ["U" + "2" * 32, "U" + "3" * 32], ["k2", "k3"])
        ledger.refresh_statistics()
        assert ledger.counts() == {("pending", None, False): 3}
        ledger.close()
        assert "ALTER TABLE line_delivery_log SET (fillfactor = 50)" in caplog.text
        # without the right to create temporary tables, registration goes row by row
        admin_of_database = admin_in(database)
        admin_of_database.execute(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
        admin_of_database.connection.close()
        with caplog.at_level(logging.INFO, logger="line_oa.delivery_log.registration"):
            ledger = DeliveryLog(ledger_hook("ledger_role"), campaign_id="c", run_id="r2")
            ledger.add_pending(0, ["p4", "p5"], ["U" + "4" * 32, "U" + "5" * 32], ["k4", "k5"])
        assert ledger.counts() == {("pending", None, False): 2}
        ledger.close()
        assert "Registering recipients and claims row by row" in caplog.text
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.connection.close()


def test_several_tasks_opening_a_new_sqlite_log_at_once_all_get_it(tmp_path):
    """Switching a fresh file to WAL does not wait on the busy timeout: the opening retries it."""
    import threading

    from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook

    for round_ in range(20):
        path = tmp_path / f"log-{round_}.db"
        start = threading.Barrier(6)
        errors: list[BaseException] = []

        def open_log(path=path, start=start, errors=errors) -> None:
            try:
                start.wait()
                DeliveryLog(sqlite_file_hook(path), campaign_id="c", run_id="r").close()
            except BaseException as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=open_log) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == [], errors


def test_a_sender_reads_its_chunk_through_the_chunk_index_in_profile_order(tmp_path):
    """On SQLite, reading one chunk's rows to send must not walk the whole run in primary-key order:
    with 20 chunks of 50,000 that walk made each push task read all 1,000,000 rows of the run."""
    from line_oa.delivery_log.store import sqlite_file_hook

    ledger = DeliveryLog(sqlite_file_hook(tmp_path / "log.db"), campaign_id="plan", run_id="r1")
    rows = [
        LedgerRow(f"P{(i * 7) % 3000:05d}", f"U{i:032x}", "pending", chunk_index=i % 3) for i in range(3000)
    ]
    ledger.add(rows)
    statements: list[str] = []
    ledger._conn.set_trace_callback(statements.append)
    chunk = ledger.rows_to_send(1)
    ledger._conn.set_trace_callback(None)
    assert [row.profile_id for row in chunk] == sorted(row.profile_id for row in rows if row.chunk_index == 1)
    select = next(s for s in statements if s.lstrip().upper().startswith("SELECT"))
    plan = " ".join(str(step[3]) for step in ledger._conn.execute("EXPLAIN QUERY PLAN " + select))
    assert "line_delivery_log_chunk_rows" in plan, plan
    ledger.close()
