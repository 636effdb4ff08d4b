"""Campaign states: every row of the DESIGN.md table, from the Airflow facts a user can see."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from line_oa.campaign.states import (
    SEND_AT_GRACE,
    CampaignState,
    RunFacts,
    RunKind,
    campaign_state,
    describe_state,
    latest_run,
    missed_send_at,
    run_kind,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FUTURE = NOW + timedelta(days=2)
PAST = NOW - timedelta(hours=3)


def run(
    state: str,
    *,
    started_hours_ago: float | None = 1,
    logical_hours_ago: float | None = None,
    kind: RunKind = RunKind.DELIVERY,
    entered: bool = True,
) -> RunFacts:
    """Build a run that started (or was planned) some hours before NOW."""
    start = None if started_hours_ago is None else NOW - timedelta(hours=started_hours_ago)
    logical = None if logical_hours_ago is None else NOW - timedelta(hours=logical_hours_ago)
    return RunFacts(
        run_id=f"manual__{state}_{started_hours_ago}",
        state=state,
        start_date=start,
        logical_date=logical,
        kind=kind,
        entered=entered,
    )


def state_of(
    *, runs=(), status="active", schedule_type="immediate", send_at=None, paused=False, schedule_ended=False
):
    return campaign_state(
        status=status,
        schedule_type=schedule_type,
        send_at=send_at,
        runs=list(runs),
        now=NOW,
        paused=paused,
        schedule_ended=schedule_ended,
    )


@pytest.mark.parametrize(
    ("runs", "schedule_type"),
    [
        pytest.param([], "immediate", id="a draft with no run is Draft"),
        pytest.param([run("running")], "immediate", id="a draft with a running run is still Draft"),
        pytest.param([run("success")], "scheduled", id="a draft whose earlier run succeeded is Draft"),
        pytest.param([run("failed")], "recurring", id="a draft whose earlier run failed is Draft"),
    ],
)
def test_a_draft_campaign_is_draft_whatever_its_runs(runs, schedule_type):
    assert state_of(status="draft", runs=runs, schedule_type=schedule_type) is CampaignState.DRAFT


@pytest.mark.parametrize(
    ("schedule_type", "send_at", "paused"),
    [
        pytest.param("scheduled", FUTURE, False, id="scheduled for a future time is Planned"),
        pytest.param(
            "scheduled",
            NOW - SEND_AT_GRACE,
            False,
            id="send_at just passed, the run is about to start: Planned",
        ),
        pytest.param("immediate", None, False, id="immediate and not yet triggered is Planned"),
        pytest.param("recurring", None, False, id="recurring before its first run is Planned"),
        pytest.param("immediate", None, True, id="a new paused campaign is Planned (waits to be unpaused)"),
        pytest.param("scheduled", FUTURE, True, id="a paused scheduled campaign before send_at is Planned"),
        pytest.param("recurring", None, True, id="a paused recurring campaign never run is Planned"),
    ],
)
def test_a_launched_campaign_without_runs_is_planned(schedule_type, send_at, paused):
    assert state_of(schedule_type=schedule_type, send_at=send_at, paused=paused) is CampaignState.PLANNED


@pytest.mark.parametrize("paused", [False, True])
def test_a_scheduled_campaign_whose_send_at_passed_without_a_delivery_is_suspended(paused):
    assert state_of(schedule_type="scheduled", send_at=PAST, paused=paused) is CampaignState.SUSPENDED
    assert missed_send_at(schedule_type="scheduled", send_at=PAST, runs=[], now=NOW)
    dry = [run("success", kind=RunKind.DRY_RUN)]
    assert state_of(schedule_type="scheduled", send_at=PAST, runs=dry) is CampaignState.SUSPENDED
    assert not missed_send_at(schedule_type="scheduled", send_at=FUTURE, runs=[], now=NOW)
    assert not missed_send_at(schedule_type="scheduled", send_at=PAST, runs=[run("success")], now=NOW)


@pytest.mark.parametrize(
    "runs",
    [
        pytest.param([run("queued", started_hours_ago=None)], id="a queued run makes it Active"),
        pytest.param([run("running")], id="a running run makes it Active"),
        pytest.param(
            [run("failed", started_hours_ago=5), run("running", started_hours_ago=1)],
            id="a retry running after a failure is Active",
        ),
        pytest.param(
            [run("running", started_hours_ago=5), run("success", started_hours_ago=1)],
            id="a run still running is Active even if a later one succeeded",
        ),
        pytest.param([run("RUNNING")], id="run states are compared without case"),
    ],
)
def test_a_queued_or_running_run_makes_the_campaign_active(runs):
    assert state_of(runs=runs) is CampaignState.ACTIVE


def test_a_queued_run_of_a_paused_dag_is_still_active():
    assert state_of(runs=[run("queued", started_hours_ago=None)], paused=True) is CampaignState.ACTIVE


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        pytest.param([run("success")], CampaignState.FINISHED, id="one successful run is Finished"),
        pytest.param([run("failed")], CampaignState.SUSPENDED, id="one failed run is Suspended"),
        pytest.param([run("canceled")], CampaignState.SUSPENDED, id="a cancelled run counts as failed"),
        pytest.param(
            [run("upstream_failed")], CampaignState.SUSPENDED, id="an unknown run state counts as failed"
        ),
        pytest.param(
            [run("failed", started_hours_ago=5), run("success", started_hours_ago=1)],
            CampaignState.FINISHED,
            id="a successful re-run after a failure is Finished",
        ),
        pytest.param(
            [run("success", started_hours_ago=1), run("failed", started_hours_ago=5)],
            CampaignState.FINISHED,
            id="the latest run wins whatever the order they are listed in",
        ),
        pytest.param(
            [run("success", started_hours_ago=5), run("failed", started_hours_ago=1)],
            CampaignState.SUSPENDED,
            id="a failed re-run after a success is Suspended",
        ),
        pytest.param(
            [
                run("failed", started_hours_ago=None, logical_hours_ago=1),
                run("success", started_hours_ago=5),
            ],
            CampaignState.SUSPENDED,
            id="a run without start date falls back to its logical date",
        ),
        pytest.param(
            [run("success", started_hours_ago=1), run("failed", started_hours_ago=None)],
            CampaignState.SUSPENDED,
            id="a run with no date at all counts as the latest",
        ),
    ],
)
def test_the_latest_finished_run_decides_a_one_off_campaign(runs, expected):
    assert state_of(runs=runs, schedule_type="scheduled", send_at=PAST) is expected


def test_a_finished_one_off_campaign_stays_finished_when_its_dag_is_paused():
    assert state_of(runs=[run("success")], paused=True) is CampaignState.FINISHED


@pytest.mark.parametrize(
    ("runs", "paused", "expected"),
    [
        pytest.param([run("success")], False, CampaignState.PLANNED, id="between runs it is Planned"),
        pytest.param(
            [run("success")], True, CampaignState.SUSPENDED, id="paused between runs it is Suspended"
        ),
        pytest.param(
            [run("failed")], False, CampaignState.SUSPENDED, id="after a failed run it is Suspended"
        ),
    ],
)
def test_a_recurring_campaign_between_runs(runs, paused, expected):
    assert state_of(runs=runs, schedule_type="recurring", paused=paused) is expected


def test_an_unknown_schedule_type_is_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="immediate, scheduled, recurring"):
        state_of(schedule_type="weekly")


def test_latest_run_of_no_runs_is_none():
    assert latest_run([]) is None


def test_states_read_as_the_product_spells_them():
    assert [str(state) for state in CampaignState] == ["Draft", "Planned", "Active", "Finished", "Suspended"]
    assert CampaignState("Suspended") is CampaignState.SUSPENDED


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        pytest.param(
            {"sent": 1234, "failed": 56, "not_sent": 7800},
            "Suspended — 1,234 sent, 56 failed, 7,800 not yet sent",
            id="summary counts are shown with thousands separators",
        ),
        pytest.param(
            {"sent": 10, "failed": {"unknown_recipient": 2, "rejected_by_line": 3}, "not_sent": 0},
            "Suspended — 10 sent, 5 failed, 0 not yet sent",
            id="failures by reason are added up",
        ),
        pytest.param(
            {"sent": 1, "failed": 0, "excluded": {"missing_recipient_id": 4}, "not_sent": 0},
            "Suspended — 1 sent, 0 failed, 4 excluded, 0 not yet sent",
            id="exclusions are shown when given",
        ),
        pytest.param(
            {"sent": 5, "pending": 3, "sending": 2},
            "Suspended — 5 sent, 0 failed, 5 not yet sent",
            id="pending and sending rows of the delivery log are not yet sent",
        ),
    ],
)
def test_describe_state_gives_one_line_with_the_latest_counts(counts, expected):
    line = describe_state(CampaignState.SUSPENDED, counts)
    assert line == expected
    assert "\n" not in line


@pytest.mark.parametrize("state", list(CampaignState), ids=lambda state: f"{state.value} without counts")
def test_describe_state_without_counts_says_what_the_state_means(state):
    line = describe_state(state.value, None)
    assert line.startswith(f"{state.value} — ")
    assert len(line) > len(state.value) + 10


def test_the_state_module_imports_no_airflow():
    assert not any(
        name == "airflow" or name.startswith("airflow.")
        for name in _modules_loaded_by("line_oa.campaign.states")
    )


def _modules_loaded_by(module: str) -> set[str]:
    """Return the modules a fresh interpreter has loaded after importing ``module``."""
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


DRY, TEST, REDELIVER = RunKind.DRY_RUN, RunKind.TEST_SEND, RunKind.REDELIVERY


def refused(state="failed", hours=0.5, kind=RunKind.DELIVERY, run_type="manual"):
    """A real run refused at launch: it never entered delivery."""
    return dataclasses.replace(
        run(state, started_hours_ago=hours, kind=kind, entered=False), run_type=run_type
    )


# (id, file status, schedule type, send_at, paused, schedule ended, runs) -> state: the whole mapping.
STATE_TABLE = [
    ("draft, never run", "draft", "immediate", None, False, False, [], "Draft"),
    ("draft with a finished delivery", "draft", "scheduled", PAST, False, False, [run("success")], "Draft"),
    ("immediate, never run", "launched", "immediate", None, False, False, [], "Planned"),
    ("immediate, never run, paused", "launched", "immediate", None, True, False, [], "Planned"),
    ("scheduled in the future", "launched", "scheduled", FUTURE, False, False, [], "Planned"),
    ("scheduled, send_at passed, nothing ran", "launched", "scheduled", PAST, False, False, [], "Suspended"),
    ("scheduled, send_at passed, only a dry run", "launched", "scheduled", PAST, False, False,
     [run("success", kind=DRY)], "Suspended"),
    ("scheduled, future, a test send ran", "launched", "scheduled", FUTURE, False, False,
     [run("success", kind=TEST)], "Planned"),
    ("immediate, a dry run ran", "launched", "immediate", None, False, False, [run("success", kind=DRY)], "Planned"),
    ("immediate, a failed dry run", "launched", "immediate", None, False, False, [run("failed", kind=DRY)], "Planned"),
    ("immediate, a dry run running", "launched", "immediate", None, False, False, [run("running", kind=DRY)], "Planned"),
    ("immediate, delivering", "launched", "immediate", None, False, False, [run("running")], "Active"),
    ("immediate, delivered", "launched", "immediate", None, False, False, [run("success", started_hours_ago=3)], "Finished"),
    ("delivered, then a re-trigger refused", "launched", "immediate", None, False, False,
     [run("success", started_hours_ago=3), refused()], "Finished"),
    ("delivered, then a dry run and a test send", "launched", "immediate", None, False, False,
     [run("success", started_hours_ago=3), run("success", kind=DRY), run("failed", kind=TEST)], "Finished"),
    ("suspended, then a re-trigger refused", "launched", "immediate", None, False, False,
     [run("failed", started_hours_ago=3), refused()], "Suspended"),
    ("suspended, then resumed to success", "launched", "immediate", None, False, False,
     [run("success", started_hours_ago=3)], "Finished"),
    ("delivered, then redelivered and failed", "launched", "immediate", None, False, False,
     [run("success", started_hours_ago=3), run("failed", kind=REDELIVER)], "Suspended"),
    ("delivered, then redelivering", "launched", "immediate", None, False, False,
     [run("success", started_hours_ago=3), run("running", kind=REDELIVER)], "Active"),
    ("launch refused, never delivered", "launched", "immediate", None, False, False, [refused()], "Suspended"),
    ("scheduled run refused at launch", "launched", "scheduled", PAST, False, False, [refused()], "Suspended"),
    ("scheduled, delivered at send_at", "launched", "scheduled", PAST, False, False, [run("success")], "Finished"),
    ("scheduled, delivered, DAG paused later", "launched", "scheduled", PAST, True, False, [run("success")], "Finished"),
    ("recurring between runs", "launched", "recurring", None, False, False, [run("success")], "Planned"),
    ("recurring, paused between runs", "launched", "recurring", None, True, False, [run("success")], "Suspended"),
    ("recurring, latest run failed", "launched", "recurring", None, False, False,
     [run("success", started_hours_ago=30), run("failed")], "Suspended"),
    ("recurring, schedule ended after a success", "launched", "recurring", None, False, True, [run("success")], "Finished"),
    ("scheduled in the future, a manual trigger refused (no send_now)", "launched", "scheduled", FUTURE, False,
     False, [refused()], "Planned"),
    ("recurring between runs, a manual trigger refused", "launched", "recurring", None, False, False,
     [run("success", started_hours_ago=30), refused()], "Planned"),
    ("recurring, its scheduled run refused at launch", "launched", "recurring", None, False, False,
     [run("success", started_hours_ago=30), refused(run_type="scheduled")], "Suspended"),
    ("recurring, a dry run after a failure", "launched", "recurring", None, False, False,
     [run("failed", started_hours_ago=30), run("success", kind=DRY)], "Suspended"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "schedule_type", "send_at", "paused", "ended", "runs", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in STATE_TABLE],
)
def test_campaign_state_table(status, schedule_type, send_at, paused, ended, runs, expected):
    state = state_of(
        status=status,
        schedule_type=schedule_type,
        send_at=send_at,
        paused=paused,
        runs=runs,
        schedule_ended=ended,
    )
    assert state.value == expected


@pytest.mark.parametrize(
    ("conf", "kind"),
    [
        (None, RunKind.DELIVERY),
        ({}, RunKind.DELIVERY),
        ({"dry_run": True, "test_recipients": ["U" + "a" * 32]}, RunKind.DRY_RUN),
        ({"test_recipients": ["U" + "a" * 32]}, RunKind.TEST_SEND),
        ({"test_recipients": []}, RunKind.DELIVERY),
        ({"test_recipients": "  "}, RunKind.DELIVERY),
        ({"test_recipients": "U" + "a" * 32}, RunKind.TEST_SEND),
        ({"redeliver": True}, RunKind.REDELIVERY),
        ({"send_now": True}, RunKind.DELIVERY),
    ],
)
def test_run_kind_comes_from_the_trigger_parameters(conf, kind):
    assert run_kind(conf) is kind


def test_not_yet_sent_includes_resumable_failures():
    line = describe_state(
        CampaignState.SUSPENDED, {"sent": 0, "failed": {"auth_failed": 5}, "not_sent": 0, "to_resume": 5}
    )
    assert line == "Suspended — 0 sent, 5 failed, 5 not yet sent"


def test_a_manual_real_delivery_of_a_scheduled_campaign_is_refused_naming_the_time():
    from line_oa.campaign.loading import load_campaign
    from line_oa.integration.launch import check_schedule
    from line_oa.integration.pipeline import LaunchRefused, TriggerOptions

    campaign = load_campaign(pathlib.Path(__file__).parents[2] / "include" / "campaigns" / "spring_sale.yaml")
    with pytest.raises(LaunchRefused, match=r"scheduled to send at 2027-03-20.*send_now=true"):
        check_schedule(campaign, TriggerOptions(), scheduled_run=False)
    for allowed in (
        TriggerOptions(send_now=True),
        TriggerOptions(dry_run=True),
        TriggerOptions(test_recipients=("U" + "a" * 32,)),
    ):
        check_schedule(campaign, allowed, scheduled_run=False)
    check_schedule(campaign, TriggerOptions(), scheduled_run=True)
