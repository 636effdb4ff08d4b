"""The run history an auditor reads (line_campaign_run_event): what retries and resumes write."""

from __future__ import annotations

import uuid


def summary(state: str, sent: int, not_sent: int = 0) -> dict:
    return {
        "state": state, "sent": sent, "not_sent": not_sent, "targeted": sent + not_sent, "dry_run": False,
        "test_sends": 0, "messages_billed": sent, "requests": sent, "retries": 0,
    }  # fmt: skip


def events(ledger) -> list[str]:
    return [event["event"] for event in ledger.run_history()]


def test_retries_add_nothing_and_a_resume_after_a_suspension_is_recorded(ledger_factory):
    ledger = ledger_factory(campaign_id=f"history_{uuid.uuid4().hex[:8]}")
    assert ledger.enter_delivery(one_off=True, redeliver=False) is None
    assert ledger.enter_delivery(one_off=True, redeliver=False) is None, "a validate retry of the same run"
    assert events(ledger) == ["started"]
    ledger.write_summary(summary("Suspended", 10, not_sent=90))
    ledger.write_summary(summary("Suspended", 10, not_sent=90))  # a summarize retry
    assert events(ledger) == ["started", "suspended"]
    ledger.write_summary(summary("Finished", 100))  # failed tasks cleared, the run summarized again
    assert events(ledger) == ["started", "suspended", "resumed", "finished"]
    assert ledger.run_history()[1]["detail"] == "10 sent, 90 not yet sent"


def test_a_dry_run_summary_writes_no_event(ledger_factory):
    ledger = ledger_factory(campaign_id=f"history_dry_{uuid.uuid4().hex[:8]}")
    ledger.write_summary({**summary("Finished", 0), "dry_run": True})
    assert events(ledger) == []
