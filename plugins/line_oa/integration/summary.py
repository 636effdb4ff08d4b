"""The summarize task's body: count a run from the delivery log, and write its summary and report.

The counts come from the log alone (by status and reason, test sends apart); the push tasks' results
add requests, retries and throughput; LINE's quota consumption, read before and after, gives the
messages billed. The summary is logged as a block an auditor reads, written as the run's summary row
(not for test sends) and rendered as the run's HTML report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.campaign.personalization import bundle_of
from line_oa.delivery_log.store import PENDING, RESUMABLE_REASONS, SENDING, SENT, data_dir
from line_oa.integration.pipeline import safe_name
from line_oa.vocabulary import NO_REASON, Status

if TYPE_CHECKING:
    import pathlib

    from line_oa.campaign.model import Campaign
    from line_oa.delivery_log.store import DeliveryLog
    from line_oa.integration.pipeline import TriggerOptions


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
        "to_resume": sum(n for reason, n in failed.items() if reason in RESUMABLE_REASONS),
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
        f"  not yet sent:     {summary['not_sent'] + summary.get('to_resume', 0):,}"
        + (
            f" (of them {summary['to_resume']:,} failed as resumable: a resume sends them)"
            if summary.get("to_resume")
            else ""
        ),
        *([f"  would send:       {summary['would_send']:,}"] if summary["dry_run"] else []),
        f"  test sends:       {summary['test_sends']:,}",
        f"  messages billed:  {summary['messages_billed']:,}",
        f"  requests:         {summary['requests']:,} ({summary['retries']:,} retries)",
        f"  run time:         {summary['duration_seconds']:.1f} s (validate to summary)",
        f"  sending:          {summary.get('sending_seconds', 0):.0f} s (seconds with a send), "
        f"{summary['throughput_per_second']:.0f} recipients/s",
    ]
    if summary.get("quiet_hours"):
        from line_oa.integration.report import quiet_hours_text

        lines.append(f"  quiet hours:      {quiet_hours_text(summary['quiet_hours'])}")
    if summary.get("personalization"):
        from line_oa.integration.report import personalization_text

        lines.append(f"  personalized:     {personalization_text(summary['personalization'])}")
    if summary.get("report_path"):
        lines.append(f"  report:           {summary['report_path']}")
    return "\n".join(lines)


def report_dir() -> pathlib.Path:
    """Return where HTML delivery reports go (``[line_oa] report_dir``, default data/reports)."""
    path = settings.report_dir() or data_dir() / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def quiet_hold(
    validation: dict[str, Any] | None, quiet_hours: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Return how long quiet hours held the run (None when they did not): from the launch to the window's end."""
    if not (quiet_hours and quiet_hours.get("held") and validation and validation.get("started_at")):
        return None
    start, until = validation["started_at"], quiet_hours["sending_from"]
    seconds = (datetime.fromisoformat(until) - datetime.fromisoformat(start)).total_seconds()
    return {
        "note": validation.get("quiet_hours") or "",
        "from": start,
        "until": until,
        "seconds": max(0.0, seconds),
    }


def summarize_run(
    campaign: Campaign,
    *,
    ledger: DeliveryLog,
    options: TriggerOptions,
    validation: dict[str, Any] | None,
    push_results: list[dict[str, Any]],
    delivery_incomplete: bool,
    consumption_now: int | None,
    segment: dict[str, Any] | None = None,
    quiet_hours: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Count the run from the delivery log, write its summary row and HTML report; return the summary.

    :param delivery_incomplete: an upstream task failed (the run is Suspended whatever the counts say).
    :param quiet_hours: the quiet_hours task's result (whether it held the run, and until when).
    :param segment: the extract task's result (a personalized campaign's columns and empty values).
    :param consumption_now: LINE's quota consumption now; billed = now - at validation (approximate:
        LINE's figure includes any other sends of the channel in between).
    """
    counts = summarize_counts(ledger, include_tests=options.is_test)
    pushed = [r for r in push_results if isinstance(r, dict)]
    send_rate = ledger.sent_per_second()
    sending = sending_seconds(send_rate)
    started = (validation or {}).get("started_at") or datetime.now(UTC).isoformat()
    finished = datetime.now(UTC)
    summary = {
        "campaign_id": campaign.id,
        "campaign_name": campaign.name,
        "dag_id": campaign.dag_id,
        "run_id": ledger.run_id,
        "state": run_state(counts, dry_run=options.dry_run, delivery_incomplete=delivery_incomplete),
        "dry_run": options.dry_run,
        "test_send": options.is_test,
        **counts,
        "would_send": counts["not_sent"] if options.dry_run else 0,
        "messages_billed": 0 if options.dry_run else messages_billed(counts, validation, consumption_now),
        "requests": sum(r.get("requests", 0) for r in pushed),
        "retries": sum(r.get("retries", 0) for r in pushed),
        "started_at": started,
        "finished_at": finished.isoformat(),
        "duration_seconds": (finished - datetime.fromisoformat(started)).total_seconds(),
        "sending_seconds": sending,
        "throughput_per_second": counts["sent"] / sending if sending else 0.0,
        "history": [],
        "personalization": (segment or {}).get("personalization"),
        "quiet_hours": quiet_hold(validation, quiet_hours),
    }
    if options.dry_run:
        summary["not_sent"] = summary["to_resume"] = 0
    if not options.is_test:
        ledger.write_summary(summary)
        summary["history"] = [] if options.dry_run else ledger.run_history()
    summary["report_path"] = str(write_report(campaign, ledger, summary, send_rate))
    return summary


def run_state(counts: dict[str, Any], *, dry_run: bool, delivery_incomplete: bool) -> str:
    """Return ``Suspended`` if a task failed or rows are left to send (a dry run leaves them), else ``Finished``."""
    suspended = delivery_incomplete or (not dry_run and (counts["not_sent"] or counts["to_resume"]))
    return "Suspended" if suspended else "Finished"


def messages_billed(
    counts: dict[str, Any], validation: dict[str, Any] | None, consumption_now: int | None
) -> int:
    """Return LINE's consumption since validation, or the rows sent when either figure is missing."""
    before = (validation or {}).get("consumption")
    billed = (
        consumption_now - before if consumption_now is not None and before is not None else counts["sent"]
    )
    return max(0, billed)


def sending_seconds(send_rate: list[tuple[str, int]]) -> float:
    """Return how long recipients were being sent: the seconds with at least one send.

    ``send_rate`` is the log's ``(second, recipients sent)`` buckets. Counting the buckets, not the
    span from the first to the last, keeps a suspension (a resume a day later) out of the rate.
    """
    return float(len(send_rate))


def insights_section(campaign_id: str, log_hook) -> str:
    """Return the report's "LINE insights" section from the statistics beside the delivery log."""
    from line_oa.insights.section import insights_html
    from line_oa.insights.store import InsightStore

    store = InsightStore(log_hook)
    try:
        figures = store.figures(campaign_id)
    finally:
        store.close()
    return insights_html(figures)


def write_report(
    campaign: Campaign,
    ledger: DeliveryLog,
    summary: dict[str, Any],
    send_rate: list[tuple[str, int]] | None = None,
) -> pathlib.Path:
    """Render the run's HTML report under ``report_dir()/<campaign>/<run>.html``; return its path.

    :param send_rate: the log's ``(second, recipients sent)`` buckets (read from ``ledger`` when None).
    """
    if send_rate is None:
        send_rate = ledger.sent_per_second()
    from line_oa.integration.report import render_report_html

    path = report_dir() / campaign.id / f"{safe_name(ledger.run_id)}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_report_html(
        summary,
        send_rate=send_rate,
        messages_preview=bundle_of(campaign).as_written(),
        insights_html=""
        if summary.get("dry_run") or summary.get("test_send")
        else insights_section(campaign.id, ledger.hook),
    )
    path.write_text(html, encoding="utf-8")
    return path
