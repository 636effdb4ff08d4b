"""Clock and schedule edges: timezones, a DST change, "now" itself, and overlapping recurring runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from line_oa.campaign.loading import load_campaign
from line_oa.campaign.validation import validate_campaign_file
from line_oa.integration.dag_factory import build_campaign_dag, schedule_args
from tests.unit.campaign_docs import SQL_ROOT, valid_document


def campaign_file(tmp_path, schedule: dict):
    document = valid_document()
    document["delivery_schedule"] = schedule
    path = tmp_path / "test_campaign.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def runs_after(timetable, start: datetime, count: int) -> list[datetime]:
    """Return the next ``count`` run times of a timetable from ``start`` (what the scheduler would create)."""
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(earliest=start, latest=None, catchup=True)
    runs, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        runs.append(info.run_after)
        last = info.data_interval
    return runs


@pytest.mark.parametrize(
    ("send_at", "expected_utc"),
    [
        ("2027-03-20T10:00:00+09:00", datetime(2027, 3, 20, 1, 0, tzinfo=UTC)),
        ("2027-03-20T01:00:00Z", datetime(2027, 3, 20, 1, 0, tzinfo=UTC)),
        ("2027-03-20T10:00:00Z", datetime(2027, 3, 20, 10, 0, tzinfo=UTC)),
        ("2027-03-19T21:00:00-04:00", datetime(2027, 3, 20, 1, 0, tzinfo=UTC)),
    ],
    ids=[
        "Tokyo 10:00 is 01:00 UTC",
        "the same instant in UTC",
        "10:00 UTC is nine hours later",
        "New York EDT",
    ],
)
def test_send_at_runs_at_the_instant_it_names_whatever_its_offset(tmp_path, send_at, expected_utc):
    from airflow.timetables.base import TimeRestriction

    path = campaign_file(tmp_path, {"type": "scheduled", "send_at": send_at})
    campaign = load_campaign(path)
    timetable = schedule_args(campaign)["schedule"]
    assert [event.timestamp() for event in timetable.event_dates] == [expected_utc.timestamp()]
    assert runs_after(timetable, datetime(2027, 1, 1, tzinfo=UTC), 1) == [expected_utc]
    assert (
        timetable.next_dagrun_info(
            last_automated_data_interval=None,
            restriction=TimeRestriction(
                earliest=expected_utc + timedelta(seconds=1), latest=None, catchup=False
            ),
        )
        is None
    ), "a one-off campaign must not run a second time"


@pytest.mark.parametrize(
    ("cron", "start", "expected"),
    [
        (  # 09:00 New York: 14:00 UTC under EST, 13:00 UTC from Sunday 14 March 2027 (EDT)
            "0 9 * * *",
            datetime(2027, 3, 12, tzinfo=UTC),
            ["2027-03-12T14:00", "2027-03-13T14:00", "2027-03-14T13:00", "2027-03-15T13:00"],
        ),
        (  # 02:30 does not exist on 14 March: that day's run is at 03:30 EDT, once
            "30 2 * * *",
            datetime(2027, 3, 12, tzinfo=UTC),
            ["2027-03-12T07:30", "2027-03-13T07:30", "2027-03-14T07:30", "2027-03-15T06:30"],
        ),
        (  # 01:30 happens twice on 7 November: one run only
            "30 1 * * *",
            datetime(2027, 11, 5, tzinfo=UTC),
            ["2027-11-05T05:30", "2027-11-06T05:30", "2027-11-07T06:30", "2027-11-08T06:30"],
        ),
    ],
    ids=["09:00 across spring forward", "a skipped local time", "a repeated local time"],
)
def test_a_recurring_campaign_runs_once_a_local_day_across_dst_changes(tmp_path, cron, start, expected):
    path = campaign_file(tmp_path, {"type": "recurring", "cron": cron, "timezone": "America/New_York"})
    timetable = schedule_args(load_campaign(path))["schedule"]
    runs = runs_after(timetable, start, len(expected))
    assert [run.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") for run in runs] == expected
    assert len({run.astimezone(timetable._timezone).date() for run in runs}) == len(runs), (
        "two runs in one local day"
    )


@pytest.mark.parametrize(
    ("offset", "refused"),
    [(timedelta(0), True), (timedelta(microseconds=-1), False), (timedelta(microseconds=1), True)],
    ids=["send_at exactly now is in the past", "one microsecond ahead is the future", "one microsecond late"],
)
def test_send_at_exactly_now_is_refused_as_in_the_past(tmp_path, offset, refused):
    send_at = datetime(2027, 3, 20, 1, 0, tzinfo=UTC)
    path = campaign_file(tmp_path, {"type": "scheduled", "send_at": "2027-03-20T10:00:00+09:00"})
    report = validate_campaign_file(path, now=send_at + offset, sql_root=SQL_ROOT)
    problems = [p for p in report.problems if p.path == "delivery_schedule.send_at"]
    assert bool(problems) == refused, report.problems
    if refused:
        assert "is in the past" in problems[0].message


def test_the_launch_check_does_not_refuse_a_scheduled_run_that_starts_a_little_after_send_at(tmp_path):
    """The scheduler starts the run at or after send_at: validate at run time must not call it 'past'."""
    path = campaign_file(tmp_path, {"type": "scheduled", "send_at": "2027-03-20T10:00:00+09:00"})
    import inspect

    from line_oa.integration import launch

    source = inspect.getsource(launch.launchable_campaign)
    assert "validate_campaign_file(" in source
    assert "now=datetime(1970" in source
    assert validate_campaign_file(path, now=datetime(1970, 1, 1, tzinfo=UTC), sql_root=SQL_ROOT).ok


@pytest.mark.slow
def test_a_recurring_campaign_whose_previous_run_is_still_going_queues_the_next_one(rel_env, tmp_path):
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    campaign = load_campaign(rel_env["campaigns"] / "rel_quota.yaml")
    dag = build_campaign_dag(campaign)
    assert dag.max_active_runs == 1
    dag_id = dag.dag_id
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    sync_bag_to_db(rel_env["bag"], "dags-folder", None)
    first_tick = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    from airflow.models.dag import DagModel

    with create_session() as session:
        session.query(DagModel).filter(DagModel.dag_id == dag_id).update(
            {"is_paused": False, "is_stale": False}
        )
        session.query(DagRun).filter(DagRun.dag_id == dag_id).delete()
        scheduler_dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        for number, state in enumerate((DagRunState.RUNNING, DagRunState.QUEUED)):
            when = first_tick + timedelta(days=number)
            scheduler_dag.create_dagrun(
                run_id=f"scheduled__overlap_{number}",
                logical_date=when,
                data_interval=(when, when),
                run_after=when,
                run_type=DagRunType.SCHEDULED,
                triggered_by=DagRunTriggeredByType.TIMETABLE,
                state=state,
                session=session,
            )
    runner = SchedulerJobRunner(job=Job())
    with create_session() as session:
        runner._start_queued_dagruns(session)
    with create_session() as session:
        states = {run.run_id: run.state for run in session.query(DagRun).filter(DagRun.dag_id == dag_id)}
    assert states == {"scheduled__overlap_0": "running", "scheduled__overlap_1": "queued"}
    with create_session() as session:
        session.query(DagRun).filter(DagRun.run_id == "scheduled__overlap_0").update(
            {"state": DagRunState.SUCCESS}
        )
    with create_session() as session:
        runner._start_queued_dagruns(session)
    with create_session() as session:
        second = session.query(DagRun).filter(DagRun.run_id == "scheduled__overlap_1").one()
        assert second.state == "running", "the queued run did not start once the previous one finished"
        session.query(DagRun).filter(DagRun.dag_id == dag_id).delete()
