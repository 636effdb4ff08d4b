"""The delivery log creates its own tables, also when several tasks start at once on an empty database."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from line_oa.ledger import DeliveryLedger, ledger_hook


def admin_in(database: str):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database)
    conn.autocommit = True
    return conn.cursor()


@pytest.mark.postgres
def test_tasks_starting_together_on_an_empty_postgresql_database_all_get_the_tables(monkeypatch):
    import psycopg2

    database = f"ledger_race_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {database}")
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
            DeliveryLedger(ledger_hook("ledger_race"), campaign_id="race", run_id="r").close()
        except Exception as err:  # the assertion below reports it
            errors.append(repr(err))

    try:
        threads = [threading.Thread(target=open_ledger) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        ledger = DeliveryLedger(ledger_hook("ledger_race"), campaign_id="race", run_id="r")
        assert ledger.counts() == {}
        ledger.close()

        # A log created by an earlier release, without room in its pages for in-page updates, gets it.
        cursor = admin_in(database)
        cursor.execute("ALTER TABLE line_delivery_log RESET (fillfactor)")
        DeliveryLedger(ledger_hook("ledger_race"), campaign_id="race", run_id="r").close()
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'line_delivery_log'")
        assert cursor.fetchone()[0] == ["fillfactor=50"]
        cursor.connection.close()
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()
