"""Collect LINE's statistics per unit into the statistics table, within LINE's 60 requests an hour.

The insight endpoints allow 60 requests an hour per channel. The collection asks once per campaign
and day; a 429 (rate limit) is waited out with exponential backoff and the same request is asked
again. ``{"status": "unready"}`` (figures not computed yet) stores nothing: the next collection asks
again. No Airflow here: the DAG (``integration.insights_dag``) passes the hook and the store in.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from line_oa.campaign.units import unit_for_campaign
from line_oa.errors import LineRateLimitError
from line_oa.insights.periods import Fetch, collection_since, fetch_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from line_oa.insights.store import InsightStore

log = logging.getLogger(__name__)

STORED = "stored"
UNREADY = "unready"


@dataclass(frozen=True)
class Backoff:
    """How long to wait after a 429 before asking again: doubling from ``initial``, at most ``attempts``."""

    attempts: int = 6
    initial_seconds: float = 60.0  # LINE's bucket gives back one request a minute
    max_seconds: float = 900.0

    def wait(self, attempt: int) -> float:
        return min(self.max_seconds, self.initial_seconds * 2 ** (attempt - 1))


def fetches_due(
    store: InsightStore, *, as_of: dt.datetime, unit_of: Callable[[str], str] = unit_for_campaign
) -> list[Fetch]:
    """Return one fetch per campaign and unit with real sends in the 14 days before ``as_of``.

    The unit is the one its runs recorded; ``unit_of`` names it for runs that recorded none.
    """
    return [
        fetch_for(
            campaign.campaign_id,
            campaign.unit or unit_of(campaign.campaign_id),
            first_sent=campaign.first_sent,
            as_of=as_of,
        )
        for campaign in store.delivered_since(collection_since(as_of))
    ]


def fetch_statistics(hook: Any, fetch: Fetch, *, backoff: Backoff, sleep=time.sleep) -> dict[str, Any]:
    """Ask LINE for one unit's statistics; wait out 429s; raise the last one when attempts run out."""
    attempt = 1
    while True:
        try:
            return hook.get_statistics_per_unit(fetch.unit, fetch.date_from, fetch.date_to)
        except LineRateLimitError as err:
            if attempt >= backoff.attempts:
                raise
            wait = backoff.wait(attempt)
            log.warning(
                "%s: LINE's insight rate limit (429, x-line-request-id=%s); asking again in %.0fs (%d/%d)",
                fetch.unit, err.request_id, wait, attempt, backoff.attempts,
            )  # fmt: skip
            sleep(wait)
            attempt += 1


def collect(
    hook: Any, store: InsightStore, fetch: Fetch, *, backoff: Backoff | None = None, sleep=time.sleep
) -> dict[str, Any]:
    """Fetch one campaign's statistics and store them under the fetch key; return what happened."""
    body = fetch_statistics(hook, fetch, backoff=backoff or Backoff(), sleep=sleep)
    outcome = {**fetch.to_dict(), "rows": 0}
    if body.get("status") == UNREADY or "overview" not in body:
        log.info("%s: LINE's figures for %s-%s are not ready yet", fetch.unit, fetch.date_from, fetch.date_to)
        return {**outcome, "status": UNREADY}
    rows = store.save(fetch, body, dt.datetime.now(dt.UTC))
    overview = body["overview"]
    log.info(
        "%s (%s-%s): %s unique impressions, %s unique clicks, %d rows stored",
        fetch.unit, fetch.date_from, fetch.date_to, _shown(overview.get("uniqueImpression")),
        _shown(overview.get("uniqueClick")), rows,
    )  # fmt: skip
    return {**outcome, "status": STORED, "rows": rows}


def _shown(value: Any) -> str:
    return "fewer than 20" if value is None else str(value)
