"""Hold a real delivery inside the campaign's quiet hours, deferred, until they end.

The ``quiet_hours`` task sits between ``validate`` and ``extract_segment``: a held run waits in
Airflow's triggerer (the task is *deferred*, it holds no worker slot) and, when the window ends,
extracts a fresh segment (today's opt-outs and suppression lists) and sends. The push tasks check
again right before sending, so a push task retried or cleared inside quiet hours defers too instead
of sending. Dry runs and test sends are never held: they reach nobody or only the staff who asked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator

from line_oa.campaign.quiet_hours import held_sentence, window_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from line_oa.campaign.model import Campaign, QuietHours
    from line_oa.integration.pipeline import TriggerOptions


def window_of(campaign: Campaign, sender: QuietHours | None = None) -> QuietHours | None:
    """Return the quiet hours that apply: the campaign's own, else its sender account's default."""
    return campaign.delivery_schedule.quiet_hours or sender


def held_until(
    campaign: Campaign, options: TriggerOptions, now: datetime | None = None, sender: QuietHours | None = None
) -> datetime | None:
    """Return when a run of the campaign may send, when ``now`` is inside its quiet hours; else ``None``.

    Dry runs and test sends are never held.

    :param sender: the sender account's default window (``LineOAHook.quiet_hours``).
    """
    window = window_of(campaign, sender)
    if window is None or options.dry_run or options.is_test:
        return None
    return window.end_after(now or datetime.now(UTC))


def quiet_hours_note(
    campaign: Campaign, options: TriggerOptions, now: datetime | None = None, sender: QuietHours | None = None
) -> str | None:
    """Return what a launch at ``now`` inside quiet hours means: when delivery starts, or that it is not held."""
    window = window_of(campaign, sender)
    if window is None:
        return None
    resumes = window.end_after(now or datetime.now(UTC))
    if resumes is None:
        return None
    if options.dry_run or options.is_test:
        kind = "dry run" if options.dry_run else "test send"
        return f"inside {window_text(window.start, window.end, window.timezone)}: a {kind} is not held, it runs now"
    return held_sentence(window.start, window.end, window.timezone, resumes)


def defer_until(operator: BaseOperator, moment: datetime, method_name: str = "execute") -> None:
    """Defer ``operator`` until ``moment``: the triggerer wakes it, no worker slot is held meanwhile."""
    operator.defer(trigger=DateTimeTrigger(moment=moment), method_name=method_name)


class QuietHoursOperator(BaseOperator):
    """Wait, deferred, while the run is inside the campaign's quiet hours; succeed at once outside them.

    Each time it runs (first try, resume after the trigger, retry, clear) it reads the clock again,
    so a cleared run started inside quiet hours is held again.

    :param campaign_file: path of the campaign YAML file (its ``delivery_schedule.quiet_hours``).
    """

    template_fields: Sequence[str] = ("campaign_file",)
    ui_color = "#34495e"

    def __init__(self, *, campaign_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_file = campaign_file

    def execute(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Defer until the quiet hours end when inside them; return ``{"held": bool, "sending_from": iso}``."""
        from line_oa.campaign.loading import load_campaign
        from line_oa.integration.hooks import LineOAHook
        from line_oa.integration.pipeline import TriggerOptions

        campaign = load_campaign(self.campaign_file)
        options = TriggerOptions.from_params(dict(context["params"]))
        sender = LineOAHook(line_oa_conn_id=campaign.content.line_config).quiet_hours
        now = datetime.now(UTC)
        resumes = held_until(campaign, options, now, sender)
        if resumes is not None:
            self.log.info("%s; waiting in the triggerer", quiet_hours_note(campaign, options, now, sender))
            defer_until(self, resumes)
        note = quiet_hours_note(campaign, options, now, sender)
        if event is not None:
            self.log.info("quiet hours over at %s: delivery starts", now.isoformat(timespec="seconds"))
        elif note:
            self.log.info("%s", note)
        else:
            self.log.info("outside quiet hours: delivery starts now")
        return {"held": event is not None, "sending_from": now.isoformat(timespec="seconds")}
