"""What the Airflow UI shows of a campaign's DAG besides its tasks: ``doc_md`` and the Trigger form."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param

if TYPE_CHECKING:
    from line_oa.campaign.model import Campaign, QuietHours
    from line_oa.campaign.personalization import PersonalizedBundle


def trigger_params() -> dict[str, Param]:
    """Return the Trigger form's parameters (Airflow Params with UI forms)."""
    return {
        "dry_run": Param(False, type="boolean", title="Dry run", description="Do everything but send."),
        "test_recipients": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Test recipients",
            description="Send only to these LINE user IDs (one per line); recorded as test sends.",
        ),
        "max_recipients": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Max recipients",
            description="Send to at most this many eligible recipients; the rest are logged as excluded.",
        ),  # fmt: skip
        "redeliver": Param(
            False,
            type="boolean",
            title="Deliver again",
            description=(
                "Deliver a one-off campaign although another run delivers or delivered it "
                "(running, suspended or finished): its recipients get the messages a second time."
            ),
        ),  # fmt: skip
        "allow_partial_delivery": Param(
            False,
            type="boolean",
            title="Allow partial delivery",
            description="Start even when the monthly quota cannot cover every recipient.",
        ),  # fmt: skip
        "send_now": Param(
            False,
            type="boolean",
            title="Send now",
            description=(
                "Deliver a scheduled or recurring campaign now, outside its schedule. Without it a "
                "manual trigger of such a campaign only does dry runs and test sends."
            ),
        ),  # fmt: skip
    }


def quiet_hours_line(window: QuietHours | None) -> str:
    """Return the DAG docs' quiet-hours entry: the window and what it does to a run, or none."""
    if window is None:
        return "none of its own (the sender account's connection may set a default: extra `quiet_hours`)"
    return (
        f"no sending {window.start}–{window.end} ({window.timezone}): a real delivery launched inside "
        "waits, deferred, in the `quiet_hours` task and sends when the window ends; dry runs and test "
        "sends are not held"
    )


def _frequency_cap_line(campaign: Campaign) -> str:
    """Return the DAG docs' line on the campaign's frequency cap."""
    cap = campaign.target_audience.frequency_cap
    if cap is None:
        return (
            "- **Frequency cap**: none in the file (the sender account's default applies, if its connection"
            " sets one; this campaign's deliveries count for capped campaigns)"
        )
    where = f"workspace `{campaign.workspace}`" if cap.scope == "workspace" else (
        f"sender account `{campaign.content.line_config}`"
    )  # fmt: skip
    return (
        f"- **Frequency cap**: at most {cap.max_deliveries} campaign deliveries per LINE user in "
        f"{cap.window_hours} h, counted over {where}; users over it are excluded `frequency_capped`"
    )


def _personalization_line(bundle: PersonalizedBundle) -> str:
    if not bundle.personalized:
        return "- **Personalization**: none (every recipient gets the same messages)"
    columns = ", ".join(f"`profile.{column}`" for column in bundle.columns)
    return f"- **Personalization**: {columns} from the segment, one body per recipient"


def describe(campaign: Campaign) -> str:
    """Return the DAG's ``doc_md``: audience, schedule, messages and tagged links."""
    from line_oa.campaign.personalization import bundle_of

    schedule = campaign.delivery_schedule
    bundle = bundle_of(campaign)
    when = {
        "immediate": "immediately when triggered (UI, CLI or API)",
        "scheduled": f"once at {getattr(schedule, 'send_at', '')}",
        "recurring": f"on cron `{getattr(schedule, 'cron', '')}` ({getattr(schedule, 'timezone', 'UTC')})",
    }[schedule.type]
    lines = [
        f"# {campaign.name}",
        "",
        campaign.description or "",
        "",
        f"- **Campaign**: `{campaign.id}` · status **{campaign.status}** · workspace `{campaign.workspace}`",
        f"- **Audience**: segment `{campaign.target_audience.parent_segment}/{campaign.target_audience.segment}`"
        f" from connection `{campaign.target_audience.cdp_conn_id}`",
        "- **Suppression lists**: every `suppressions/*.sql`"
        + (
            f", and {', '.join(f'`lists/{n}.sql`' for n in campaign.target_audience.suppression_lists)}"
            if campaign.target_audience.suppression_lists
            else ""
        ),  # fmt: skip
        _frequency_cap_line(campaign),
        f"- **Sender account**: connection `{campaign.content.line_config}` · mode {campaign.content.delivery_mode}"
        + (" (personalized: sent by push)" if bundle.personalized else ""),
        _personalization_line(bundle),
        f"- **Schedule**: {when}",
        f"- **Quiet hours**: {quiet_hours_line(schedule.quiet_hours)}",
        f"- **Retries**: {campaign.activation.retry.max_attempts} attempts, backoff "
        f"{campaign.activation.retry.initial_backoff_seconds}-{campaign.activation.retry.max_backoff_seconds} s",
        "",
        "## Messages",
    ]
    for number, message in enumerate(bundle.as_written(), start=1):
        if message["type"] == "text":
            lines.append(f"{number}. text: {message['text'][:200]}")
        else:
            lines.append(f"{number}. imagemap `{message['baseUrl']}`: {message['altText'][:100]}")
            lines += [
                f"   - {a['type']}: {a.get('linkUri') or a.get('text', '')}" for a in message["actions"]
            ]
    lines += ["", "Source file: `" + str(campaign.source_path) + "`"]
    if schedule.type == "scheduled":
        # Fixed words, no clock: doc_md is part of the serialized DAG, and text that changes once
        # send_at passes would make a new DAG version in the middle of the scheduled run.
        lines[1:1] = [
            "",
            "> The scheduler starts one run at `send_at`. If `send_at` passed before this campaign was "
            "delivered (`python -m line_oa status` and the LINE campaigns page say so), set a new "
            "`send_at`, or trigger with `send_now` to deliver it now.",
        ]
    return "\n".join(lines)
