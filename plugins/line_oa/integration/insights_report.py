"""Render a campaign's latest delivery report again, now with the LINE figures collected since."""

from __future__ import annotations

from typing import TYPE_CHECKING

from line_oa import settings
from line_oa.campaign.loading import load_campaign
from line_oa.delivery_log.store import DeliveryLog
from line_oa.insights.store import InsightStore
from line_oa.integration.summary import write_report

if TYPE_CHECKING:
    import pathlib


def refresh_report(campaign_id: str, *, conn_id: str | None = None) -> pathlib.Path | None:
    """Rewrite the report of the campaign's latest real run; ``None`` when it has no summary or file."""
    store = InsightStore.connect(conn_id)
    try:
        summary = store.latest_summary(campaign_id)
    finally:
        store.close()
    path = settings.campaigns_dir() / f"{campaign_id}.yaml"
    if summary is None or not path.exists():
        return None
    campaign = load_campaign(path)
    ledger = DeliveryLog.connect(conn_id, campaign_id=campaign_id, run_id=summary["run_id"])
    try:
        summary["history"] = ledger.run_history()
        return write_report(campaign, ledger, summary)
    finally:
        ledger.close()
