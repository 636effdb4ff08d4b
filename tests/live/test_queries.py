"""The ready-made delivery-log queries in include/sql/queries/ answer right on SQLite and PostgreSQL.

Each query is bound the way docs/operations.md shows from Python (SQLAlchemy ``text()`` with the
named placeholders) against a delivery log written by ``DeliveryLog``. Fast: not a live test
(it sits beside the live run, which runs the same queries on the log a real run wrote).
"""

from __future__ import annotations

import json
import pathlib
import re
import secrets
from datetime import UTC, datetime

import pytest
import sqlalchemy

from tests.live.airflow_stack import drop_database, postgres_available, recreate_database

QUERIES = pathlib.Path(__file__).resolve().parents[2] / "include" / "sql" / "queries"
CAMPAIGN, OTHER_CAMPAIGN = "spring_sale", "welcome_back"
RUN, OTHER_RUN = "manual__2026-03-01T09:00:00+00:00", "scheduled__2026-03-02T09:00:00+00:00"


def user(n: int) -> str:
    return f"U{n:032x}"


def query(name: str) -> sqlalchemy.TextClause:
    return sqlalchemy.text((QUERIES / f"{name}.sql").read_text())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def delivery_log(request, tmp_path, monkeypatch):
    """Write two runs' rows and summaries with ``DeliveryLog``; return a SQLAlchemy engine on them."""
    from line_oa.delivery_log.store import DeliveryLog, LedgerRow, ledger_hook, sqlite_file_hook

    if request.param == "postgres":
        if not postgres_available():
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432")
        database = f"line_oa_queries_{secrets.token_hex(4)}"
        recreate_database(database)
        monkeypatch.setenv(
            "AIRFLOW_CONN_LINE_OA_QUERIES",
            json.dumps(
                {
                    "conn_type": "postgres",
                    "host": "127.0.0.1",
                    "port": 5432,
                    "login": "postgres",
                    "schema": database,
                }
            ),
        )
        make_hook = lambda: ledger_hook("line_oa_queries")  # noqa: E731
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    else:
        make_hook = lambda: sqlite_file_hook(tmp_path / "delivery_log.db")  # noqa: E731
        url = f"sqlite:///{tmp_path / 'delivery_log.db'}"

    def sent(profile: str, n: int, **kwargs) -> LedgerRow:
        return LedgerRow(
            profile, user(n), "sent", http_status=200, line_request_id=f"req-{n}",
            accepted_request_id=f"req-{n}", attempts=1, sent_at="2026-03-01T09:00:05+00:00", **kwargs,
        )  # fmt: skip

    first = DeliveryLog(
        make_hook(), campaign_id=CAMPAIGN, run_id=RUN, clock=lambda: datetime(2026, 3, 1, 9, tzinfo=UTC)
    )
    first.upsert(
        [
            sent("p01", 1),
            sent("p02", 2),
            LedgerRow("p03", None, "excluded", "missing_recipient_id"),
            LedgerRow("p04", user(2), "excluded", "duplicate_recipient"),
            LedgerRow("p05", "@shop123", "failed", "invalid_recipient_id"),
            LedgerRow("p06", user(6), "failed", "unknown_recipient", http_status=400, line_request_id="req-6",
                      line_message="Failed to send messages", attempts=1),
            LedgerRow("p07", user(7), "failed", "unknown_recipient", http_status=400, line_request_id="req-7",
                      line_message="Failed to send messages", attempts=1),
            LedgerRow("p08", user(8), "pending", chunk_index=1, retry_key="key-8"),
            LedgerRow("p09", user(9), "sending", chunk_index=1, retry_key="key-9", attempts=1),
            LedgerRow("p10", user(10), "failed", "quota_exceeded", chunk_index=0, http_status=429,
                      line_message="You have reached your monthly limit.", attempts=1),
            LedgerRow("p11", user(11), "failed", "outcome_unknown", chunk_index=0, attempts=3),
            sent("p12", 12, is_test=True),
        ]
    )  # fmt: skip
    summary = {
        "state": "Suspended", "targeted": 11, "excluded": {"missing_recipient_id": 1, "duplicate_recipient": 1},
        "sent": 2, "failed": {"unknown_recipient": 2}, "not_sent": 2, "test_sends": 1, "messages_billed": 2,
        "requests": 6, "retries": 0, "started_at": "2026-03-01T09:00:00+00:00",
        "finished_at": "2026-03-01T09:10:00+00:00",
    }  # fmt: skip
    first.write_summary(summary)
    first.close()
    second = DeliveryLog(
        make_hook(),
        campaign_id=OTHER_CAMPAIGN,
        run_id=OTHER_RUN,
        clock=lambda: datetime(2026, 3, 2, 9, tzinfo=UTC),
    )
    second.upsert([sent("p01", 1)])
    second.write_summary(
        {**summary, "state": "Finished", "targeted": 1, "sent": 1, "failed": {}, "not_sent": 0,
         "finished_at": "2026-03-02T09:10:00+00:00"}
    )  # fmt: skip
    second.close()
    engine = sqlalchemy.create_engine(url)
    yield engine
    engine.dispose()
    if request.param == "postgres":
        drop_database(database)


def fetch(engine: sqlalchemy.Engine, name: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query(name), params)]


def test_every_query_documents_its_placeholders():
    files = sorted(QUERIES.glob("*.sql"))
    assert {path.stem for path in files} >= {
        "run_outcomes", "failures_by_reason", "excluded_profiles", "unfinished_recipients",
        "profile_audit_trail", "runs_summary",
    }  # fmt: skip
    for path in files:
        text = path.read_text()
        header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
        placeholders = set(sqlalchemy.text(text).compile().params)
        assert placeholders, f"{path.name} has no named placeholder"
        for name in placeholders:
            assert f"--   {name} " in header, (
                f"{path.name}: placeholder {name} is not described in the header"
            )
        assert not set(sqlalchemy.text(header).compile().params), f"{path.name}: a placeholder in a comment"


def test_run_outcomes_count_every_profile_of_the_run_by_status_and_reason(delivery_log):
    rows = fetch(delivery_log, "run_outcomes", campaign_id=CAMPAIGN, run_id=RUN)
    counts = {(status, reason, int(is_test)): n for status, reason, is_test, n in rows}
    assert counts == {
        ("sent", "", 0): 2,
        ("sent", "", 1): 1,
        ("excluded", "missing_recipient_id", 0): 1,
        ("excluded", "duplicate_recipient", 0): 1,
        ("failed", "invalid_recipient_id", 0): 1,
        ("failed", "unknown_recipient", 0): 2,
        ("failed", "quota_exceeded", 0): 1,
        ("failed", "outcome_unknown", 0): 1,
        ("pending", "", 0): 1,
        ("sending", "", 0): 1,
    }


def test_failures_by_reason_group_line_answers_and_quote_a_request_id(delivery_log):
    rows = fetch(delivery_log, "failures_by_reason", campaign_id=CAMPAIGN, run_id=RUN)
    assert rows[0][:5] == ("unknown_recipient", 400, "Failed to send messages", 2, 1)
    assert rows[0][5] == "req-6"
    assert {row[0] for row in rows} == {
        "unknown_recipient",
        "invalid_recipient_id",
        "quota_exceeded",
        "outcome_unknown",
    }


def test_excluded_profiles_name_each_profile_and_its_reason(delivery_log):
    rows = fetch(delivery_log, "excluded_profiles", campaign_id=CAMPAIGN, run_id=RUN)
    assert [(reason, profile) for reason, profile, *_ in rows] == [
        ("duplicate_recipient", "p04"),
        ("missing_recipient_id", "p03"),
    ]


def test_unfinished_recipients_are_what_a_resumed_run_sends_again(delivery_log):
    rows = fetch(delivery_log, "unfinished_recipients", campaign_id=CAMPAIGN, run_id=RUN)
    assert [(status, reason, profile) for _, status, reason, profile, *_ in rows] == [
        ("failed", "quota_exceeded", "p10"),
        ("pending", "", "p08"),
        ("sending", "", "p09"),
    ]
    from line_oa.vocabulary import RESUMABLE_REASONS

    sql = (QUERIES / "unfinished_recipients.sql").read_text()
    listed = re.search(r"status = 'failed' AND reason IN \(([^)]*)\)", sql)
    assert listed, "the query names the resumable reasons"
    assert re.findall(r"'(\w+)'", listed.group(1)) == list(RESUMABLE_REASONS)


def test_the_audit_trail_of_a_profile_spans_campaigns_with_the_accepting_request(delivery_log):
    rows = fetch(delivery_log, "profile_audit_trail", profile_id="p01")
    assert [(row[1], row[3], row[9], row[15]) for row in rows] == [
        (CAMPAIGN, "sent", "req-1", "Suspended"),
        (OTHER_CAMPAIGN, "sent", "req-1", "Finished"),
    ]


def test_runs_summary_lists_runs_newest_first_and_filters_by_campaign(delivery_log):
    every = fetch(delivery_log, "runs_summary", campaign_id=None)
    assert [(row[0], row[2]) for row in every] == [(OTHER_CAMPAIGN, "Finished"), (CAMPAIGN, "Suspended")]
    (one,) = fetch(delivery_log, "runs_summary", campaign_id=CAMPAIGN)
    assert one[:9] == (CAMPAIGN, RUN, "Suspended", 0, 11, 2, 2, 2, 2)
