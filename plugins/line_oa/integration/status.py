"""Campaign states from campaign files and their DAG runs: ``python -m line_oa status [ID]``."""

from __future__ import annotations

import pathlib
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.campaign.loading import load_campaign
from line_oa.campaign.model import Campaign, send_time
from line_oa.campaign.states import CampaignState, RunFacts, campaign_state, describe_state, latest_run
from line_oa.errors import LineOAError

if TYPE_CHECKING:
    import argparse


def _is_test_or_dry(conf: dict[str, Any] | None) -> bool:
    conf = conf or {}
    return bool(conf.get("test_recipients")) or bool(conf.get("dry_run"))


def dag_runs(dag_id: str) -> tuple[list[RunFacts], bool]:
    """Return the DAG's campaign runs (test sends and dry runs left out) and whether it is paused."""
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
            )
            for run in runs
            if not _is_test_or_dry(run.conf)
        ]
        return facts, bool(model.is_paused) if model else False


def state_of(campaign: Campaign, runs: list[RunFacts], *, paused: bool = False, now: datetime | None = None):
    """Return the campaign's state (Draft, Planned, Active, Finished, Suspended)."""
    return campaign_state(
        status=campaign.status,
        schedule_type=campaign.delivery_schedule.type,
        send_at=send_time(campaign),
        runs=runs,
        now=now or datetime.now(UTC),
        paused=paused,
    )


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
        runs, paused = dag_runs(campaign.dag_id)
        state = state_of(campaign, runs, paused=paused)
        latest = latest_run(runs)
        counts = latest_counts(campaign, latest.run_id) if latest and state != CampaignState.DRAFT else None
        run_note = f" (run {latest.run_id})" if latest else ""
        lines.append(f"{campaign.id:<24} {describe_state(state, counts)}{run_note}")
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
