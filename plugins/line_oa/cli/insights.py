"""``python -m line_oa insights [ID]``: LINE's figures of campaigns, as the delivery report shows them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from line_oa.insights.section import insights_text
from line_oa.insights.store import InsightStore

if TYPE_CHECKING:
    import argparse

EXIT_OK = 0
EXIT_PROBLEMS = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign_id", nargs="?", help="a campaign id (default: every campaign with figures)")
    parser.add_argument(
        "--conn-id", dest="log_conn_id",
        help="the delivery log's SQL connection (default: [line_oa] ledger_conn_id)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Print the figures; exit 1 when the campaign was never delivered (a typo, most likely)."""
    store = InsightStore.connect(args.log_conn_id)
    try:
        ids = [args.campaign_id] if args.campaign_id else store.campaign_ids()
        if not ids:
            print("No LINE figures collected yet: the line_campaign_insights DAG collects them daily.")
            return EXIT_OK
        for campaign_id in ids:
            figures = store.figures(campaign_id)
            if figures is None and not store.sent_count(campaign_id):
                print(f"error: campaign {campaign_id!r} has no real delivery in the delivery log")
                return EXIT_PROBLEMS
            print(insights_text(figures, campaign_id))
    finally:
        store.close()
    return EXIT_OK
