"""What each task of a campaign DAG does, as plain functions the DAG factory wires into tasks.

validate → extract_segment → chunk_profiles → push (mapped, ``LineOAPushOperator``) → summarize.
Nothing here builds a DAG; every function takes the campaign file and plain values, so each task's
logic is tested directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.campaign.model import Campaign
from line_oa.delivery_log.store import (
    PENDING,
    RESUMABLE_REASONS,
    SENDING,
    SENT,
    DeliveryLog,
    data_dir,
    sql_hook,
)
from line_oa.errors import LineApiError, LineAuthError, LineOAError
from line_oa.integration.segment import LINE_USER_ID, count_sql
from line_oa.vocabulary import NO_REASON, Status

if TYPE_CHECKING:
    import pathlib

    from line_oa.campaign import Campaign

log = logging.getLogger(__name__)
DEFAULT_CDP_FILE = "cdp.db"


class LaunchRefused(LineOAError):
    """The campaign must not deliver now (draft, not ready, already delivered, quota too small)."""


class RowCountMismatch(LineOAError):
    """The run's rows in the delivery log are not one per extracted profile: nothing may be sent."""


@dataclass(frozen=True)
class TriggerOptions:
    """The DAG run's parameters (Trigger DAG w/ config in the UI)."""

    dry_run: bool = False
    test_recipients: tuple[str, ...] = ()
    max_recipients: int | None = None
    redeliver: bool = False
    allow_partial_delivery: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> TriggerOptions:
        params = params or {}
        recipients = params.get("test_recipients") or ()
        if isinstance(recipients, str):
            recipients = [part for part in recipients.replace(",", " ").split() if part]
        limit = params.get("max_recipients")
        return cls(
            dry_run=bool(params.get("dry_run", False)),
            test_recipients=tuple(str(r).strip() for r in recipients),
            max_recipients=int(limit) if limit not in (None, "", 0) else None,
            redeliver=bool(params.get("redeliver", False)),
            allow_partial_delivery=bool(params.get("allow_partial_delivery", False)),
        )

    @property
    def is_test(self) -> bool:
        return bool(self.test_recipients)


def staging_root() -> str:
    """Return where chunk files go: ``[line_oa] staging_uri`` (any ObjectStoragePath URI) or data/staging."""
    return settings.staging_uri() or str(data_dir() / "staging")


def run_staging_uri(campaign_id: str, run_id: str) -> str:
    """Return the staging directory of one run's segment and chunk files."""
    return f"{staging_root().rstrip('/')}/{campaign_id}/{_safe(run_id)}"


def cdp_hook(campaign: Campaign):
    """Return the common.sql hook of the campaign's CDP connection (SQLite ``data/cdp.db`` if undefined)."""
    return sql_hook(campaign.target_audience.cdp_conn_id, data_dir() / DEFAULT_CDP_FILE)


def segment_sql(campaign: Campaign, sql_root: pathlib.Path | None = None) -> str:
    path = campaign.segment_sql_path(sql_root or settings.sql_root())
    if not path.is_file():
        raise LaunchRefused(f"target_audience: segment SQL {path} does not exist")
    return path.read_text(encoding="utf-8")


# -- validate ---------------------------------------------------------------------------------
def preflight(hook, messages: list[dict], *, reachable: int, mode: str) -> dict[str, Any]:
    """Validate the bundle at LINE and compare the recipients with the remaining monthly quota.

    :param reachable: recipients the run will send to (LINE bills one per recipient reached).
    :return: ``{"quota": ..., "consumption": n, "remaining": n|None, "needed": n, "fits": bool}``.
    """
    try:
        (hook.validate_multicast if mode == "multicast" else hook.validate_push)(messages)
    except LineAuthError as err:
        raise LaunchRefused(
            f"content.line_config: LINE refused the channel access token of {hook.line_oa_conn_id!r} "
            f"({err.status}: {err.line_message})"
        ) from None
    except LineApiError as err:
        details = "; ".join(f"{d.get('property', '')}: {d.get('message', '')}" for d in err.details)
        raise LaunchRefused(
            f"content: LINE rejected the messages: {err.line_message} {details}".strip()
        ) from None
    quota = hook.get_quota()
    consumption = hook.get_quota_consumption()
    remaining = None if quota.get("type") == "none" else max(0, int(quota.get("value", 0)) - consumption)
    return {
        "quota": quota,
        "consumption": consumption,
        "remaining": remaining,
        "needed": reachable,
        "fits": remaining is None or reachable <= remaining,
    }


def validate_for_launch(
    campaign_file: str, *, run_id: str, options: TriggerOptions, hook_factory, ledger_factory
) -> dict:
    """Run the launch checks; raise ``LaunchRefused`` naming every reason; return the pre-flight facts.

    The one-off guard (``enter_delivery``) comes last, for real deliveries only (not dry runs, not test
    sends), so a launch refused for any other reason records nothing.
    """
    from line_oa.campaign.validation import validate_campaign_file

    report = validate_campaign_file(
        campaign_file, now=datetime(1970, 1, 1, tzinfo=UTC), sql_root=settings.sql_root()
    )  # time checked by schedule
    if not report.ok:
        raise LaunchRefused("campaign file is not launchable:\n" + "\n".join(str(p) for p in report.problems))
    campaign = report.campaign
    if campaign.is_draft:
        raise LaunchRefused(
            f"{campaign.id} is a draft: set status: launched in {campaign_file} to deliver it"
        )
    bad_test_ids = [uid for uid in options.test_recipients if not LINE_USER_ID.match(uid)]
    if bad_test_ids:
        raise LaunchRefused(f"test_recipients: not LINE user ids (U + 32 hex): {', '.join(bad_test_ids[:5])}")
    hook = hook_factory(campaign.content.line_config)
    try:
        channel = hook.settings
    except Exception as err:
        raise LaunchRefused(
            f"content.line_config: sender account {campaign.content.line_config!r}: {err}"
        ) from None
    if not channel.allows_workspace(campaign.workspace):
        raise LaunchRefused(
            f"content.line_config: sender account {channel.conn_id!r} is not assigned to workspace "
            f"{campaign.workspace!r} (assigned: {', '.join(channel.workspaces) or 'none'})"
        )
    if options.is_test:
        reachable = len(set(options.test_recipients))
    else:
        sql = segment_sql(campaign)
        reachable = int(cdp_hook(campaign).get_first(count_sql(sql))[0] or 0)
        if options.max_recipients is not None:
            reachable = min(reachable, options.max_recipients)
    facts = preflight(
        hook, campaign.wire_messages(), reachable=reachable, mode=campaign.content.delivery_mode
    )
    hook.close()
    if not facts["fits"] and not options.dry_run and not options.allow_partial_delivery:
        raise LaunchRefused(
            f"quota: {facts['needed']} recipients but only {facts['remaining']} messages left this month "
            "(trigger with allow_partial_delivery=true to send until the quota runs out)"
        )
    if not (options.is_test or options.dry_run):
        # Last: a launch refused for any other reason records nothing.
        enter_delivery(campaign, run_id=run_id, options=options, ledger_factory=ledger_factory)
    return {
        "campaign_id": campaign.id,
        "reachable": reachable,
        **facts,
        "started_at": datetime.now(UTC).isoformat(),
    }


def enter_delivery(campaign: Campaign, *, run_id: str, options: TriggerOptions, ledger_factory) -> None:
    """Record the run as a real delivery of the campaign, or refuse it: the one-off guard.

    A one-off campaign (immediate or scheduled) is delivered by one real run: a second one is refused
    while an earlier real run is running, suspended or finished, unless ``redeliver`` is set. The same
    run entering again (cleared and resumed) is not a second delivery. Atomic in the delivery log
    (see ``DeliveryLog.enter_delivery``): of two runs launched together, one passes.
    """
    ledger = ledger_factory(campaign.id, run_id)
    try:
        blocking = ledger.enter_delivery(
            one_off=campaign.delivery_schedule.type != "recurring", redeliver=options.redeliver
        )
    finally:
        ledger.close()
    if blocking is not None:
        raise LaunchRefused(
            f"{campaign.id}: run {blocking} already delivers or delivered this campaign "
            f"(running, suspended or finished); clear {blocking}'s failed tasks to resume it, "
            "or trigger with redeliver=true to send again"
        )


# -- chunk ------------------------------------------------------------------------------------
REGISTER_BATCH = 5000  # rows registered in the delivery log per transaction by chunk_profiles


def chunk_profiles(
    segment: dict[str, Any], *, campaign: Campaign, ledger: DeliveryLog
) -> list[dict[str, Any]]:
    """Split the staged segment into chunk files and register their recipients as ``pending``.

    Then check the promise that every profile the segment returned has exactly one row: the run's rows
    in the log must number the profiles extracted (``segment["profiles"]``); otherwise raise
    ``RowCountMismatch`` (a ``LineOAError``) before any chunk is sent.
    """
    from line_oa.delivery.chunk import pending_rows
    from line_oa.integration.chunks import plan_chunk_size, write_chunks
    from line_oa.integration.segment import read_segment

    size = plan_chunk_size(segment["eligible"], requested=campaign.activation.chunk_size)
    is_test = bool(segment.get("is_test"))
    batch: list[tuple[str, str]] = []
    position = 0

    def registering(rows):
        nonlocal position
        for row in rows:
            batch.append(row)
            position += 1
            # A few thousand rows at a time, never across a chunk boundary: memory stays flat.
            if len(batch) >= REGISTER_BATCH or position % size == 0 or position == segment["eligible"]:
                index = (position - 1) // size
                ledger.add(pending_rows(ledger.campaign_id, ledger.run_id, index, batch, is_test=is_test))
                batch.clear()
            yield row

    staging = segment["segment_uri"].rsplit("/", 1)[0] + "/chunks"
    chunks = write_chunks(
        registering(read_segment(segment["segment_uri"])), staging_uri=staging, chunk_size=size
    )
    if batch:
        ledger.add(pending_rows(ledger.campaign_id, ledger.run_id, position // size, batch, is_test=is_test))
    check_one_row_per_profile(ledger, profiles=int(segment["profiles"]))
    return [{**chunk, "is_test": is_test} for chunk in chunks]


def check_one_row_per_profile(ledger: DeliveryLog, *, profiles: int) -> None:
    """Raise ``RowCountMismatch`` unless the run has exactly ``profiles`` rows in the delivery log.

    Every row of a run is the row of one extracted profile (for a test send, the test rows of the run):
    fewer rows mean profiles without an outcome; more mean rows that no profile of this segment explains.
    """
    rows = ledger.row_count()
    if rows != profiles:
        raise RowCountMismatch(
            f"{profiles} profiles extracted but {rows} rows in the delivery log for run {ledger.run_id}; "
            "refusing to send: every profile must have exactly one row ("
            + (
                "some profiles have none"
                if rows < profiles
                else "some rows are of profiles this extraction did not return, e.g. left by an earlier "
                "attempt that read another segment"
            )
            + "); once the log or the segment is fixed, clear extract_segment with its downstream tasks to "
            "resume this run (a new run of a one-off campaign needs redeliver=true: this one counts as its delivery)"
        )


# -- summarize --------------------------------------------------------------------------------
def summarize_counts(ledger: DeliveryLog, *, include_tests: bool) -> dict[str, Any]:
    """Count a run's rows by status and reason (test sends separately)."""
    excluded: dict[str, int] = {}
    failed: dict[str, int] = {}
    sent = not_sent = test_sends = targeted = 0
    for (status, reason, is_test), count in ledger.counts().items():
        if is_test:
            test_sends += count if status == SENT else 0
            if not include_tests:
                continue
        targeted += count
        if status == SENT:
            sent += count
        elif status in (PENDING, SENDING):
            not_sent += count
        elif status == Status.EXCLUDED:
            excluded[reason or NO_REASON] = excluded.get(reason or NO_REASON, 0) + count
        else:
            failed[reason or NO_REASON] = failed.get(reason or NO_REASON, 0) + count
    return {
        "targeted": targeted,
        "excluded": excluded,
        "sent": sent,
        "failed": failed,
        "not_sent": not_sent,
        "test_sends": test_sends,
    }


def summary_block(summary: dict[str, Any]) -> str:
    """Return the run's summary as a block of text for the task log (auditors read this)."""
    lines = [
        f"LINE campaign {summary['campaign_id']} ({summary['campaign_name']}), run {summary['run_id']}",
        f"  state:            {summary['state']}{'  (dry run: nothing sent)' if summary['dry_run'] else ''}",
        f"  targeted:         {summary['targeted']:,}",
        f"  excluded:         {sum(summary['excluded'].values()):,} {summary['excluded'] or ''}",
        f"  sent:             {summary['sent']:,}",
        f"  failed:           {sum(summary['failed'].values()):,} {summary['failed'] or ''}",
        f"  not yet sent:     {summary['not_sent']:,}",
        *([f"  would send:       {summary['would_send']:,}"] if summary["dry_run"] else []),
        f"  test sends:       {summary['test_sends']:,}",
        f"  messages billed:  {summary['messages_billed']:,}",
        f"  requests:         {summary['requests']:,} ({summary['retries']:,} retries)",
        f"  duration:         {summary['duration_seconds']:.1f} s, {summary['throughput_per_second']:.0f} recipients/s",
    ]
    if summary.get("report_path"):
        lines.append(f"  report:           {summary['report_path']}")
    return "\n".join(lines)


def report_dir() -> pathlib.Path:
    """Return where HTML delivery reports go (``[line_oa] report_dir``, default data/reports)."""
    path = settings.report_dir() or data_dir() / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def summarize_run(
    campaign: Campaign,
    *,
    ledger: DeliveryLog,
    options: TriggerOptions,
    validation: dict[str, Any] | None,
    push_results: list[dict[str, Any]],
    delivery_incomplete: bool,
    consumption_now: int | None,
) -> dict[str, Any]:
    """Count the run from the delivery log, write its summary row and HTML report; return the summary.

    :param delivery_incomplete: an upstream task failed (the run is Suspended whatever the counts say).
    :param consumption_now: LINE's quota consumption now; billed = now - at validation (approximate:
        LINE's figure includes any other sends of the channel in between).
    """
    from line_oa.integration.report import render_report_html

    counts = summarize_counts(ledger, include_tests=options.is_test)
    resumable = sum(n for reason, n in counts["failed"].items() if reason in RESUMABLE_REASONS)
    suspended = delivery_incomplete or (not options.dry_run and (counts["not_sent"] or resumable))
    pushed = [r for r in push_results if isinstance(r, dict)]
    send_seconds = sum(r.get("duration_seconds", 0.0) for r in pushed)
    started = (validation or {}).get("started_at") or datetime.now(UTC).isoformat()
    finished = datetime.now(UTC)
    before = (validation or {}).get("consumption")
    billed = (
        consumption_now - before if consumption_now is not None and before is not None else counts["sent"]
    )
    summary = {
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "dag_id": campaign.dag_id,
        "run_id": ledger.run_id,
        "state": "Suspended" if suspended else "Finished",
        "dry_run": options.dry_run,
        "test_send": options.is_test,
        **counts,
        "would_send": counts["not_sent"] if options.dry_run else 0,
        "messages_billed": 0 if options.dry_run else max(0, billed),
        "requests": sum(r.get("requests", 0) for r in pushed),
        "retries": sum(r.get("retries", 0) for r in pushed),
        "started_at": started,
        "finished_at": finished.isoformat(),
        "duration_seconds": (finished - datetime.fromisoformat(started)).total_seconds(),
        "throughput_per_second": (sum(r.get("sent", 0) for r in pushed) / send_seconds)
        if send_seconds
        else 0.0,
    }
    if options.dry_run:
        summary["not_sent"] = 0
    path = report_dir() / campaign.id / f"{_safe(ledger.run_id)}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_report_html(
        summary, send_rate=ledger.sent_per_second(), messages_preview=campaign.wire_messages()
    )
    path.write_text(html, encoding="utf-8")
    summary["report_path"] = str(path)
    if not options.is_test:
        ledger.write_summary(summary)
    return summary


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
