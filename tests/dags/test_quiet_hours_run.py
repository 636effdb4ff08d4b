"""Quiet hours end to end: a real delivery launched inside them waits, deferred, and sends when they end."""

from __future__ import annotations

import os
import pathlib
import time
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from .conftest import assert_log_matches_record, eligible_profiles, ledger_of, run_dag, task_states

pytestmark = pytest.mark.slow
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


def _window_around_now(campaigns_dir, campaign_id: str) -> tuple[str, str, datetime]:
    """Rewrite the campaign's quiet hours to a window holding now and ending 60 to 120 seconds from now
    (the runs that wait fast-forward their clock to the end: ``fast_forward``)."""
    now = datetime.now(TOKYO)
    minute = now.replace(second=0, microsecond=0)
    end = minute + timedelta(minutes=2)
    start, closing = (minute - timedelta(minutes=1)).strftime("%H:%M"), end.strftime("%H:%M")
    path = campaigns_dir / f"{campaign_id}.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["delivery_schedule"]["quiet_hours"] = {"start": start, "end": closing, "timezone": "Asia/Tokyo"}
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return start, closing, end


def test_a_launch_inside_quiet_hours_waits_deferred_and_delivers_when_they_end(
    airflow_env, line, fast_forward
):
    start, end, window_end = _window_around_now(airflow_env["campaigns"], "e2e_quiet")
    launched, hold = time.monotonic(), (window_end - datetime.now(UTC)).total_seconds()
    dag_run = run_dag(airflow_env, "e2e_quiet")
    assert str(dag_run.state) == "success", task_states(dag_run)

    validation = dag_run.get_task_instance("validate").xcom_pull(task_ids="validate")
    assert validation["quiet_hours"] == (
        f"inside quiet hours {start}–{end} Asia/Tokyo: delivery starts at {window_end.isoformat(timespec='minutes')}"
    ), "the launch says when it will start"
    waited = dag_run.get_task_instance("quiet_hours").xcom_pull(task_ids="quiet_hours")
    assert waited["held"] is True, "the quiet_hours task was resumed by its trigger"
    assert datetime.fromisoformat(waited["sending_from"]) >= window_end

    record = line.admin.deliveries()
    assert record, "the campaign was delivered after the window"
    assert fast_forward.shifted > timedelta(0), "the run was deferred until the window's end"
    first = min(datetime.fromisoformat(d["time"]) for d in record)
    assert first >= window_end, f"LINE received a message at {first}, inside quiet hours (until {window_end})"
    lasted = time.monotonic() - launched + fast_forward.shifted.total_seconds()
    assert lasted >= hold, "the run lasted, by the test's clock, at least until the window ended"
    sent = assert_log_matches_record(ledger_of("e2e_quiet", dag_run.run_id), line)
    assert sent == eligible_profiles(airflow_env), "every eligible recipient once, after the window"

    summary = dag_run.get_task_instance("summarize").xcom_pull(task_ids="summarize")
    held = summary["quiet_hours"]
    assert held["until"] == waited["sending_from"]
    assert 0 < held["seconds"] <= hold + 1, (held, hold)
    report = pathlib.Path(summary["report_path"]).read_text(encoding="utf-8")
    assert f"Quiet hours: held {held['seconds'] / 60:,.1f} min" in report, (
        "the report says how long it waited"
    )


def test_a_dry_run_inside_quiet_hours_is_not_held(airflow_env, line):
    start, end, window_end = _window_around_now(airflow_env["campaigns"], "e2e_quiet")
    dag_run = run_dag(airflow_env, "e2e_quiet", run_conf={"dry_run": True})
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert datetime.now(TOKYO) < window_end, "the dry run finished inside the window: it did not wait"
    validation = dag_run.get_task_instance("validate").xcom_pull(task_ids="validate")
    assert (
        validation["quiet_hours"]
        == f"inside quiet hours {start}–{end} Asia/Tokyo: a dry run is not held, it runs now"
    )
    assert dag_run.get_task_instance("quiet_hours").xcom_pull(task_ids="quiet_hours")["held"] is False
    assert line.admin.deliveries() == []
    assert dag_run.get_task_instance("summarize").xcom_pull(task_ids="summarize")["quiet_hours"] is None


@pytest.mark.parametrize(
    "where",
    ["campaign", "sender account"],
    ids=["quiet hours of the campaign", "quiet hours of the sender account"],
)
def test_a_push_task_started_inside_quiet_hours_defers_and_sends_nothing(
    airflow_env, line, tmp_path, monkeypatch, where
):
    """A push task retried or cleared inside quiet hours (the quiet_hours task is behind it) still waits."""
    import json

    from airflow.sdk.exceptions import TaskDeferred

    from line_oa.integration.chunks import write_chunks
    from line_oa.integration.operators import LineOAPushOperator

    now = datetime.now(TOKYO).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    document = yaml.safe_load((airflow_env["campaigns"] / "e2e_quiet.yaml").read_text(encoding="utf-8"))
    window = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": "Asia/Tokyo"}
    if where == "campaign":
        document["delivery_schedule"]["quiet_hours"] = window
    else:
        document["delivery_schedule"].pop("quiet_hours")
        connection = json.loads(os.environ["AIRFLOW_CONN_LINE_OA_DEFAULT"])
        connection["extra"]["quiet_hours"] = window
        monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_DEFAULT", json.dumps(connection))
    campaign_file = tmp_path / "e2e_quiet.yaml"
    campaign_file.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    recipients = [(f"p{i}", f"U{i:032x}") for i in range(1, 6)]
    chunk = write_chunks(recipients, staging_uri=tmp_path / "chunks", chunk_size=100)[0]
    operator = LineOAPushOperator(task_id="push", campaign_file=str(campaign_file), chunk=chunk, run_id="q-1")

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"params": {}})
    assert deferred.value.trigger.moment == end.astimezone(UTC)
    assert deferred.value.method_name == "execute", "when the window ends the task runs again from the top"
    assert line.admin.deliveries() == [], "nothing reached LINE inside quiet hours"
    assert list(ledger_of("e2e_quiet", "q-1").rows()) == [], "no row was marked sending"
