"""What the campaign pages show, read from the campaign files, Airflow's metadata and the delivery log.

No HTML here (``pages`` renders) and no HTTP (``app`` serves). Every function takes the campaign or
DAG it is about; none runs SQL that a request supplies: the only statements are the campaign's own
segment SQL (reach estimate) and the delivery log's fixed queries.
"""

from __future__ import annotations

import pathlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.campaign.states import CampaignState, RunFacts, RunKind, latest_run, run_kind
from line_oa.errors import LineOAError
from line_oa.integration import status

if TYPE_CHECKING:
    from line_oa.campaign.problems import Problem

DAG_PREFIX = "line_campaign__"


@dataclass
class CampaignEntry:
    """One campaign file as the campaigns page lists it."""

    path: pathlib.Path
    dag_id: str
    campaign: Any = None  # line_oa.campaign.model.Campaign, None when the file cannot be read
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None  # the file cannot be read at all
    state: str = "Invalid"
    notes: list[str] = field(default_factory=list)
    next_run: datetime | None = None
    latest_run_id: str | None = None
    latest_counts: dict[str, Any] | None = None
    runs: list[RunFacts] = field(default_factory=list)

    @property
    def workspace(self) -> str:
        return self.campaign.workspace if self.campaign else ""

    @property
    def name(self) -> str:
        return self.campaign.name if self.campaign else self.path.name


def dag_id_of(path: pathlib.Path, campaign: Any | None) -> str:
    """Return the DAG id of a campaign file (its placeholder's id when the file is broken)."""
    if campaign is not None:
        return campaign.dag_id
    import re

    return DAG_PREFIX + (re.sub(r"[^a-z0-9_-]", "_", path.stem.lower()) or "unnamed")


def read_campaign(path: pathlib.Path, *, now: datetime | None = None) -> CampaignEntry:
    """Validate one campaign file; the entry holds the campaign (when it parses) and every problem."""
    from line_oa.campaign.validation import validate_campaign_file

    try:
        report = validate_campaign_file(path, now=now or datetime.now(UTC), sql_root=settings.sql_root())
    except LineOAError as err:
        return CampaignEntry(path=path, dag_id=dag_id_of(path, None), error=str(err))
    campaign = report.campaign
    entry = CampaignEntry(path=path, dag_id=dag_id_of(path, campaign), campaign=campaign)
    entry.problems = list(report.problems)
    if campaign is None:
        entry.error = "\n".join(str(p) for p in report.problems) or "the file could not be read"
    return entry


def campaign_files() -> list[pathlib.Path]:
    return sorted(pathlib.Path(settings.campaigns_dir()).glob("*.yaml"))


def find_campaign(dag_id: str) -> CampaignEntry | None:
    """Return the campaign file whose DAG is ``dag_id``, with its state; None when there is none.

    A campaign's id is its file name (validation requires it), so ``line_campaign__<id>`` is read
    from ``<id>.yaml`` directly; only a broken file whose name is not a slug needs the folder scanned.
    """
    import re

    from line_oa.campaign.model import SLUG_PATTERN

    stem = dag_id.removeprefix(DAG_PREFIX)
    direct = pathlib.Path(settings.campaigns_dir()) / f"{stem}.yaml"
    found = re.match(SLUG_PATTERN, stem) is not None and direct.is_file()
    for path in [direct] if found else campaign_files():
        entry = read_campaign(path)
        if entry.dag_id == dag_id:
            return with_state(entry)
    return None


def with_state(entry: CampaignEntry, *, now: datetime | None = None) -> CampaignEntry:
    """Fill the entry's state, notes, next run and latest real delivery from Airflow and the log."""
    if entry.campaign is None:
        return entry
    campaign = entry.campaign
    now = now or datetime.now(UTC)
    runs, paused = status.dag_runs(campaign.dag_id, status.delivered_runs(campaign))
    entry.runs = runs
    entry.state = str(status.state_of(campaign, runs, paused=paused, now=now))
    entry.notes = status.notes(campaign, runs, paused=paused, now=now)
    entry.next_run = next_run(campaign.dag_id)
    latest = latest_run([run for run in runs if run.kind.is_real and run.entered])
    if latest is not None:
        # a send_at in the past is a problem only while nothing was delivered
        entry.problems = [p for p in entry.problems if p.path != "delivery_schedule.send_at"]
    if latest is not None and entry.state != CampaignState.DRAFT:
        entry.latest_run_id = latest.run_id
        try:
            entry.latest_counts = status.latest_counts(campaign, latest.run_id)
        except LineOAError as err:
            entry.notes.append(f"delivery log unreadable: {err}")
    return entry


def next_run(dag_id: str) -> datetime | None:
    """Return when the scheduler will start the DAG's next run (None: no next run)."""
    from airflow.models import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        model = session.query(DagModel).filter(DagModel.dag_id == dag_id).one_or_none()
        if model is None or model.is_paused:
            return None
        return getattr(model, "next_dagrun_run_after", None) or getattr(model, "next_dagrun", None)


def select_campaigns(
    entries: list[CampaignEntry], *, workspace: str = "", state: str = ""
) -> list[CampaignEntry]:
    """Return the entries of a workspace and a state (empty: any), each with its state filled in."""
    chosen = []
    for entry in entries:
        if workspace and entry.workspace != workspace:
            continue
        entry = with_state(entry)
        if state and entry.state != state:
            continue
        chosen.append(entry)
    return chosen


@dataclass
class RunView:
    """One DAG run of a campaign as the Delivery tab shows it."""

    run_id: str
    kind: RunKind
    airflow_state: str
    counts: dict[str, Any]
    total: int
    done: int
    rate_per_second: float
    eta_seconds: float | None
    report_html: str | None
    summary: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)


def run_view(entry: CampaignEntry, run_id: str) -> RunView | None:
    """Return the run's kind, live progress from the delivery log and its report once summarized."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    from line_oa.delivery_log.store import DeliveryLog
    from line_oa.integration.pipeline import TriggerOptions
    from line_oa.integration.summary import summarize_counts

    with create_session() as session:
        run = (
            session.query(DagRun).filter(DagRun.dag_id == entry.dag_id, DagRun.run_id == run_id).one_or_none()
        )
        if run is None:
            return None
        kind = run_kind(run.conf)
        is_test = TriggerOptions.from_params(run.conf).is_test  # a dry run may name test recipients too
        airflow_state = str(getattr(run.state, "value", run.state))
    campaign = entry.campaign
    ledger = DeliveryLog.connect(campaign_id=campaign.id, run_id=run_id)
    try:
        counts = summarize_counts(ledger, include_tests=is_test)
        per_second = ledger.sent_per_second()
        summary = ledger.run_summary()
        history = ledger.run_history()
    finally:
        ledger.close()
    total = counts["targeted"] - sum(counts["excluded"].values())
    done = counts["sent"] + sum(counts["failed"].values()) - counts.get("to_resume", 0)
    rate = _recent_rate(per_second)
    left = max(0, total - done)
    eta = (left / rate) if rate > 0 and airflow_state == "running" else None
    return RunView(
        run_id=run_id,
        kind=kind,
        airflow_state=airflow_state,
        counts=counts,
        total=total,
        done=done,
        rate_per_second=rate,
        eta_seconds=eta,
        report_html=_report_html(campaign.id, run_id) if summary else None,
        summary=summary,
        history=history,
    )


def _recent_rate(per_second: list[tuple[str, int]], window: int = 10) -> float:
    """Return recipients sent per second over the last ``window`` seconds that sent anything."""
    recent = per_second[-window:]
    return sum(count for _, count in recent) / len(recent) if recent else 0.0


def _report_html(campaign_id: str, run_id: str) -> str | None:
    from line_oa.integration.pipeline import safe_name
    from line_oa.integration.summary import report_dir

    path = report_dir() / campaign_id / f"{safe_name(run_id)}.html"
    return path.read_text(encoding="utf-8") if path.exists() else None


@dataclass
class Reach:
    """The reach estimate of a campaign: its segment now, and the sender account's quota."""

    profiles: int
    by_reason: dict[str, int]
    effective: int
    quota_type: str | None = None
    remaining: int | None = None
    error: str | None = None

    @property
    def fits(self) -> bool | None:
        return (
            None if self.quota_type is None else (self.remaining is None or self.effective <= self.remaining)
        )


def reach_estimate(campaign: Any) -> Reach:
    """Run the campaign's segment SQL and classify every row as a delivery would; read LINE's quota.

    Nothing is written: neither the delivery log nor the staging folder. LINE bills one message per
    recipient reached, whatever the number of messages in the bundle.
    """
    from line_oa.integration import pipeline, segment

    reasons: Counter[str] = Counter()
    profiles = effective = 0
    sql = segment.wrap_segment_sql(pipeline.segment_sql(campaign), pipeline.suppression_sqls(campaign))
    for _profile, _user, row_status, reason, _message in segment.classify(
        segment.stream_rows(pipeline.cdp_hook(campaign), sql)
    ):
        profiles += 1
        if row_status is None:
            effective += 1
        else:
            reasons[str(reason)] += 1
    reach = Reach(profiles=profiles, by_reason=dict(reasons), effective=effective)
    try:
        from line_oa.integration.hooks import LineOAHook

        hook = LineOAHook(line_oa_conn_id=campaign.content.line_config)
        try:
            quota = hook.get_quota()
            consumption = hook.get_quota_consumption()
        finally:
            hook.close()
        reach.quota_type = str(quota.get("type"))
        reach.remaining = (
            None if quota.get("type") == "none" else max(0, int(quota.get("value", 0)) - consumption)
        )
    except LineOAError as err:
        reach.error = f"LINE quota unavailable: {err}"
    return reach


def insights_html(campaign: Any) -> str:
    """Return the campaign's "LINE insights" section (impressions, clicks per link, the days since sending)."""
    from line_oa.delivery_log.store import DeliveryLog
    from line_oa.integration.summary import insights_section

    ledger = DeliveryLog.connect(campaign_id=campaign.id, run_id="insights")
    try:
        return insights_section(campaign.id, ledger.hook)
    finally:
        ledger.close()
