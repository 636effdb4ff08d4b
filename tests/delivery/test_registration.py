"""Registering a run's recipients: the chunk task's fast path writes the rows ``pending_rows`` describes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from line_oa.delivery.chunk import pending_rows
from line_oa.delivery.keys import RETRY_KEY_NAMESPACE, push_retry_key, push_retry_keys
from line_oa.delivery_log.rows import COLUMNS, TABLE, LedgerRow, row_values
from tests.fast_loop import examples


@settings(max_examples=examples(300), deadline=None)
@given(
    campaign_id=st.text(),
    run_id=st.text(),
    users=st.lists(st.one_of(st.none(), st.text()), max_size=20),
)
def test_the_batch_of_push_keys_is_uuid5_of_campaign_run_and_each_recipient(campaign_id, run_id, users):
    """A resumed run finds its keys again only if registration derives the key every other path does:
    ``uuid5`` of the namespace and ``push|<campaign>|<run>|<user id>`` (``push_retry_key`` is one of these)."""
    expected = [str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"push|{campaign_id}|{run_id}|{u}")) for u in users]
    assert push_retry_keys(campaign_id, run_id, users) == expected


def _logged(ledger) -> list[tuple]:
    cursor = ledger._conn.cursor()
    columns = [c for c in COLUMNS if c not in ("created_at", "updated_at", "run_key")]
    cursor.execute(
        f"SELECT {', '.join(columns)} FROM {TABLE} WHERE campaign_id = {ledger._p} AND run_id = {ledger._p} "
        "ORDER BY profile_id",
        (ledger.campaign_id, ledger.run_id),
    )
    rows = [tuple(row) for row in cursor.fetchall()]
    ledger._conn.commit()
    return rows


@pytest.mark.parametrize("is_test", [False, True])
def test_add_pending_writes_the_rows_pending_rows_describes(ledger_factory, is_test):
    """Same columns and defaults as ``add(pending_rows(...))``, each under its push key, whatever the order."""
    people = [(f"P{i:04d}", f"U{(i * 7919) % 1000:032x}") for i in range(300)]
    # profile ids as a CDP may hold them: what COPY's text format would misread unless escaped
    people[:7] = [("P\t1", people[0][1]), ("P\n2", people[1][1]), ("P\\3", people[2][1]),
                  ("\\N", people[3][1]), ("P'5\"", people[4][1]), ("プロフィール🙂", people[5][1]), ("P7", None)]  # fmt: skip
    run = uuid.uuid4().hex[:12]  # PostgreSQL keeps earlier tests' rows: runs of their own
    slow = ledger_factory(run_id=f"slow-{run}")
    slow.add(pending_rows(slow.campaign_id, slow.run_id, 3, people, is_test=is_test))
    fast = ledger_factory(run_id=f"fast-{run}")
    users = [u for _, u in people]
    keys = push_retry_keys(fast.campaign_id, fast.run_id, users)
    assert fast.add_pending(3, [p for p, _ in people], users, keys, is_test=is_test) == 300
    key = COLUMNS.index("retry_key")
    slow_rows, fast_rows = _logged(slow), _logged(fast)
    assert len(fast_rows) == 300
    assert [row[2:key] + row[key + 1 :] for row in fast_rows] == [
        row[2:key] + row[key + 1 :] for row in slow_rows
    ]
    keys = {row[2]: row[key] for row in fast_rows}
    assert keys == {p: push_retry_key(fast.campaign_id, fast.run_id, u) for p, u in people}
    assert {row[COLUMNS.index("status")] for row in fast_rows} == {"pending"}
    assert {bool(row[COLUMNS.index("is_test")]) for row in fast_rows} == {is_test}


def test_add_pending_leaves_a_row_already_in_the_log_as_it_is(ledger_factory):
    """A retried chunk task registers its recipients again: an outcome already written must survive."""
    ledger = ledger_factory()
    ledger.add_pending(0, ["P1", "P2"], ["U" + "1" * 32, "U" + "2" * 32], ["k1", "k2"])
    cursor = ledger._conn.cursor()
    cursor.execute(
        f"UPDATE {TABLE} SET status = 'sent', attempts = 1 WHERE run_id = {ledger._p} AND profile_id = 'P1'",
        (ledger.run_id,),
    )
    ledger._conn.commit()
    ledger.add_pending(
        0, ["P1", "P2", "P3"], ["U" + "1" * 32, "U" + "2" * 32, "U" + "3" * 32], ["k1", "k2", "k3"]
    )
    by_profile = {row.profile_id: row for row in ledger.rows()}
    assert sorted(by_profile) == ["P1", "P2", "P3"]
    assert (by_profile["P1"].status, by_profile["P1"].attempts) == ("sent", 1)
    assert by_profile["P3"].status == "pending"


def test_a_new_chunk_holding_a_recipient_the_log_already_has_keeps_that_row(ledger_factory):
    """No row of chunk 1 is in the log, but one of its recipients is, under chunk 0 (on PostgreSQL the
    chunk's direct COPY then fails as a whole and the chunk goes the staging way, with nothing lost)."""
    ledger = ledger_factory()
    users = ["U" + str(n) * 32 for n in range(1, 5)]
    ledger.add_pending(0, ["P1", "P2"], users[:2], ["k1", "k2"])
    assert ledger.add_pending(1, ["P2", "P3", "P4"], users[1:], ["x2", "k3", "k4"]) == 3
    by_profile = {row.profile_id: row for row in ledger.rows()}
    assert {p: (r.chunk_index, r.retry_key) for p, r in by_profile.items()} == {
        "P1": (0, "k1"), "P2": (0, "k2"), "P3": (1, "k3"), "P4": (1, "k4"),
    }  # fmt: skip
    assert ledger.counts() == {("pending", None, False): 4}


@settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    people=st.lists(st.tuples(st.text(min_size=1), st.one_of(st.none(), st.text())), max_size=40,
                    unique_by=lambda person: person[0]),
    json_functions=st.booleans(),
)  # fmt: skip
@example(people=[("0", "\\u0000")], json_functions=True)  # found by a run: the text \u0000, no NUL
def test_sqlite_writes_any_text_exactly_a_few_thousand_rows_a_statement(
    tmp_path, monkeypatch, people, json_functions
):
    """On SQLite, registration and the frequency claims write thousands of rows a statement as one JSON
    array (batches of 7 here, so a chunk spans several): every id arrives as it was given, any Unicode,
    quotes, backslashes and NUL included (a batch with a NUL, or with the text \\u0000, is bound row by
    row), and as well without SQLite's JSON functions."""
    from line_oa.delivery_log import registration
    from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook

    statements: list[str] = []
    ledger = DeliveryLog(sqlite_file_hook(tmp_path / f"{uuid.uuid4().hex}.db"), campaign_id="c", run_id="r")
    ledger._conn.set_trace_callback(statements.append)
    profiles, users = [p for p, _ in people], [u for _, u in people]
    claimed = [u for u in users if u is not None]
    with monkeypatch.context() as patch:  # one example's patches end with it
        patch.setattr(registration, "JSON_ROWS", 7)
        if not json_functions:
            patch.setattr(registration, "_has_json", lambda cursor: False)
        assert ledger.add_pending(2, profiles, users, [f"k{n}" for n in range(len(people))]) == len(people)
        assert ledger.claim_recipients(claimed) == len(claimed)
    ledger._conn.set_trace_callback(None)
    rows = ledger._conn.execute(
        "SELECT profile_id, line_user_id, retry_key, chunk_index, status FROM line_delivery_log ORDER BY rowid"
    ).fetchall()
    assert rows == [(p, u, f"k{n}", 2, "pending") for n, (p, u) in enumerate(people)]
    claims = ledger._conn.execute("SELECT line_user_id FROM line_frequency_claim").fetchall()
    assert sorted(u for (u,) in claims) == sorted(set(claimed))
    batches = [people[n : n + 7] for n in range(0, len(people), 7)]
    batches += [[(user, "") for user in claimed[n : n + 7]] for n in range(0, len(claimed), 7)]
    # json.dumps writes a NUL as the six characters \u0000, which the check looks for: an id holding them
    # as text (a backslash, then u0000) sends its batch the row-by-row way too
    without_nul = [
        all("\x00" not in text and "\\u0000" not in text for person in batch for text in person if text)
        for batch in batches
    ]
    json_statements = [statement for statement in statements if "json_each" in statement]
    assert len(json_statements) == (sum(without_nul) if json_functions else 0)
    ledger.close()


def test_add_pending_refuses_columns_of_different_lengths(ledger_factory):
    ledger = ledger_factory()
    with pytest.raises(ValueError, match="2 profile ids, 1 LINE user ids and 2 retry keys"):
        ledger.add_pending(0, ["P1", "P2"], ["U" + "1" * 32], ["k1", "k2"])
    assert ledger.row_count() == 0


class _Recorder:
    """The log's connection, recording every statement its cursors run (SQL and parameters)."""

    def __init__(self, conn):
        self._conn, self.statements = conn, []

    def cursor(self, *args, **kwargs):
        cursor, statements = self._conn.cursor(*args, **kwargs), self.statements

        class Recording:
            def execute(self, sql, params=()):
                statements.append((sql, tuple(params)))
                return cursor.execute(sql, params)

            def __getattr__(self, name):
                return getattr(cursor, name)

        return Recording()

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _register(ledger, chunks: int, size: int) -> None:
    for index in range(chunks):
        people = [(f"p{index:02d}{n:06d}", f"U{index:02d}{n:030x}") for n in range(size)]
        ids, users = [p for p, _ in people], [u for _, u in people]
        ledger.add_pending(index, ids, users, push_retry_keys(ledger.campaign_id, ledger.run_id, users))


def _rows_read(ledger, sql: str, params: tuple) -> int | str:
    """PostgreSQL: rows its scans read to run the statement (run and rolled back); SQLite: its plan."""
    cursor = ledger._conn.cursor()
    if ledger.dialect == "sqlite":
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return " / ".join(str(row[3]) for row in cursor.fetchall())
    cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
    plan = cursor.fetchone()[0]
    ledger._conn.rollback()
    nodes, read = [plan[0]["Plan"]], 0
    while nodes:
        node = nodes.pop()
        nodes += node.get("Plans", [])
        if "Scan" in node["Node Type"] and "Bitmap Index" not in node["Node Type"]:
            read += node["Actual Rows"] * node.get("Actual Loops", 1) + node.get("Rows Removed by Filter", 0)
    return read


def test_a_push_mark_and_a_chunk_read_find_their_rows_by_index_in_a_log_holding_other_runs(ledger_factory):
    """A push task reads its chunk's rows and marks its requests' rows without reading the rest of the
    run: on PostgreSQL, the planner, whose statistics knew only earlier runs, expected a handful of rows
    for the new run and read all of them for every 40-row mark (41 ms of server CPU each in a
    20,000-row run); refreshing them once the run is registered, as ``chunk_profiles`` does, fixes it."""
    earlier = ledger_factory(run_id="earlier")
    _register(earlier, chunks=1, size=3000)
    earlier.refresh_statistics()
    ledger = ledger_factory(run_id="new")
    _register(ledger, chunks=3, size=2000)
    ledger.refresh_statistics()
    recorder = ledger._conn = _Recorder(ledger._conn)
    rows = ledger.rows_to_send(1)
    assert len(rows) == 2000
    assert ledger.mark_push(rows[:40]) == 40
    ledger._conn = recorder._conn
    (select, select_params), (mark, mark_params) = [
        s for s in recorder.statements if s[0].lstrip().startswith(("SELECT", "UPDATE")) and TABLE in s[0]
    ]
    if ledger.dialect == "sqlite":  # each search binds the chunk (resp. the profile ids), not just the run
        assert "chunk_index=?" in _rows_read(ledger, select, select_params)
        assert "profile_id=?" in _rows_read(ledger, mark, mark_params)
    else:
        assert _rows_read(ledger, select, select_params) <= 2000 + 10
        assert _rows_read(ledger, mark, mark_params) <= 40 * 2


def test_a_run_whose_key_could_not_be_entered_registers_on_the_next_try(ledger_factory):
    """Entering a run's key fails while another session holds the log (a stalled or locked database):
    that chunk fails, and the same log registers it on the next try, under one key for the run."""
    ledger = ledger_factory()
    blocker = ledger_factory(run_id="blocker")
    blocker.row_count()  # the blocker's own run key, entered before it takes the lock
    cursor = blocker._conn.cursor()
    if ledger.dialect == "postgres":
        ledger._conn.cursor().execute("SET statement_timeout = 300")
        ledger._conn.commit()
        cursor.execute("LOCK TABLE line_delivery_run IN ACCESS EXCLUSIVE MODE")
    else:
        ledger._conn.execute("PRAGMA busy_timeout=50")
        cursor.execute("BEGIN IMMEDIATE")
    users = ["U" + "1" * 32, "U" + "2" * 32]
    with pytest.raises(Exception, match="(?i)locked|timeout"):
        ledger.add_pending(0, ["P1", "P2"], users, ["k1", "k2"])
    blocker._conn.rollback()
    assert ledger.add_pending(0, ["P1", "P2"], users, ["k1", "k2"]) == 2
    assert ledger.counts() == {("pending", None, False): 2}
    cursor = blocker._conn.cursor()
    cursor.execute(
        f"SELECT COUNT(*) FROM line_delivery_run WHERE campaign_id = {ledger._p} AND run_id = {ledger._p}",
        (ledger.campaign_id, ledger.run_id),
    )
    assert cursor.fetchone()[0] == 1
    blocker._conn.commit()


_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
_STAMP = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda stamp: stamp.isoformat())
_OUTCOME = st.builds(
    LedgerRow,
    profile_id=st.sampled_from(["p1", "p2", "p3", "p'4", 'p"5', "p\\6", "プ7"]),
    line_user_id=st.one_of(st.none(), _TEXT),
    status=st.sampled_from(["pending", "sending", "sent", "failed"]),
    reason=st.one_of(st.none(), _TEXT),
    chunk_index=st.one_of(st.none(), st.integers(0, 2**31 - 1)),
    batch_id=st.one_of(st.none(), _TEXT),
    retry_key=st.one_of(st.none(), _TEXT),
    http_status=st.one_of(st.none(), st.integers(100, 599)),
    line_request_id=st.one_of(st.none(), _TEXT),
    accepted_request_id=st.one_of(st.none(), _TEXT),
    line_message=st.one_of(st.none(), st.text(st.characters(blacklist_characters="\x00",
                                                            blacklist_categories=("Cs",)), max_size=60)),
    attempts=st.integers(0, 1000),
    is_test=st.booleans(),
    sent_at=st.one_of(st.none(), _STAMP),
    dispatched_at=st.one_of(st.none(), _STAMP),
)  # fmt: skip


@settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=st.lists(_OUTCOME, max_size=8), second=st.lists(_OUTCOME, max_size=8), batch=st.integers(1, 4))
def test_outcomes_are_written_as_one_statement_after_another_would_write_them(
    ledger_factory, monkeypatch, first, second, batch
):
    """``upsert`` (each row's newest outcome wins) and ``add`` (a row already there stays as it is) leave
    the log as writing the rows one by one in order would: any text, quotes, backslashes and Unicode, the
    empty text apart from NULL, numbers, time stamps, and a profile written twice in one batch (batches of
    1-4 here; PostgreSQL writes a batch as one statement from a JSON array)."""
    from line_oa.delivery_log import writes

    monkeypatch.setattr(writes, "BATCH_SIZE", batch)
    ledger = ledger_factory(run_id=f"outcomes-{uuid.uuid4().hex[:12]}")
    expected: dict[str, tuple] = {}
    try:
        ledger.add(first)
        for row in first:
            expected.setdefault(row.profile_id, _fields(row))
        ledger.upsert(second)
        expected |= {row.profile_id: _fields(row) for row in second}
        assert {row.profile_id: _fields(row) for row in ledger.rows()} == expected
    finally:
        ledger.close()  # each example its own connection: PostgreSQL allows a hundred


def _fields(row: LedgerRow) -> tuple:
    stamps = [datetime.fromisoformat(s) if s else None for s in (row.sent_at, row.dispatched_at)]
    return (*row_values(row)[:-2], *stamps)
