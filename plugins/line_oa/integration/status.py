"""Campaign states from campaign files and their DAG runs: ``python -m line_oa status [ID]``."""

from __future__ import annotations

import pathlib
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.campaign.loading import load_campaign
from line_oa.campaign.model import Campaign, send_time
from line_oa.campaign.states import (
    CampaignState,
    RunFacts,
    campaign_state,
    describe_state,
    latest_run,
    missed_send_at,
    run_kind,
)
from line_oa.errors import LineOAError

if TYPE_CHECKING:
    import argparse


def dag_runs(dag_id: str, delivered: set[str] | None = None) -> tuple[list[RunFacts], bool]:
    """Return the DAG's runs, each with its kind and whether it entered delivery, and whether it is paused.

    :param delivered: the run ids the delivery log records as real deliveries (``delivered_runs``);
        None when the log cannot be read, then every real run counts as delivered.
    """
    from airflow.models import DagModel, DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id).all()
        model = session.query(DagModel).filter(DagModel.dag_id == dag_id).one_or_none()
        facts = [
            RunFacts(
                run_id=run.run_id,
                state=str(run.state.value if hasattr(run.state, "value") else run.state),
                logical_date=run.logical_date,
                start_date=run.start_date,
                end_date=run.end_date,
                run_type=str(run.run_type),
                kind=run_kind(run.conf),
                entered=delivered is None or run.run_id in delivered,
            )
            for run in runs
        ]
        return facts, bool(model.is_paused) if model else False


def delivered_runs(campaign: Campaign) -> set[str] | None:
    """Return the runs of the campaign that passed their launch checks, from the delivery log."""
    from line_oa.delivery_log.store import DeliveryLog

    try:
        ledger = DeliveryLog.connect(campaign_id=campaign.id, run_id="status")
    except LineOAError:
        return None
    try:
        return ledger.delivered_runs()
    finally:
        ledger.close()


def state_of(campaign: Campaign, runs: list[RunFacts], *, paused: bool = False, now: datetime | None = None):
    """Return the campaign's state (Draft, Planned, Active, Finished, Suspended)."""
    now = now or datetime.now(UTC)
    schedule = campaign.delivery_schedule
    end_at = getattr(schedule, "end_at", None)
    return campaign_state(
        status=campaign.status,
        schedule_type=schedule.type,
        send_at=send_time(campaign),
        runs=runs,
        now=now,
        paused=paused,
        schedule_ended=end_at is not None and end_at < now,
    )


def notes(
    campaign: Campaign, runs: list[RunFacts], *, paused: bool, now: datetime | None = None
) -> list[str]:
    """Return what a user should know beside the state: paused, missed send time, refused launches."""
    now = now or datetime.now(UTC)
    found = []
    if missed_send_at(
        schedule_type=campaign.delivery_schedule.type, send_at=send_time(campaign), runs=runs, now=now
    ):
        found.append(f"send_at {send_time(campaign).isoformat()} passed and nothing was delivered")
    real = [run for run in runs if run.kind.is_real]
    delivered = any(run.entered for run in real)
    if paused and not campaign.is_draft and (campaign.delivery_schedule.type == "recurring" or not delivered):
        # a delivered one-off campaign has nothing left to start: its pause flag does not matter
        found.append("the DAG is paused: no run starts until it is unpaused")
    refused = [run for run in real if not run.entered and not run.in_flight]
    if refused and latest_run(real) in refused:
        found.append(f"latest launch refused: run {latest_run(refused).run_id} (see its validate log)")
    return found


def latest_counts(campaign: Campaign, run_id: str) -> dict[str, Any]:
    """Return a run's counts from the delivery log."""
    from line_oa.delivery_log.store import DeliveryLog
    from line_oa.integration.summary import summarize_counts

    ledger = DeliveryLog.connect(campaign_id=campaign.id, run_id=run_id)
    try:
        return summarize_counts(ledger, include_tests=False)
    finally:
        ledger.close()


def status_lines(campaigns_dir: pathlib.Path, campaign_id: str | None = None) -> list[str]:
    """Return one line per campaign: id, state and its latest run's counts."""
    lines = []
    for path in sorted(pathlib.Path(campaigns_dir).glob("*.yaml")):
        try:
            campaign = load_campaign(path)
        except LineOAError as err:
            lines.append(f"{path.stem:<24} INVALID  {str(err).splitlines()[0]}")
            continue
        if campaign_id and campaign.id != campaign_id:
            continue
        runs, paused = dag_runs(campaign.dag_id, delivered_runs(campaign))
        state = state_of(campaign, runs, paused=paused)
        latest = latest_run([run for run in runs if run.kind.is_real and run.entered])
        counts = latest_counts(campaign, latest.run_id) if latest and state != CampaignState.DRAFT else None
        run_note = f" (run {latest.run_id})" if latest else ""
        extra = "".join(f"; {note}" for note in notes(campaign, runs, paused=paused))
        lines.append(f"{campaign.id:<24} {describe_state(state, counts)}{run_note}{extra}")
    if campaign_id and not lines:
        lines.append(f"no campaign with id {campaign_id!r} in {campaigns_dir}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign_id", nargs="?", help="one campaign id (default: every campaign)")
    parser.add_argument("--campaigns-dir", type=pathlib.Path, help="default: [line_oa] campaigns_dir")


def run(args: argparse.Namespace) -> int:
    """Print each campaign's state and its latest run's counts; exit 1 if the campaign is unknown."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        lines = status_lines(args.campaigns_dir or settings.campaigns_dir(), args.campaign_id)
    except (OperationalError, ProgrammingError) as err:
        import os

        home = os.environ.get("AIRFLOW_HOME", "~/airflow")
        print(
            f"Airflow's metadata database (AIRFLOW_HOME={home}) is not ready: {str(err.orig).splitlines()[0]}\n"
            "Run `airflow db migrate` there first (`make demo` sets one up under data/airflow).",
            file=sys.stderr,
        )
        return 1
    print("\n".join(lines))
    return 1 if lines and lines[0].startswith("no campaign") else 0
