"""Segment extraction: who is eligible, who is excluded and why, streamed from SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import sqlite3
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook
from line_oa.integration.segment import classify, extract_segment, read_segment, wrap_segment_sql
from tests.fast_loop import examples

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
GOOD = ["U" + f"{n:032x}" for n in range(10)]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("p1", None)], [("p1", None, "excluded", "missing_recipient_id")]),
        ([("p1", "  ")], [("p1", None, "excluded", "missing_recipient_id")]),
        ([("p1", "@shop123")], [("p1", "@shop123", "failed", "invalid_recipient_id")]),
        ([("p1", "U" + "AB" * 16)], [("p1", "U" + "AB" * 16, "failed", "invalid_recipient_id")]),
        (
            [("p1", GOOD[0]), ("p2", GOOD[0]), ("p3", GOOD[0])],
            [
                ("p1", GOOD[0], None, None),
                ("p2", GOOD[0], "excluded", "duplicate_recipient"),
                ("p3", GOOD[0], "excluded", "duplicate_recipient"),
            ],
        ),
    ],
    ids=[
        "a profile without a LINE user id is excluded",
        "a blank LINE user id counts as missing",
        "a LINE display id is not a user id",
        "upper-case hex is malformed",
        "a shared LINE user id is sent once, to the first profile",
    ],
)
def test_classify(rows, expected):
    assert [outcome[:4] for outcome in classify(rows)] == expected


def test_max_recipients_excludes_the_rest_and_says_why():
    rows = [(f"p{i}", uid) for i, uid in enumerate(GOOD)]
    outcome = [status for _, _, status, _, _ in classify(rows, max_recipients=4)]
    assert outcome.count(None) == 4
    assert outcome.count("excluded") == 6


def test_the_segment_sql_is_wrapped_not_edited_and_must_be_one_statement():
    from line_oa.errors import LineOAError

    wrapped = wrap_segment_sql("SELECT a FROM t;")
    assert "(\nSELECT a FROM t\n) AS segment" in wrapped
    assert wrapped.endswith("ORDER BY line_user_id, profile_order, occurrence")
    with pytest.raises(LineOAError, match="single SELECT"):
        wrap_segment_sql("SELECT 1; DROP TABLE profiles")


def _ledger(tmp_path, run_id="run-1"):
    return DeliveryLog(sqlite_file_hook(tmp_path / "log.db"), campaign_id="seg", run_id=run_id)


def test_extract_stages_eligible_recipients_and_logs_every_other_profile(tmp_path):
    rows = [("p3", GOOD[1]), ("p1", None), ("p2", GOOD[1]), ("p4", "bad"), ("p5", GOOD[2])]
    rows.sort(key=lambda r: (r[1] or "", r[0]))
    ledger = _ledger(tmp_path)
    result = extract_segment(rows=rows, ledger=ledger, staging_dir=tmp_path / "stage")
    assert (result.profiles, result.eligible) == (5, 2)
    assert result.excluded == {"missing_recipient_id": 1, "duplicate_recipient": 1}
    assert result.failed == {"invalid_recipient_id": 1}
    assert list(read_segment(result.segment_uri)) == [("p2", GOOD[1]), ("p5", GOOD[2])]
    logged = {row.profile_id: (row.status, row.reason) for row in ledger.rows()}
    assert logged == {
        "p1": ("excluded", "missing_recipient_id"),
        "p3": ("excluded", "duplicate_recipient"),
        "p4": ("failed", "invalid_recipient_id"),
    }
    again = extract_segment(rows=rows, ledger=ledger, staging_dir=tmp_path / "stage")
    assert again.to_dict() == result.to_dict(), "a retried extraction gives the same answer"
    assert sum(1 for _ in ledger.rows()) == 3


def _load_profiles(execute, placeholder: str):
    from line_oa.cli.sample_cdp import PROFILES_DDL, profile_rows

    rows = list(profile_rows(profiles=2000, seed=3))
    execute(PROFILES_DDL, None)
    columns = len(rows[0])
    execute(f"INSERT INTO profiles VALUES ({', '.join([placeholder] * columns)})", rows)
    return rows


def _expected_eligible(rows) -> int:
    from line_oa.integration.segment import LINE_USER_ID

    return len({r[1] for r in rows if r[1] and LINE_USER_ID.match(r[1]) and r[5] == 1})


def test_extract_streams_from_a_sqlite_cdp(tmp_path):
    from line_oa.integration.segment import stream_rows

    db = tmp_path / "cdp.db"
    with sqlite3.connect(db) as conn:

        def execute(sql, rows):
            conn.executemany(sql, rows) if rows else conn.execute(sql)

        rows = _load_profiles(execute, "?")
    sql = (ROOT / "include/sql/segments/customers/all_line_friends.sql").read_text()
    hook = sqlite_file_hook(db, conn_id="cdp")
    result = extract_segment(
        rows=stream_rows(hook, wrap_segment_sql(sql)), ledger=_ledger(tmp_path), staging_dir=tmp_path / "s"
    )
    assert result.eligible == _expected_eligible(rows)
    assert result.profiles == sum(1 for r in rows if r[5] == 1)


@pytest.mark.postgres
def test_extract_streams_from_a_postgresql_cdp(tmp_path, monkeypatch):
    import pathlib

    from line_oa.delivery_log.store import sql_hook
    from line_oa.integration.segment import stream_rows

    schema = f"cdp_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CDP_PG",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test",
                    "extra": {"options": f"-c search_path={schema}"}}),
    )  # fmt: skip
    hook = sql_hook("cdp_pg", tmp_path / "unused.db")
    conn = hook.get_conn()
    cursor = conn.cursor()
    cursor.execute(f"CREATE SCHEMA {schema}")
    cursor.execute(f"SET search_path TO {schema}")
    try:

        def execute(sql, rows):
            cursor.executemany(sql, rows) if rows else cursor.execute(sql)

        rows = _load_profiles(execute, "%s")
        conn.commit()
        sql = (
            pathlib.Path(__file__).parents[2] / "include/sql/segments/customers/all_line_friends.sql"
        ).read_text()
        result = extract_segment(
            rows=stream_rows(sql_hook("cdp_pg", tmp_path / "unused.db"), wrap_segment_sql(sql)),
            ledger=_ledger(tmp_path),
            staging_dir=tmp_path / "s",
        )
        assert result.eligible == _expected_eligible(rows)
    finally:
        cursor.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.commit()
        conn.close()


@pytest.mark.postgres
def test_a_postgresql_segment_is_fetched_batch_by_batch_never_whole(tmp_path, monkeypatch):
    """A segment of millions must not be loaded into the extract task at once: while the first rows
    are read, PostgreSQL holds the result and the task fetches it a batch at a time."""
    import psycopg2

    from line_oa.delivery_log.store import sql_hook
    from line_oa.integration import segment

    application = f"line_oa_stream_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CDP_PG",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
                    "schema": "test", "extra": {"application_name": application}}),
    )  # fmt: skip
    monkeypatch.setattr(segment, "FETCH_SIZE", 100)
    sql = "SELECT 'P' || n AS profile_id, 'U' || md5(n::text) AS line_user_id FROM generate_series(1, 5000) AS n"
    rows = segment.stream_rows(sql_hook("cdp_pg", tmp_path / "unused.db"), sql)
    first = [next(rows) for _ in range(150)]
    observer = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    try:
        cursor = observer.cursor()
        cursor.execute("SELECT query FROM pg_stat_activity WHERE application_name = %s", (application,))
        (last_query,) = cursor.fetchone()
    finally:
        observer.close()
    assert last_query.startswith("FETCH FORWARD 100 FROM"), last_query
    rest = list(rows)
    assert [p for p, _ in first + rest] == [f"P{n}" for n in range(1, 5001)]


# --- One row per profile: ids normalized before deduplication, nothing dropped by the log's key ---

SEGMENT_SQL = "SELECT profile_id, line_user_id FROM profiles WHERE opted_in = 1"


def _sqlite_cdp(path, rows):
    """Write a CDP whose columns have no declared type: integers stay integers, as in a loose CDP."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE profiles (profile_id, line_user_id, opted_in INTEGER NOT NULL DEFAULT 1)")
        conn.executemany("INSERT INTO profiles (profile_id, line_user_id) VALUES (?, ?)", rows)
    conn.close()
    return sqlite_file_hook(path, conn_id="cdp")


def _extract_from(hook, ledger, staging_dir):
    """Extract ``SEGMENT_SQL`` from ``hook``; return the result, the log {profile: row} and the staged rows."""
    from line_oa.integration.segment import stream_rows

    result = extract_segment(
        rows=stream_rows(hook, wrap_segment_sql(SEGMENT_SQL)), ledger=ledger, staging_dir=staging_dir
    )
    logged = list(ledger.rows())
    keys = [row.profile_id for row in logged]
    assert len(keys) == len(set(keys))
    return result, {row.profile_id: row for row in logged}, list(read_segment(result.segment_uri))


def _outcomes(logged, staged):
    """{profile id: (status, reason, line user id)} of every row, eligible ones as (None, None, id)."""
    outcomes = {pid: (row.status, row.reason, row.line_user_id) for pid, row in logged.items()}
    for pid, uid in staged:
        assert pid not in outcomes, f"{pid} is both eligible and logged"
        outcomes[pid] = (None, None, uid)
    return outcomes


def _extract_sqlite(tmp_path, rows, run_id="run-1"):
    hook = _sqlite_cdp(tmp_path / f"cdp-{uuid.uuid4().hex[:6]}.db", rows)
    result, logged, staged = _extract_from(hook, _ledger(tmp_path, run_id), tmp_path / "stage" / run_id)
    assert result.profiles == len(rows), "one outcome per row read"
    assert len(logged) + len(staged) == len(rows), "one row per profile: nothing dropped by the log's key"
    assert result.eligible == len(staged)
    uids = [uid for _, uid in staged]
    assert len(uids) == len(set(uids)), "a LINE user id would be sent twice"
    return result, _outcomes(logged, staged), logged


def test_null_and_blank_profile_ids_are_logged_as_missing_under_numbered_ids(tmp_path):
    rows = [(None, GOOD[0]), ("", GOOD[1]), ("   ", None), (None, GOOD[0]), ("p1", GOOD[0])]
    result, outcomes, _ = _extract_sqlite(tmp_path, rows)
    assert outcomes == {
        "(no profile id) #1": ("excluded", "missing_profile_id", None),
        "(no profile id) #2": ("excluded", "missing_profile_id", GOOD[0]),
        "(no profile id) #3": ("excluded", "missing_profile_id", GOOD[0]),
        "(no profile id) #4": ("excluded", "missing_profile_id", GOOD[1]),
        "p1": (None, None, GOOD[0]),
    }, "a profile without an id is never the one a shared LINE user id is sent to"
    assert result.excluded == {"missing_profile_id": 4}


def test_a_repeated_profile_id_is_handled_once_and_each_repeat_is_logged(tmp_path):
    rows = [
        ("p1", GOOD[1]),  # different LINE user ids: the lowest is the profile's
        ("p1", GOOD[0]),
        ("p2", GOOD[1]),  # ... so GOOD[1] is still sent, to p2
        ("p3", GOOD[2]),  # same LINE user id three times, once with spaces
        ("p3", GOOD[2]),
        ("p3", f"  {GOOD[2]} "),
        ("p4", None),  # a repeat with a LINE user id wins over one without
        ("p4", GOOD[3]),
        (" p5 ", GOOD[4]),  # profile ids are trimmed before they are compared
        ("p5", GOOD[5]),
    ]
    result, outcomes, _ = _extract_sqlite(tmp_path, rows)
    assert outcomes == {
        "p1": (None, None, GOOD[0]),
        "p1 (repeat #1)": ("excluded", "duplicate_profile_id", GOOD[1]),
        "p2": (None, None, GOOD[1]),
        "p3": (None, None, GOOD[2]),
        "p3 (repeat #1)": ("excluded", "duplicate_profile_id", GOOD[2]),
        "p3 (repeat #2)": ("excluded", "duplicate_profile_id", GOOD[2]),
        "p4": (None, None, GOOD[3]),
        "p4 (repeat #1)": ("excluded", "duplicate_profile_id", None),
        "p5": (None, None, GOOD[4]),
        "p5 (repeat #1)": ("excluded", "duplicate_profile_id", GOOD[5]),
    }
    assert (result.eligible, result.excluded) == (5, {"duplicate_profile_id": 5})


def test_a_line_user_id_with_surrounding_spaces_is_the_same_recipient(tmp_path):
    rows = [("a", f" {GOOD[0]}"), ("b", GOOD[0]), ("c", f"{GOOD[1]}  "), ("d", f"\t{GOOD[2]}")]
    result, outcomes, _ = _extract_sqlite(tmp_path, rows)
    assert outcomes == {
        "a": (None, None, GOOD[0]),
        "b": ("excluded", "duplicate_recipient", GOOD[0]),
        "c": (None, None, GOOD[1]),
        # only spaces are trimmed, in SQL; the log shows the tab as an escape
        "d": ("failed", "invalid_recipient_id", f"\\u0009{GOOD[2]}"),
    }


def test_integer_profile_ids_are_their_decimal_text(tmp_path):
    rows = [(1, GOOD[0]), (2, GOOD[0]), ("1", GOOD[1]), (10, GOOD[2]), (" 10", GOOD[3])]
    _, outcomes, _ = _extract_sqlite(tmp_path, rows)
    assert outcomes == {
        "1": (None, None, GOOD[0]),
        "2": ("excluded", "duplicate_recipient", GOOD[0]),
        "1 (repeat #1)": ("excluded", "duplicate_profile_id", GOOD[1]),
        "10": (None, None, GOOD[2]),
        "10 (repeat #1)": ("excluded", "duplicate_profile_id", GOOD[3]),
    }


def test_an_over_long_profile_id_fails_under_its_hash_with_a_bounded_excerpt(tmp_path):
    import hashlib

    huge = "P" + "9" * 9_999
    digest = hashlib.sha256(huge.encode()).hexdigest()[:16]
    rows = [(huge, GOOD[0]), (huge, GOOD[1]), ("p2", GOOD[0]), ("p3", "U" + "a" * 10_000)]
    result, outcomes, logged = _extract_sqlite(tmp_path, rows)
    assert outcomes == {
        f"(invalid profile id) sha256:{digest}": ("failed", "invalid_profile_id", GOOD[0]),
        f"(invalid profile id) sha256:{digest} (repeat #1)": ("excluded", "duplicate_profile_id", GOOD[1]),
        "p2": (None, None, GOOD[0]),
        "p3": ("failed", "invalid_recipient_id", "U" + "a" * 99),
    }
    message = logged[f"(invalid profile id) sha256:{digest}"].line_message
    assert message == f"profile id of 10000 characters: P{'9' * 39}…"
    assert result.failed == {"invalid_profile_id": 1, "invalid_recipient_id": 1}
    for row in logged.values():
        assert max(len(row.profile_id), len(row.line_user_id or ""), len(row.line_message or "")) <= 300


def test_a_profile_id_shaped_like_a_synthetic_one_cannot_take_its_place(tmp_path):
    rows = [("p1", GOOD[0]), ("p1", GOOD[1]), ("p1 (repeat #1)", GOOD[2]), ("(no profile id) #1", GOOD[3])]
    rows += [(None, GOOD[4]), ("p\n", GOOD[5]), ("p", GOOD[6])]
    _, outcomes, logged = _extract_sqlite(tmp_path, rows)
    assert [outcomes[pid][:2] for pid in ("p1", "p1 (repeat #1)", "(no profile id) #1", "p")] == [
        (None, None),
        ("excluded", "duplicate_profile_id"),
        ("excluded", "missing_profile_id"),
        (None, None),
    ]
    invalid = sorted(row.line_message for row in logged.values() if row.reason == "invalid_profile_id")
    assert invalid == [
        "profile id in the form of a synthetic id: (no profile id) #1",
        "profile id in the form of a synthetic id: p1 (repeat #1)",
        "profile id with surrounding whitespace other than spaces: p\\u000a",
    ]


def test_a_retried_extraction_writes_the_same_rows(tmp_path):
    rows = [(None, GOOD[0]), ("p1", GOOD[0]), ("p1", f" {GOOD[0]}"), ("x" * 300, GOOD[1]), (None, None)]
    hook = _sqlite_cdp(tmp_path / "cdp.db", rows)
    ledger = _ledger(tmp_path)
    first, logged, staged = _extract_from(hook, ledger, tmp_path / "s")
    again, logged_again, staged_again = _extract_from(hook, ledger, tmp_path / "s")
    assert again.to_dict() == first.to_dict()
    assert (logged_again.keys(), staged_again) == (logged.keys(), staged)
    assert len(logged) + len(staged) == len(rows)


def test_count_sql_counts_distinct_trimmed_line_user_ids(tmp_path):
    from line_oa.integration.segment import count_sql

    rows = [("a", f" {GOOD[0]}"), ("b", GOOD[0]), ("c", "  "), ("d", None), ("e", GOOD[1]), ("f", "bad")]
    hook = _sqlite_cdp(tmp_path / "cdp.db", rows)
    assert hook.get_first(count_sql(SEGMENT_SQL))[0] == 3


_PROFILE_IDS = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "p1", " p1", "p1 ", "p2", "p3", "p1 (repeat #1)", "(no profile id) #1", "q\t"]),
    st.integers(min_value=0, max_value=3),
    st.just("L" * 300),
)
_USER_IDS = st.one_of(
    st.none(),
    st.sampled_from(["", "   ", "bad", "U" + "AB" * 16, "U" + "f" * 400]),
    st.builds(
        lambda uid, left, right: " " * left + uid + " " * right,
        st.sampled_from(GOOD[:3]),
        st.integers(min_value=0, max_value=2),
        st.integers(min_value=0, max_value=2),
    ),
)


@settings(
    max_examples=examples(60), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(rows=st.lists(st.tuples(_PROFILE_IDS, _USER_IDS), max_size=25))
def test_every_row_read_is_one_row_of_the_log_or_one_eligible_recipient(rows):
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        hook = _sqlite_cdp(pathlib.Path(tmp) / "cdp.db", rows)
        ledger = _ledger(pathlib.Path(tmp))
        try:
            result, logged, staged = _extract_from(hook, ledger, pathlib.Path(tmp) / "s")
        finally:
            ledger.close()
    assert result.profiles == len(rows)
    assert len(logged) + len(staged) == len(rows), "a row was dropped"
    uids = [uid for _, uid in staged]
    assert len(uids) == len(set(uids)), "a LINE user id is eligible twice"
    keys = list(logged) + [pid for pid, _ in staged]
    assert len(keys) == len(set(keys)), "two rows share a profile id (log key)"
    assert sum(result.excluded.values()) + sum(result.failed.values()) == len(logged)
    assert all(len(key) <= 300 for key in keys)


TRICKY_ROWS = [
    (None, GOOD[0]),
    ("", GOOD[1]),
    ("p1", GOOD[1]),
    ("p1", GOOD[0]),
    ("p2", GOOD[1]),
    ("p3", f"  {GOOD[2]} "),
    ("p4", GOOD[2]),
    (" p5 ", GOOD[3]),
    ("p5", GOOD[3]),
    ("P" + "9" * 9_999, GOOD[4]),
    ("p6", "bad"),
]


@pytest.mark.postgres
def test_postgresql_normalizes_and_numbers_repeats_as_sqlite_does(tmp_path, monkeypatch):
    from line_oa.delivery_log.store import sql_hook

    schema = f"cdp_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CDP_PG",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test",
                    "extra": {"options": f"-c search_path={schema}"}}),
    )  # fmt: skip
    conn = sql_hook("cdp_pg", tmp_path / "unused.db").get_conn()
    cursor = conn.cursor()
    cursor.execute(f"CREATE SCHEMA {schema}")
    cursor.execute(f"SET search_path TO {schema}")
    try:
        cursor.execute(
            "CREATE TABLE profiles (profile_id TEXT, line_user_id TEXT, opted_in INTEGER DEFAULT 1)"
        )
        cursor.executemany("INSERT INTO profiles (profile_id, line_user_id) VALUES (%s, %s)", TRICKY_ROWS)
        conn.commit()
        hook = sql_hook("cdp_pg", tmp_path / "unused.db")
        result, logged, staged = _extract_from(hook, _ledger(tmp_path, "pg"), tmp_path / "pg")
    finally:
        cursor.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.commit()
        conn.close()
    assert result.profiles == len(logged) + len(staged) == len(TRICKY_ROWS)
    _, on_sqlite, _ = _extract_sqlite(tmp_path, TRICKY_ROWS, run_id="sqlite")
    assert _outcomes(logged, staged) == on_sqlite
    assert on_sqlite["p1 (repeat #1)"] == ("excluded", "duplicate_profile_id", GOOD[1])
    assert on_sqlite["p4"] == ("excluded", "duplicate_recipient", GOOD[2])


@pytest.mark.parametrize(
    ("sql", "quoted"),
    [
        ("SELECT profile_id, line_user_id FROM profiles WHERE nope = 1", "no such column: nope"),
        ("SELECT profile_id, line_user_id FROM no_such_table", "no such table: no_such_table"),
        ("SELECT profile_id, line_user_id FROM profiles WHERE", "syntax error"),
    ],
    ids=["an unknown column", "an unknown table", "a syntax error"],
)
def test_a_segment_sql_error_is_a_refusal_naming_the_file_and_quoting_the_database(
    tmp_path, monkeypatch, sql, quoted
):
    import yaml

    from line_oa.campaign.validation import campaign_from_text
    from line_oa.integration import pipeline
    from line_oa.integration.launch import count_reachable
    from line_oa.integration.pipeline import SegmentQueryError, TriggerOptions
    from line_oa.integration.segment import stream_rows
    from tests.unit.campaign_docs import valid_document

    segment_file = tmp_path / "sql" / "segments" / "customers" / "gold_members.sql"
    segment_file.parent.mkdir(parents=True)
    segment_file.write_text(sql)
    _sqlite_cdp(tmp_path / "cdp.db", [("p1", GOOD[0])])
    monkeypatch.setenv("AIRFLOW__LINE_OA__SQL_ROOT", str(tmp_path / "sql"))
    monkeypatch.setenv("AIRFLOW__LINE_OA__DATA_DIR", str(tmp_path))
    campaign = campaign_from_text(yaml.safe_dump(valid_document()), "test_campaign.yaml")[0]
    expected = f"the segment SQL {segment_file} failed on the CDP connection"

    with pytest.raises(SegmentQueryError, match=re.escape(expected)) as at_launch:
        count_reachable(campaign, TriggerOptions())
    rows = pipeline.run_segment_query(
        campaign,
        lambda: stream_rows(pipeline.cdp_hook(campaign), wrap_segment_sql(pipeline.segment_sql(campaign))),
    )
    with pytest.raises(SegmentQueryError, match=re.escape(expected)) as at_extraction:
        list(rows)

    for refusal in (at_launch.value, at_extraction.value):
        assert str(refusal).startswith("target_audience.segment: ")
        assert "OperationalError: " in str(refusal)
        assert quoted in str(refusal)
        assert refusal.__cause__ is None
        assert refusal.__suppress_context__


def test_bytes_that_are_not_utf8_in_a_sqlite_cdp_become_rows_with_reasons_and_safe_excerpts(tmp_path):
    rows = [
        (b"p\xff1", GOOD[0]),  # a profile id that is not UTF-8
        ("p2", b"U\xfe" + b"0" * 31),  # a LINE user id that is not UTF-8
        ("p3", "U\x00" + "0" * 31),  # NUL, which a PostgreSQL log could not store
        ("p4", GOOD[1]),
    ]
    result, outcomes, logged = _extract_sqlite(tmp_path, rows)

    invalid = [key for key in outcomes if key.startswith("(invalid profile id) sha256:")]
    assert len(invalid) == 1
    assert outcomes[invalid[0]] == ("failed", "invalid_profile_id", GOOD[0])
    assert (
        logged[invalid[0]].line_message == "profile id with characters that are not printable text: p\\udcff1"
    )
    assert outcomes["p2"] == ("failed", "invalid_recipient_id", "U\\udcfe" + "0" * 31)
    assert outcomes["p3"] == ("failed", "invalid_recipient_id", "U\\u0000" + "0" * 31)
    assert outcomes["p4"] == (None, None, GOOD[1])
    assert result.failed == {"invalid_profile_id": 1, "invalid_recipient_id": 2}


@pytest.mark.postgres
def test_a_10000_character_profile_id_on_a_postgresql_log_is_one_row_and_the_run_goes_on(
    tmp_path, monkeypatch
):
    import yaml

    from line_oa.campaign.validation import campaign_from_text
    from line_oa.delivery_log.store import ledger_hook
    from line_oa.integration.pipeline import chunk_profiles
    from tests.delivery.conftest import POSTGRES_CONN
    from tests.unit.campaign_docs import valid_document

    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_PG_SEGMENT", json.dumps(POSTGRES_CONN))
    monkeypatch.setenv("AIRFLOW__LINE_OA__DATA_DIR", str(tmp_path))
    ledger = DeliveryLog(ledger_hook("ledger_pg_segment"), campaign_id="seg_pg", run_id=uuid.uuid4().hex)
    rows = [
        ("P" + "9" * 9_999, GOOD[0]),
        ("p2", "U" + "\x00a" * 5_000),
        ("p3", GOOD[1]),
        (b"\xff" * 10_000, GOOD[2]),
    ]
    campaign = campaign_from_text(yaml.safe_dump(valid_document()), "test_campaign.yaml")[0]
    try:
        result, logged, staged = _extract_from(
            _sqlite_cdp(tmp_path / "cdp.db", rows), ledger, tmp_path / "stage"
        )
        chunks = chunk_profiles(
            result.to_dict(), campaign=campaign, ledger=ledger
        )  # checks one row a profile

        assert result.profiles == 4
        assert [chunk["rows"] for chunk in chunks] == [1]
        assert staged == [("p3", GOOD[1])]
        assert sorted(row.reason for row in logged.values()) == [
            "invalid_profile_id",
            "invalid_profile_id",
            "invalid_recipient_id",
        ]
        for row in logged.values():
            assert max(len(row.profile_id), len(row.line_user_id or ""), len(row.line_message or "")) <= 300
    finally:
        ledger.close()
