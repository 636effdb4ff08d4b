"""Segment extraction: who is eligible, who is excluded and why, streamed from SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import uuid

import pytest

from line_oa.ledger import DeliveryLedger, sqlite_file_hook
from line_oa.segment import classify, extract_segment, read_segment, wrap_segment_sql

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
    assert list(classify(rows)) == expected


def test_max_recipients_excludes_the_rest_and_says_why():
    rows = [(f"p{i}", uid) for i, uid in enumerate(GOOD)]
    outcome = [status for _, _, status, _ in classify(rows, max_recipients=4)]
    assert outcome.count(None) == 4
    assert outcome.count("excluded") == 6


def test_the_segment_sql_is_wrapped_not_edited_and_must_be_one_statement():
    from line_oa.errors import LineOAError

    assert wrap_segment_sql("SELECT a FROM t;").endswith("ORDER BY line_user_id, profile_id")
    with pytest.raises(LineOAError, match="single SELECT"):
        wrap_segment_sql("SELECT 1; DROP TABLE profiles")


def _ledger(tmp_path, run_id="run-1"):
    return DeliveryLedger(sqlite_file_hook(tmp_path / "log.db"), campaign_id="seg", run_id=run_id)


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
    from line_oa.sample_cdp import PROFILES_DDL, profile_rows

    rows = list(profile_rows(profiles=2000, seed=3))
    execute(PROFILES_DDL, None)
    columns = len(rows[0])
    execute(f"INSERT INTO profiles VALUES ({', '.join([placeholder] * columns)})", rows)
    return rows


def _expected_eligible(rows) -> int:
    from line_oa.segment import LINE_USER_ID

    return len({r[1] for r in rows if r[1] and LINE_USER_ID.match(r[1]) and r[5] == 1})


def test_extract_streams_from_a_sqlite_cdp(tmp_path):
    from line_oa.segment import stream_rows

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

    from line_oa.ledger import sql_hook
    from line_oa.segment import stream_rows

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
