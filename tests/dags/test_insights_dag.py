"""End to end: a campaign delivered by its DAG, days pass at LINE, the insights DAG collects, the report shows it."""

from __future__ import annotations

import contextlib
import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from line_oa.cli.commands import main
from line_oa.insights.store import InsightStore

from .conftest import dag_test, run_dag, task_states

pytestmark = pytest.mark.slow
DAY = 86400


def insights_run(airflow_env, logical_date: datetime):
    dag = airflow_env["bag"].dags["line_campaign_insights"]
    return dag_test(dag, logical_date=logical_date, run_conf={"backoff_seconds": 0.2})


def stored_rows(campaign_id: str) -> list[dict]:
    store = InsightStore.connect()
    try:
        return store.statistics(campaign_id)
    finally:
        store.close()


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_delivery_then_days_at_line_then_the_insights_dag_fills_the_report(airflow_env, line):
    delivery = run_dag(airflow_env, "e2e_insights")
    assert str(delivery.state) == "success", task_states(delivery)
    sent = line.admin.deliveries()
    assert {d["unit"] for d in sent} == {"e2e_insights"}, "every real request carries the campaign's unit"
    tester = "U" + "c" * 32
    test_send = run_dag(airflow_env, "e2e_insights", run_conf={"test_recipients": [tester]})
    assert str(test_send.state) == "success", task_states(test_send)
    assert [d["unit"] for d in line.admin.deliveries() if d["to"] == tester] == [None]
    recorded = InsightStore.connect()
    try:
        assert [
            f.unit
            for f in recorded.delivered_since(datetime.now(UTC) - timedelta(hours=1))
            if f.campaign_id == "e2e_insights"
        ] == ["e2e_insights"]  # recorded by the validate task
    finally:
        recorded.close()

    now = datetime.now(UTC)
    same_day = insights_run(airflow_env, now)
    assert str(same_day.state) == "success", task_states(same_day)
    assert stored_rows("e2e_insights") == [], "LINE's figures are unready on the day of sending"

    line.admin.advance_clock(2 * DAY)
    two_days = insights_run(airflow_env, now + timedelta(days=2))
    assert str(two_days.state) == "success", task_states(two_days)
    after_first = stored_rows("e2e_insights")
    again = insights_run(airflow_env, now + timedelta(days=2, seconds=1))
    assert str(again.state) == "success", task_states(again)
    assert len(stored_rows("e2e_insights")) == len(after_first), "collecting twice added rows"

    line.admin.advance_clock(3 * DAY)
    five_days = insights_run(airflow_env, now + timedelta(days=5))
    assert str(five_days.state) == "success", task_states(five_days)
    rows = stored_rows("e2e_insights")
    overviews = sorted((r for r in rows if r["kind"] == "overview"), key=lambda r: r["as_of_day"])
    assert len(overviews) == 2
    assert 0 < overviews[0]["unique_impression"] < overviews[1]["unique_impression"] <= len(sent)
    latest = overviews[1]

    from line_oa.integration.pipeline import safe_name

    report = airflow_env["base"] / "data" / "reports" / "e2e_insights" / f"{safe_name(delivery.run_id)}.html"
    page = report.read_text(encoding="utf-8")
    ET.fromstring(page.split("<!DOCTYPE html>\n", 1)[1])  # still well-formed
    assert "LINE insights" in page
    delivered = sum(1 for d in sent if d["to"] != tester)
    assert f"{delivered:,}" in page
    assert f"{latest['unique_impression']:,}" in page
    assert f"{100 * latest['unique_impression'] / delivered:.1f}%" in page
    assert "https://shop.example.com/sale/spring</td>" in page, "the banner link without its UTM parameters"
    assert page.count("<polyline") == 2
    from line_oa.campaign.loading import load_campaign
    from line_oa.ui.data import insights_html

    tab = insights_html(load_campaign(airflow_env["campaigns"] / "e2e_insights.yaml"))
    assert f"{latest['unique_impression']:,}" in tab, "the Campaign tab shows LINE's figures too"

    code, text = cli("insights", "e2e_insights")
    assert code == 0
    assert f"unique impressions: {latest['unique_impression']:,} (open rate" in text
    assert re.search(r"^\s+5 \(", text, re.MULTILINE), "the day-5 point of the series"


def test_a_campaign_whose_new_unit_would_pass_lines_monthly_budget_is_not_launched(airflow_env, line):
    from line_oa.integration.hooks import LineOAHook

    hook = LineOAHook(line_oa_conn_id="line_oa_default")
    try:
        for number in range(1000):
            hook.push("U" + "d" * 32, [{"type": "text", "text": "hi"}], aggregation_unit=f"u{number}")
    finally:
        hook.close()
    before = len(line.admin.deliveries())
    run = run_dag(airflow_env, "e2e_unit_budget")
    assert str(run.state) == "failed"
    assert task_states(run)["validate"] == "failed"
    assert len(line.admin.deliveries()) == before, "nothing was sent"


def test_the_insights_command_names_a_campaign_that_was_never_delivered(airflow_env):
    code, text = cli("insights", "no_such_campaign")
    assert code == 1
    assert "no real delivery" in text
