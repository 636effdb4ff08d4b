"""The four marketer controls together on one real DAG run (issue 18, requirement 5).

A first campaign of the workspace delivers to 300 people; then a campaign that is personalized (each
recipient's first name), capped at one delivery a day, names an opt-out list and is launched inside
its quiet hours waits for the window to end and sends, by push, to everyone else, once, each their
own name.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from line_oa.integration.segment import LINE_USER_ID
from line_simulator import DEFAULT_TOKEN

from .conftest import eligible_profiles, ledger_of, opt_out_list, run_dag, task_states
from .test_personalized_run import first_names
from .test_quiet_hours_run import _window_around_now

pytestmark = pytest.mark.slow


def _listed_users(airflow_env) -> set[str]:
    with sqlite3.connect(airflow_env["base"] / "cdp.db") as conn:
        rows = conn.execute(
            "SELECT TRIM(line_user_id) FROM profiles WHERE opted_in = 1 AND profile_id LIKE '%3'"
        ).fetchall()
    return {user for (user,) in rows if user and LINE_USER_ID.match(user)}


def test_personalization_cap_suppression_and_quiet_hours_together_deliver_everyone_else_once_after_the_window(
    airflow_env, line, tmp_path, monkeypatch, fast_forward
):
    connection = {"conn_type": "line_oa", "host": line.base_url, "password": DEFAULT_TOKEN}
    connection["extra"] = {"workspaces": "retail_ctl", "timeout": 5}
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_CTL", json.dumps(connection))
    first = run_dag(airflow_env, "e2e_controls_first", run_conf={"max_recipients": 300})
    assert str(first.state) == "success", task_states(first)
    first_rows = list(ledger_of("e2e_controls_first", first.run_id).rows("sent"))
    first_sent = {row.line_user_id for row in first_rows}
    first_requests = {row.accepted_request_id for row in first_rows}
    assert 0 < len(first_sent) <= 300

    opt_out_list(tmp_path, monkeypatch, "3")
    listed = _listed_users(airflow_env)
    start, end, window_end = _window_around_now(airflow_env["campaigns"], "e2e_controls")
    dag_run = run_dag(airflow_env, "e2e_controls")
    assert str(dag_run.state) == "success", task_states(dag_run)

    validation = dag_run.get_task_instance("validate").xcom_pull(task_ids="validate")
    assert validation["quiet_hours"].startswith(f"inside quiet hours {start}–{end} Asia/Tokyo")
    record = line.admin.deliveries()
    assert len(record) == len({d["to"] for d in record}), "a LINE user got both campaigns"
    second = [d for d in record if d["request_id"] not in first_requests]
    waited = dag_run.get_task_instance("quiet_hours").xcom_pull(task_ids="quiet_hours")
    assert waited["held"] is True, "the quiet_hours task waited for the window to end"
    assert second, "the second campaign reached nobody"
    first_send = min(datetime.fromisoformat(d["time"]) for d in second)
    assert first_send >= window_end, f"sent at {first_send}, inside the quiet hours (until {window_end})"

    ledger = ledger_of("e2e_controls", dag_run.run_id)
    excluded = list(ledger.rows("excluded"))
    capped = {row.line_user_id for row in excluded if row.reason == "frequency_capped"}
    suppressed = {row.line_user_id for row in excluded if row.reason == "suppressed"}
    sent = {row.line_user_id for row in ledger.rows("sent")}
    assert suppressed == listed, "every listed person (by any profile) is suppressed, nobody else"
    assert capped <= first_sent, "only the first campaign's people are over the cap"
    assert first_sent - suppressed <= capped, "every one of them not suppressed is capped"
    assert not sent & (first_sent | listed), "a capped or suppressed person was messaged"
    unknown = {row.line_user_id for row in ledger.rows("failed") if row.reason == "unknown_recipient"}
    assert len(sent | capped | suppressed | unknown) == eligible_profiles(airflow_env), (
        "every eligible person accounted for"
    )
    accepted = {row.line_user_id: row.accepted_request_id for row in ledger.rows("sent")}
    assert {d["to"]: d["request_id"] for d in second} == accepted, "the log and LINE's record disagree"

    names = first_names(airflow_env)
    for delivery in second:
        name = names[delivery["to"]]
        greeting = line.admin.messages(delivery["messages_hash"])[0]["text"]
        assert greeting == f"{name if name and name.strip() else 'there'}さん、お帰りなさい $", delivery["to"]
    assert len({d["request_id"] for d in second}) == len(second), "a personalized bundle is sent by push"

    summary = ledger.run_summary()
    assert summary["excluded"]["suppressed"] >= len(suppressed) > 0, summary["excluded"]
    assert summary["excluded"]["frequency_capped"] >= len(capped) > 0, summary["excluded"]
    assert datetime.now(UTC) >= window_end
