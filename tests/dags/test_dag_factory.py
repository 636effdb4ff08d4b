"""The DAG folder and the DAGs the factory renders from campaign files (no network, no database)."""

from __future__ import annotations

import pathlib
import shutil

import pytest
import yaml

from line_oa.errors import LineOAError
from line_oa.integration.dag_factory import build_campaign_dags, describe, schedule_args

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "include" / "campaigns"


def test_the_dag_folder_imports_without_errors_and_has_one_dag_per_shipped_campaign(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    for name in ("AIRFLOW__LINE_OA__CAMPAIGNS_DIR", "LINE_OA_CAMPAIGNS_DIR"):
        monkeypatch.delenv(name, raising=False)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(
        [*(f"line_campaign__{p.stem}" for p in SHIPPED.glob("*.yaml")), "line_campaign_insights"]
    )


def test_the_insights_dag_is_daily_and_collects_one_campaign_at_a_time():
    from line_oa.integration.insights_dag import build_insights_dag

    dag = build_insights_dag()
    assert [t.task_id for t in dag.topological_sort()] == ["find_campaigns", "collect", "refresh_reports"]
    assert dag.max_active_runs == 1
    assert dag.task_dict["collect"].max_active_tis_per_dag == 1
    assert (sorted(dag.tags), dag.default_args["retries"]) == (["insights", "line"], 2)
    assert dag.schedule == "@daily"


def test_every_generated_dag_has_the_pipeline_shape_and_the_house_policies():
    from line_oa.campaign.loading import load_campaign

    dags, errors = build_campaign_dags(SHIPPED)
    assert errors == {}
    names = {c.dag_id: c.name for c in map(load_campaign, SHIPPED.glob("*.yaml"))}
    for dag in dags.values():
        assert [t.task_id for t in dag.topological_sort() if not t.task_id.startswith("kind_")] == [
            "validate", "quiet_hours", "extract_segment", "chunk_profiles", "push", "summarize",
        ]  # fmt: skip
        assert dag.get_task("quiet_hours").upstream_task_ids == {"validate"}
        assert dag.get_task("quiet_hours").downstream_task_ids == {"extract_segment"}, (
            "a held run extracts its segment when quiet hours end, not before"
        )
        kinds = {t.task_id: t.task_display_name for t in dag.tasks if t.task_id.startswith("kind_")}
        assert kinds == {
            "kind_delivery": "real delivery",
            "kind_dry_run": "dry run",
            "kind_test_send": "test send",
        }
        assert dag.dag_display_name == names[dag.dag_id], "the DAG list shows the campaign's name"
        assert dag.get_task("push").downstream_task_ids == {"summarize"}
        assert dag.get_task("summarize").trigger_rule == "all_done"
        assert {"line", "campaign", "retail_jp"} <= set(dag.tags)
        assert dag.max_active_runs == 1
        assert dag.catchup is False
        assert set(dag.params) == {
            "dry_run",
            "test_recipients",
            "max_recipients",
            "redeliver",
            "allow_partial_delivery",
            "send_now",
        }
        assert all(task.owner == "marketing" for task in dag.tasks)
        assert dag.get_task("validate").retries >= 1, (
            "infrastructure failures are retried (refusals never are)"
        )
        assert dag.get_task("summarize").retries >= 1
        assert dag.get_task("push").retries >= 1, "a killed push task must be retried"


def test_doc_md_tells_the_quiet_hours_and_that_tests_are_not_held(tmp_path):
    from line_oa.campaign.loading import load_campaign

    document = yaml.safe_load((SHIPPED / "welcome_back.yaml").read_text())
    document["delivery_schedule"]["quiet_hours"] = {
        "start": "21:00",
        "end": "09:00",
        "timezone": "Asia/Tokyo",
    }
    (tmp_path / "welcome_back.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
    doc = describe(load_campaign(tmp_path / "welcome_back.yaml"))
    assert "- **Quiet hours**: no sending 21:00–09:00 (Asia/Tokyo)" in doc
    assert "dry runs and test sends are not held" in doc
    assert "- **Quiet hours**: none of its own (the sender account's" in describe(
        load_campaign(SHIPPED / "welcome_back.yaml")
    )


def test_doc_md_tells_the_audience_schedule_and_tagged_links():
    from line_oa.campaign.loading import load_campaign

    doc = describe(load_campaign(SHIPPED / "spring_sale.yaml"))
    assert "customers/" in doc
    assert "Schedule" in doc
    assert "once at 2027-03-20" in doc
    assert "utm_source=line" in doc
    assert "utm_medium=social" in doc


@pytest.mark.parametrize(
    ("campaign", "timetable"),
    [
        ("welcome_back", "NullTimetable"),
        ("spring_sale", "EventsTimetable"),
    ],
    ids=["an immediate campaign runs only when triggered", "a scheduled campaign runs once at send_at"],
)
def test_schedules_map_to_timetables(campaign, timetable):
    from line_oa.campaign.loading import load_campaign

    dags, _ = build_campaign_dags(SHIPPED)
    assert type(dags[f"line_campaign__{campaign}"].timetable).__name__ == timetable
    args = schedule_args(load_campaign(SHIPPED / f"{campaign}.yaml"))
    assert args["start_date"].year == 2024, "start_date is fixed, never 'now'"


def test_a_recurring_campaign_runs_on_its_cron_in_its_timezone(tmp_path):
    document = yaml.safe_load((SHIPPED / "welcome_back.yaml").read_text())
    document.update(
        id="weekly", delivery_schedule={"type": "recurring", "cron": "0 9 * * 1", "timezone": "Asia/Tokyo"}
    )
    (tmp_path / "weekly.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
    dags, errors = build_campaign_dags(tmp_path)
    timetable = dags["line_campaign__weekly"].timetable
    assert errors == {}
    assert type(timetable).__name__ == "CronTriggerTimetable"
    assert (timetable._expression, str(timetable._timezone)) == ("0 9 * * 1", "Asia/Tokyo")
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=_no_restriction())
    assert first.run_after.in_timezone("Asia/Tokyo").hour == 9, "the cron is read in the campaign's timezone"


def _no_restriction():
    from datetime import UTC, datetime

    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=datetime(2026, 11, 1, tzinfo=UTC), latest=None, catchup=False)


def test_a_broken_file_never_hides_the_others(tmp_path, caplog):
    shutil.copy(SHIPPED / "welcome_back.yaml", tmp_path / "welcome_back.yaml")
    (tmp_path / "broken.yaml").write_text("id: broken\nname: [unclosed\n")
    dags, errors = build_campaign_dags(tmp_path, strict=False)
    assert "line_campaign__welcome_back" in dags
    assert list(errors) == ["broken.yaml"]
    placeholder = dags["line_campaign__broken"]
    assert "invalid" in placeholder.tags
    assert "broken.yaml" in placeholder.doc_md
    assert "broken.yaml" in caplog.text


def test_strict_mode_turns_a_broken_file_into_an_import_error(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text("id: broken\n")
    monkeypatch.setenv("AIRFLOW__LINE_OA__STRICT_DAGS", "1")
    with pytest.raises(LineOAError, match=r"broken\.yaml"):
        build_campaign_dags(tmp_path)


def test_two_files_with_the_same_campaign_id_are_reported(tmp_path):
    shutil.copy(SHIPPED / "welcome_back.yaml", tmp_path / "welcome_back.yaml")
    text = (SHIPPED / "welcome_back.yaml").read_text()
    (tmp_path / "zz_copy.yaml").write_text(text)
    _, errors = build_campaign_dags(tmp_path)
    assert list(errors) == ["zz_copy.yaml"]


def test_channel_pools_put_every_push_task_of_a_sender_account_in_one_pool(monkeypatch):
    monkeypatch.setenv("AIRFLOW__LINE_OA__CHANNEL_POOLS", "1")
    dags, _ = build_campaign_dags(SHIPPED)
    pools = {dag.get_task("push").pool for dag in dags.values()}
    assert pools == {"line_oa__line_oa_default"}


def test_a_broken_file_is_reported_by_the_dag_processor_not_in_other_campaigns_task_logs(
    tmp_path, caplog, monkeypatch
):
    """A task process parses the whole folder too (with Airflow's parsing context set to its DAG)."""
    shutil.copy(SHIPPED / "welcome_back.yaml", tmp_path / "welcome_back.yaml")
    (tmp_path / "broken.yaml").write_text("id: broken\nname: [unclosed\n")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "line_campaign__welcome_back")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "validate")
    with caplog.at_level("DEBUG"):
        dags, errors = build_campaign_dags(tmp_path, strict=False)
    assert list(dags) == ["line_campaign__welcome_back"], "a task process builds its own DAG only"
    assert errors == {}
    assert "broken.yaml" not in caplog.text, "another campaign's task log mentions the broken file"
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID")
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID")
    dags, errors = build_campaign_dags(tmp_path, strict=False)
    assert list(errors) == ["broken.yaml"], "the DAG processor shows the problem as a placeholder DAG"
    assert sorted(dags) == ["line_campaign__broken", "line_campaign__welcome_back"]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "validate")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "line_campaign__broken")
    caplog.clear()
    build_campaign_dags(tmp_path, strict=False)
    assert "broken.yaml" in caplog.text, "the broken file's own task says why it fails"
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "line_campaign_insights")
    caplog.clear()
    assert build_campaign_dags(tmp_path, strict=False) == ({}, {}), "another DAG's task builds no campaign"
    assert "broken.yaml" not in caplog.text
