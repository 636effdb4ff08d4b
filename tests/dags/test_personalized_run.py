"""Personalization end to end: each recipient's own first name, sent by push, once (issue 18, req 1)."""

from __future__ import annotations

import pathlib
import sqlite3
from urllib.parse import quote

import pytest

from line_oa.campaign.messages import utf16_len
from line_oa.integration.segment import LINE_USER_ID

from .conftest import assert_log_matches_record, eligible_profiles, ledger_of, run_dag, task_states

pytestmark = pytest.mark.slow


def first_names(airflow_env) -> dict[str, str | None]:
    """The first name each eligible LINE user is sent: its first profile's (lowest profile id)."""
    with sqlite3.connect(airflow_env["base"] / "cdp.db") as conn:
        rows = conn.execute(
            "SELECT TRIM(line_user_id), first_name FROM profiles WHERE opted_in = 1 "
            "ORDER BY TRIM(line_user_id), profile_id"
        ).fetchall()
    names: dict[str, str | None] = {}
    for user, name in rows:
        if user and LINE_USER_ID.match(user):
            names.setdefault(user, name)
    return names


def test_each_recipient_gets_its_own_first_name_by_push_once(airflow_env, line):
    dag_run = run_dag(airflow_env, "e2e_personal")
    assert str(dag_run.state) == "success", task_states(dag_run)
    validation = dag_run.get_task_instance("validate").xcom_pull(task_ids="validate")
    assert validation["personalization"] == {"columns": {"first_name": "first_name"}, "mode": "push"}

    ledger = ledger_of("e2e_personal", dag_run.run_id)
    sent = assert_log_matches_record(ledger, line)
    unknown = [row for row in ledger.rows("failed") if row.reason == "unknown_recipient"]
    assert sent + len(unknown) == eligible_profiles(airflow_env), "every eligible recipient was pushed once"
    names = first_names(airflow_env)
    record = line.admin.deliveries()
    assert len({d["request_id"] for d in record}) == len(record), "one push request per recipient"
    bundles: dict[str, list] = {}
    defaults = 0
    for delivery in record:
        digest = delivery["messages_hash"]
        bundle = bundles.get(digest) or bundles.setdefault(digest, line.admin.messages(digest))
        name = names[delivery["to"]]
        shown = name if name and name.strip() else "there"
        defaults += shown == "there"
        greeting, link = bundle
        assert greeting["text"] == f"{shown}さん、お帰りなさい $", delivery["to"]
        dollar = utf16_len(greeting["text"][: greeting["text"].index("$")])
        assert [emoji["index"] for emoji in greeting["emojis"]] == [dollar], "the emoji stays on its '$'"
        assert link["text"].startswith(
            f"Your page: https://shop.example.com/for-you?name={quote(name or '', safe='')}&utm_"
        )
    assert 0 < defaults < len(record), "some recipients had no first name and got the default"

    summary = dag_run.get_task_instance("summarize").xcom_pull(task_ids="summarize")
    without = sum(1 for name in names.values() if not (name and name.strip()))
    assert summary["personalization"] == {"columns": ["first_name"], "empty": {"first_name": without}}
    report = pathlib.Path(summary["report_path"]).read_text(encoding="utf-8")
    assert f"profile.first_name: {without:,} recipients without a value got the default" in report
