"""The delivery log creates its own tables, also when several tasks start at once on an empty database."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid

import pytest

from line_oa.delivery_log.store import DeliveryLog, LedgerRow, ledger_hook, schema_sql


def admin_in(database: str):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=database)
    conn.autocommit = True
    return conn.cursor()


def new_database(monkeypatch, conn_id: str):
    """Create an empty PostgreSQL database and point the connection ``conn_id`` at it; return an admin
    cursor (on ``test``, to drop it afterwards) and its name."""
    database = f"{conn_id}_{uuid.uuid4().hex[:8]}"
    admin = admin_in("test")
    admin.execute(f"CREATE DATABASE {database}")
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "schema": database,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return admin, database


@pytest.mark.postgres
def test_tasks_starting_together_on_an_empty_postgresql_database_all_get_the_tables(monkeypatch):
    admin, database = new_database(monkeypatch, "ledger_race")
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
        assert cursor.fetchone()[0] == ["fillfactor=30"]
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
        owner.execute(ddl.replace("WITH (fillfactor = 30)", ""))  # a log from before the fill factor
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
        assert "ALTER TABLE line_delivery_log SET (fillfactor = 30)" in caplog.text
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


def open_sqlite_log_together(path, *, run_id: str, tasks: int = 6) -> list[BaseException]:
    """Open the SQLite log at ``path`` from ``tasks`` threads released at once; return their errors."""
    from line_oa.delivery_log.store import sqlite_file_hook

    start, errors = threading.Barrier(tasks), []

    def open_log() -> None:
        try:
            start.wait()
            DeliveryLog(sqlite_file_hook(path), campaign_id="c", run_id=run_id).close()
        except BaseException as err:  # reported by the caller
            errors.append(err)

    threads = [threading.Thread(target=open_log) for _ in range(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_several_tasks_opening_a_new_sqlite_log_at_once_all_get_it(tmp_path):
    """Switching a fresh file to WAL does not wait on the busy timeout: the opening retries it."""
    for round_ in range(20):
        path = tmp_path / f"log-{round_}.db"
        errors = open_sqlite_log_together(path, run_id="r")
        assert errors == [], errors


def test_a_sender_reads_its_chunk_through_the_chunk_index_in_the_order_it_was_registered(tmp_path):
    """On SQLite, reading one chunk's rows to send must not walk the whole run in primary-key order:
    with 20 chunks of 50,000 that walk made each push task read all 1,000,000 rows of the run. Nor
    sort them: they come in the order they were registered (the segment's), the index's own order."""
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
    registered = [row.profile_id for row in rows if row.chunk_index == 1]
    assert registered != sorted(registered), "profile ids not registered in their own order"
    assert [row.profile_id for row in chunk] == registered
    select = next(s for s in statements if s.lstrip().upper().startswith("SELECT"))
    plan = " ".join(str(step[3]) for step in ledger._conn.execute("EXPLAIN QUERY PLAN " + select))
    assert "line_delivery_log_chunk_rows" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    ledger.close()


def test_reading_a_chunk_sets_off_no_garbage_collection_and_leaves_the_collector_as_it_was(
    tmp_path, monkeypatch
):
    """Building a chunk's rows set off collections of every object in the task process (Airflow's too):
    1.5 s of a 1,000,000-profile run. The collector is paused while they are built and restored after,
    also when the read fails, and left off when it was off."""
    import gc

    from line_oa.delivery_log.store import sqlite_file_hook

    ledger = DeliveryLog(sqlite_file_hook(tmp_path / "log.db"), campaign_id="gc", run_id="r1")
    ledger.add([LedgerRow(f"P{i:05d}", f"U{i:032x}", "pending", chunk_index=0) for i in range(3000)])
    collections: list[int] = []
    building = [False]
    select = ledger._select

    def building_rows(*args, **kwargs):  # the rows are built while this generator is drained
        building[0] = True
        try:
            yield from select(*args, **kwargs)
        finally:
            building[0] = False

    def count(phase, info):
        if phase == "start" and building[0]:
            collections.append(info["generation"])

    monkeypatch.setattr(ledger, "_select", building_rows)

    thresholds = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        gc.set_threshold(10)  # a collection every few allocations, were the collector on
        assert len(ledger.rows_to_send(0)) == 3000
        assert collections == [], f"{len(collections)} collections while the chunk was read"
        assert gc.isenabled()
        gc.disable()
        ledger.rows_to_send(0)
        assert not gc.isenabled(), "a collector that was off is left off"
        gc.enable()
        monkeypatch.setattr(ledger, "_select", lambda *args, **kwargs: iter([1 / 0]))
        with pytest.raises(ZeroDivisionError):
            ledger.rows_to_send(0)
        assert gc.isenabled(), "a failed read restores the collector"
    finally:
        gc.enable()
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(count)
        ledger.close()


def earlier_release_statements(dialect: str) -> list[str]:
    """The log's layout before run keys: the two text ids lead every key and index, no run table."""
    from line_oa.delivery_log.store import schema_statements

    statements = []
    for statement in schema_statements(dialect):
        if "line_delivery_run (" in statement:
            continue
        statement = re.sub(r"\n\s*run_key\s+\w+\s+NOT NULL,", "", statement)
        statements.append(statement.replace("(run_key, ", "(campaign_id, run_id, "))
    assert not any("run_key" in statement for statement in statements)
    return statements


def _old_log_rows(cursor, p: str) -> None:
    now = "2026-12-01T00:00:00+00:00"
    rows = [  # campaign, run, profile, LINE user, status, reason, chunk, batch id, attempts
        ("c", "A", "P1", "U1", "sent", None, 0, "kP1", 1),
        ("c", "A", "P2", "U2", "pending", None, 0, "kP2", 0),
        ("c", "A", "P3", "U3", "failed", "stopped", 1, "kP3", 2),
        ("c", "A", "P4", None, "excluded", "no_line_user_id", None, None, 0),
        ("c", "B", "P1", "U1", "sent", None, 0, "kB1", 1),
    ]
    cursor.executemany(
        "INSERT INTO line_delivery_log (campaign_id, run_id, profile_id, line_user_id, status, reason, "
        f"chunk_index, retry_key, attempts, created_at, updated_at, sent_at) VALUES ({', '.join([p] * 12)})",
        [(*row, now, now, now if row[4] == "sent" else None) for row in rows],
    )
    cursor.executemany(
        f"INSERT INTO line_frequency_claim (campaign_id, run_id, line_user_id, claimed_at) VALUES ({p}, {p}, {p}, {p})",
        [("c", "A", "U2", now), ("c", "A", "U9", now)],
    )
    cursor.execute(
        "INSERT INTO line_campaign_delivery (campaign_id, run_id, redeliver, started_at, workspace) "
        f"VALUES ({p}, {p}, 0, {p}, {p})",
        ("c", "A", now, "w"),
    )


def _check_moved_log(open_log) -> None:
    run_a = open_log("A")
    assert {(r.profile_id, r.status, r.reason, r.retry_key, r.attempts) for r in run_a.rows()} == {
        ("P1", "sent", None, "kP1", 1), ("P2", "pending", None, "kP2", 0), ("P3", "failed", "stopped", "kP3", 2),
        ("P4", "excluded", "no_line_user_id", None, 0),
    }  # fmt: skip
    assert [r.profile_id for r in run_a.rows_to_send(0)] == ["P2"]
    assert [r.profile_id for r in run_a.rows_to_send(1)] == ["P3"]
    # a retried chunk task registers again: the rows already there keep their outcome
    run_a.add_pending(0, ["P1", "P2", "P5"], ["U1", "U2", "U5"], ["x1", "x2", "kP5"])
    assert run_a.counts() == {
        ("sent", None, False): 1, ("pending", None, False): 2, ("failed", "stopped", False): 1,
        ("excluded", "no_line_user_id", False): 1,
    }  # fmt: skip
    assert [r.profile_id for r in open_log("B").rows()] == ["P1"]
    # the claims moved too: another run of the workspace counts U9 (claimed, no row) and U1 and U2 (rows)
    other = open_log("C")
    capped = other.over_frequency_cap(
        scope="workspace", value="w", since="2026-11-30T00:00:00+00:00", max_deliveries=1
    )
    assert capped == {"U1", "U2", "U9", "U5"}
    for ledger in (run_a, other):
        ledger.close()


def test_a_log_of_an_earlier_release_moves_to_run_keys_once_when_tasks_open_it_together(tmp_path):
    """Every row and claim of every run keeps its outcome; of six tasks opening it at once, one moves it."""
    import sqlite3

    from line_oa.delivery_log.store import sqlite_file_hook

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in earlier_release_statements("sqlite"):
        conn.execute(statement)
    _old_log_rows(conn.cursor(), "?")
    conn.commit()
    conn.close()
    assert open_sqlite_log_together(path, run_id="A") == []
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "line_delivery_log_before_run_key" not in tables
    assert "line_delivery_run" in tables
    plan = " ".join(
        str(step[3])
        for step in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM line_delivery_log WHERE run_key = 1 AND chunk_index = 0"
        )
    )
    assert "line_delivery_log_chunk_rows" in plan, plan
    conn.close()
    _check_moved_log(lambda run: DeliveryLog(sqlite_file_hook(path), campaign_id="c", run_id=run))


@pytest.mark.postgres
def test_a_postgresql_log_of_an_earlier_release_moves_to_run_keys_with_its_owner_only(monkeypatch):
    """A task role without DDL rights is told what to do and changes nothing; the owner moves it."""
    database, role = f"ledger_old_{uuid.uuid4().hex[:8]}", f"line_task_{uuid.uuid4().hex[:8]}"
    admin = admin_in("test")
    admin.execute(f"CREATE DATABASE {database}")
    try:
        owner = admin_in(database)
        for statement in earlier_release_statements("postgres"):
            owner.execute(statement)
        _old_log_rows(owner, "%s")
        owner.execute(f"CREATE ROLE {role} LOGIN")
        owner.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
        for name, login in (("ledger_task", role), ("ledger_owner", "postgres")):
            conn = {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": login,
                "schema": database,
            }
            monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(conn))
        from line_oa.errors import LineOAError

        with pytest.raises(LineOAError, match=r"earlier release.*Upgrading the delivery log"):
            DeliveryLog(ledger_hook("ledger_task"), campaign_id="c", run_id="A")
        owner.execute("SELECT COUNT(*) FROM line_delivery_log")
        assert owner.fetchone()[0] == 5
        DeliveryLog(ledger_hook("ledger_owner"), campaign_id="c", run_id="A").close()
        owner.execute(
            "SELECT to_regclass('line_delivery_log_before_run_key'), to_regclass('line_delivery_run')"
        )
        assert owner.fetchone() == (None, "line_delivery_run")
        _check_moved_log(lambda run: DeliveryLog(ledger_hook("ledger_owner"), campaign_id="c", run_id=run))
        owner.connection.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.connection.close()


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["multicast", "push"])
def test_every_status_change_of_a_delivered_chunk_stays_in_its_page_on_postgresql(
    line_conn, sim, monkeypatch, mode
):
    """A row goes pending -> sending -> sent, longer each time. An update that no longer fits in the
    row's page adds an entry to each of the log's three indexes: a 500-row mark or outcome then takes
    1.5-2 times as long, and the senders wait for the marks.

    Checked at the worst a log sees: a report holding one snapshot the whole chunk long, so that no
    replaced version can be reclaimed and every new version must fit in the room the fill factor left
    (without it, the share depends on when PostgreSQL prunes pages, which made this test flaky in
    `make test`). Then, every run alike: at fillfactor 30, 16,430 of 20,000 (multicast) and 1,858 of
    2,000 (push) stay in their page; at 40, 12,230 and 1,395; at 50, 9,457 and 1,008. With nothing
    holding a snapshot, all of them at 30 (and 76 % and 83 % at 50)."""
    from .test_engine import recipients, run_chunk

    admin, database = new_database(monkeypatch, "ledger_hot")
    try:
        people = recipients(10_000 if mode == "multicast" else 1_000)
        ledger = DeliveryLog(ledger_hook("ledger_hot"), campaign_id="c", run_id="r")
        report = admin_in(database).connection  # a reader holding one snapshot the whole chunk long
        report.autocommit = False
        report.cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        report.cursor().execute("SELECT count(*) FROM line_delivery_log")
        result = run_chunk(line_conn, ledger, people, mode=mode)
        report.rollback()
        report.close()
        ledger.close()  # its server process ends and reports its counts (an idle one waits 10 s)
        assert result.sent == len(people)
        stats = admin_in(database)
        deadline = time.monotonic() + 30
        while True:
            stats.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'line_delivery_log'"
            )
            updates, in_page = stats.fetchone()
            if updates >= 2 * len(people) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        stats.connection.close()
        assert updates >= 2 * len(people), "every row is marked and then settled"
        assert in_page >= 0.8 * updates, f"{updates - in_page} of {updates} status changes left their page"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.connection.close()
