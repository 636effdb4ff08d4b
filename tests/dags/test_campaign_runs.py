"""End-to-end campaign DAG runs with ``dag.test()`` against the LINE simulator and a SQLite CDP."""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest

from line_oa.cli.dag_runs import recorded_run_state
from line_oa.integration.segment import LINE_USER_ID
from line_simulator import DEFAULT_TOKEN

from .conftest import (
    assert_log_matches_record,
    eligible_profiles,
    ledger_of,
    opt_out_list,
    resume_run,
    run_dag,
    run_scheduled,
    task_states,
)

pytestmark = pytest.mark.slow


def kind_rows(dag_run) -> dict[str, str]:
    """The grid's run-kind rows: the kind of the run succeeds, the other two are skipped."""
    return {task: state for task, state in task_states(dag_run).items() if task.startswith("kind_")}


ROOT = pathlib.Path(__file__).resolve().parents[2]
#: This test process's metadata database (tests/conftest.py), which the demo's judge reads.
AIRFLOW_DB = pathlib.Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"


def test_immediate_campaign_delivers_every_eligible_recipient_once(airflow_env, line):
    dag_run = run_dag(airflow_env, "e2e_immediate")
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert kind_rows(dag_run) == {
        "kind_delivery": "success",
        "kind_dry_run": "skipped",
        "kind_test_send": "skipped",
    }
    ledger = ledger_of("e2e_immediate", dag_run.run_id)
    sent = assert_log_matches_record(ledger, line)
    assert sent == eligible_profiles(airflow_env)
    counts = {(s, r): n for (s, r, _), n in ledger.counts().items()}
    assert counts[("excluded", "missing_recipient_id")] > 0
    assert counts[("excluded", "duplicate_recipient")] > 0
    assert counts[("failed", "invalid_recipient_id")] > 0
    assert not any(status in ("pending", "sending") for status, _ in counts)
    report = next((airflow_env["base"] / "data" / "reports" / "e2e_immediate").glob("*.html"))
    assert "Finished" in report.read_text()
    assert recorded_run_state(AIRFLOW_DB, "line_campaign__e2e_immediate") == "success"


def test_a_finished_one_off_campaign_refuses_a_second_delivery_unless_asked(airflow_env, line):
    first = run_dag(airflow_env, "e2e_push")
    assert str(first.state) == "success"
    delivered = line.admin.stats()["deliveries"]
    again = run_dag(airflow_env, "e2e_push")
    assert str(again.state) == "failed"
    assert task_states(again)["validate"] == "failed"
    assert line.admin.stats()["deliveries"] == delivered, "the refused run sent something"
    forced = run_dag(airflow_env, "e2e_push", run_conf={"redeliver": True})
    assert str(forced.state) == "success"
    assert line.admin.stats()["deliveries"] == 2 * delivered


def test_scheduled_campaign_runs_at_its_send_time(airflow_env, line):
    dag = airflow_env["bag"].dags["line_campaign__e2e_scheduled"]
    from line_oa.campaign.loading import load_campaign

    campaign = load_campaign(airflow_env["campaigns"] / "e2e_scheduled.yaml")
    assert [d.timestamp() for d in dag.timetable.event_dates] == [
        campaign.delivery_schedule.send_at.timestamp()
    ]
    manual = run_dag(airflow_env, "e2e_scheduled")
    assert str(manual.state) == "failed"
    assert task_states(manual)["validate"] == "failed"
    assert line.admin.deliveries() == [], "a manual trigger of a scheduled campaign delivered it"
    dag_run = run_scheduled(airflow_env, "e2e_scheduled", campaign.delivery_schedule.send_at)
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert assert_log_matches_record(ledger_of("e2e_scheduled", dag_run.run_id), line) > 0
    bundle = line.admin.messages(line.admin.deliveries()[0]["messages_hash"])
    assert [m["type"] for m in bundle] == [m["type"] for m in campaign.wire_messages()]
    assert "utm_source=line" in str(bundle)


def test_a_manual_trigger_delivers_a_scheduled_campaign_only_with_send_now(airflow_env, line):
    dry = run_dag(airflow_env, "e2e_send_now", run_conf={"dry_run": True})
    assert str(dry.state) == "success", "a dry run of a scheduled campaign is allowed"
    testers = ["U" + "c" * 32]
    # dag.test() keeps the previous run's params on the DAG object: name each one, as the Trigger form does
    test_send = run_dag(airflow_env, "e2e_send_now", run_conf={"dry_run": False, "test_recipients": testers})
    assert str(test_send.state) == "success", "a test send of a scheduled campaign is allowed"
    assert [d["to"] for d in line.admin.deliveries()] == testers
    line.admin.reset()
    now = run_dag(
        airflow_env, "e2e_send_now", run_conf={"dry_run": False, "test_recipients": [], "send_now": True}
    )
    assert str(now.state) == "success", task_states(now)
    assert assert_log_matches_record(ledger_of("e2e_send_now", now.run_id), line) > 0


def test_recurring_campaign_gives_each_run_its_own_delivery_scope(airflow_env, line):
    monday = run_scheduled(airflow_env, "e2e_recurring", datetime(2026, 11, 23, 0, tzinfo=UTC))
    next_monday = run_scheduled(airflow_env, "e2e_recurring", datetime(2026, 11, 30, 0, tzinfo=UTC))
    assert (str(monday.state), str(next_monday.state)) == ("success", "success")
    per_recipient = set(line.admin.delivery_counts().values())
    assert per_recipient == {2}, "each weekly run should reach each recipient exactly once"
    first, second = (ledger_of("e2e_recurring", run.run_id) for run in (monday, next_monday))
    assert sum(1 for _ in first.rows("sent")) == sum(1 for _ in second.rows("sent")) > 0


def test_dry_run_sends_nothing_and_reports_who_would_receive(airflow_env, line):
    dag_run = run_dag(airflow_env, "e2e_dry", run_conf={"dry_run": True})
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert kind_rows(dag_run) == {
        "kind_delivery": "skipped",
        "kind_dry_run": "success",
        "kind_test_send": "skipped",
    }
    endpoints = set(line.admin.stats()["requests"])
    read_only = {"validate_push", "validate_multicast", "quota", "quota_consumption", "aggregation_info"}
    assert endpoints <= read_only, endpoints  # a dry run checks the unit budget too, and sends nothing
    assert line.admin.deliveries() == []
    ledger = ledger_of("e2e_dry", dag_run.run_id)
    would = sum(1 for _ in ledger.rows("pending"))
    assert would == eligible_profiles(airflow_env)
    summary = dag_run.get_task_instance("summarize").xcom_pull(task_ids="summarize")
    assert (summary["dry_run"], summary["would_send"], summary["sent"]) == (True, would, 0)


def test_test_send_goes_only_to_the_listed_recipients_and_stays_out_of_the_counts(airflow_env, line):
    testers = ["U" + "a" * 32, "U" + "b" * 32]
    dag_run = run_dag(airflow_env, "e2e_test_send", run_conf={"test_recipients": testers})
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert kind_rows(dag_run) == {
        "kind_delivery": "skipped",
        "kind_dry_run": "skipped",
        "kind_test_send": "success",
    }
    assert sorted(d["to"] for d in line.admin.deliveries()) == testers
    ledger = ledger_of("e2e_test_send", dag_run.run_id)
    assert assert_log_matches_record(ledger, line, is_test=True) == 2
    assert all(row.is_test for row in ledger.rows())
    from line_oa.campaign.loading import load_campaign
    from line_oa.integration.status import state_of

    campaign = load_campaign(airflow_env["campaigns"] / "e2e_test_send.yaml")
    assert state_of(campaign, []).value == "Planned", "a test send does not launch the campaign"
    real = run_dag(airflow_env, "e2e_test_send")
    assert str(real.state) == "success", "a test send must not count as the campaign's delivery"


def test_a_draft_refuses_to_deliver(airflow_env, line):
    dag_run = run_dag(airflow_env, "e2e_draft")
    assert str(dag_run.state) == "failed"
    states = task_states(dag_run)
    assert states["validate"] == "failed"
    assert states["summarize"] == "failed", "the summary must mark the run Suspended"
    # validate retries infrastructure failures, never a refusal (AirflowFailException)
    assert dag_run.get_task_instance("validate").try_number == 1
    assert line.admin.stats()["requests_total"] == 0
    assert recorded_run_state(AIRFLOW_DB, "line_campaign__e2e_draft") == "failed"


def test_a_sender_account_of_another_workspace_is_refused(airflow_env, line):
    dag_run = run_dag(airflow_env, "e2e_other_workspace")
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["validate"] == "failed"
    assert line.admin.deliveries() == []


def test_auth_failure_suspends_before_anything_is_sent(airflow_env, line, monkeypatch):
    import json
    import os

    conn = json.loads(os.environ["AIRFLOW_CONN_LINE_OA_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_DEFAULT", json.dumps({**conn, "password": "revoked-token"}))
    dag_run = run_dag(airflow_env, "e2e_immediate", run_conf={"redeliver": True})
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["validate"] == "failed"
    assert line.admin.deliveries() == []


def test_quota_stop_suspends_and_the_resumed_run_finishes_next_month_without_duplicates(airflow_env, line):
    from line_oa.campaign.loading import load_campaign
    from line_oa.campaign.states import RunFacts
    from line_oa.integration.status import state_of

    eligible = eligible_profiles(airflow_env)
    quota = eligible // 2
    line.admin.configure(
        channels=[{"name": "default", "token": DEFAULT_TOKEN, "quota": {"type": "limited", "value": quota}}]
    )
    suspended = run_dag(airflow_env, "e2e_quota", run_conf={"allow_partial_delivery": True})
    assert str(suspended.state) == "failed"
    states = task_states(suspended)
    assert "failed" in {state for task, state in states.items() if task.startswith("push")}
    ledger = ledger_of("e2e_quota", suspended.run_id)
    stopped = sum(1 for row in ledger.rows("failed") if row.reason == "quota_exceeded")
    billed = line.admin.stats()["billed"]
    assert stopped > 0
    assert billed <= quota
    campaign = load_campaign(airflow_env["campaigns"] / "e2e_quota.yaml")
    facts = [RunFacts(suspended.run_id, str(suspended.state), start_date=suspended.start_date)]
    assert state_of(campaign, facts).value == "Suspended"

    line.admin.next_month()
    line.admin.configure(channels=[{"name": "default", "token": DEFAULT_TOKEN, "quota": {"type": "none"}}])
    resumed = resume_run(airflow_env, "e2e_quota", suspended, run_conf={"allow_partial_delivery": True})
    assert resumed.run_id == suspended.run_id, "resuming must continue the same delivery scope"
    assert str(resumed.state) == "success", task_states(resumed)
    ledger = ledger_of("e2e_quota", resumed.run_id)
    unknown = sum(1 for row in ledger.rows("failed") if row.reason == "unknown_recipient")
    assert unknown > 0, "push reports recipients unknown to the channel"
    assert assert_log_matches_record(ledger, line) + unknown == eligible
    assert not [row for row in ledger.rows("failed") if row.reason == "quota_exceeded"]
    facts = [RunFacts(resumed.run_id, str(resumed.state), start_date=resumed.start_date)]
    assert state_of(campaign, facts).value == "Finished"
    events = [event["event"] for event in ledger.run_history()]
    assert events == ["started", "suspended", "resumed", "finished"], events
    report = (airflow_env["base"] / "data" / "reports" / "e2e_quota").glob("*.html")
    text = next(report).read_text()
    assert "Suspended 1 time(s), resumed 1 time(s)." in text, "the report must show the suspension"


def test_a_short_line_outage_at_launch_is_retried_not_a_refusal(airflow_env, line):
    """Before: one 503 from LINE's validate endpoint refused the launch ("LINE rejected the messages").

    LINE answers 503 to the pre-flight endpoints until it has refused two calls, then heals: the
    outage is tied to the calls, not to the clock, so a slow start of the run cannot miss it.
    """
    endpoints = ["validate_push", "validate_multicast", "quota"]
    line.admin.configure(faults={"error_503_rate": 1.0, "fault_endpoints": endpoints})
    healed = threading.Event()

    def heal_after_two_refusals() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and line.admin.stats()["faults"].get("error_503", 0) < 2:
            time.sleep(0.2)
        line.admin.configure(faults={"error_503_rate": 0.0})
        healed.set()

    healer = threading.Thread(target=heal_after_two_refusals, daemon=True)
    healer.start()
    dag_run = run_dag(airflow_env, "e2e_dry", run_conf={"dry_run": True})
    healer.join(timeout=10)

    assert healed.is_set()
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert line.admin.stats()["faults"]["error_503"] >= 2, "the pre-flight never met the outage"
    assert line.admin.deliveries() == []


def test_suppressed_profiles_are_logged_and_never_sent(airflow_env, line, tmp_path, monkeypatch):
    opt_out_list(tmp_path, monkeypatch, "7")
    dag_run = run_dag(airflow_env, "e2e_suppressed")
    assert str(dag_run.state) == "success", task_states(dag_run)
    ledger = ledger_of("e2e_suppressed", dag_run.run_id)
    suppressed_users = {row.line_user_id for row in ledger.rows("excluded") if row.reason == "suppressed"}
    with sqlite3.connect(airflow_env["base"] / "cdp.db") as conn:
        listed = conn.execute(
            "SELECT TRIM(line_user_id) FROM profiles WHERE opted_in = 1 AND profile_id LIKE '%7'"
        ).fetchall()
    eligible_listed = {user for (user,) in listed if user and LINE_USER_ID.match(user)}
    assert suppressed_users == eligible_listed, "a listed person (by any of their profiles) is suppressed"
    delivered = {d["to"] for d in line.admin.deliveries()}
    assert not delivered & suppressed_users, "a suppressed LINE user was messaged"
    assert assert_log_matches_record(ledger, line) == eligible_profiles(airflow_env) - len(suppressed_users)


def test_a_second_campaign_caps_the_recipients_a_first_one_delivered(airflow_env, line, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_LINE_OA_CAP",
        json.dumps(
            {
                "conn_type": "line_oa",
                "host": line.base_url,
                "password": DEFAULT_TOKEN,
                "extra": {"workspaces": "retail_cap", "timeout": 5},
            }
        ),
    )
    first = run_dag(airflow_env, "e2e_cap_first", run_conf={"max_recipients": 300})
    assert str(first.state) == "success", task_states(first)
    first_sent = {row.line_user_id for row in ledger_of("e2e_cap_first", first.run_id).rows("sent")}
    assert 0 < len(first_sent) <= 300
    second = run_dag(airflow_env, "e2e_cap_second")
    assert str(second.state) == "success", task_states(second)
    ledger = ledger_of("e2e_cap_second", second.run_id)
    capped_rows = [row for row in ledger.rows("excluded") if row.reason == "frequency_capped"]
    capped = {row.line_user_id for row in capped_rows}
    assert capped == first_sent, "exactly the users the first campaign delivered to are over the cap of 1"
    second_sent = {row.line_user_id for row in ledger.rows("sent")}
    assert not second_sent & first_sent
    record = line.admin.deliveries()
    assert len(record) == len({d["to"] for d in record}), "a LINE user got both campaigns"
    assert {d["to"] for d in record} == first_sent | second_sent
    assert len(first_sent) + len(second_sent) == eligible_profiles(airflow_env), (
        "everyone else got the second"
    )
    summary = ledger.run_summary()
    # every profile of a capped person is recorded (a person may have several), and the report counts them
    assert summary["excluded"]["frequency_capped"] == len(capped_rows) >= len(first_sent), summary["excluded"]
