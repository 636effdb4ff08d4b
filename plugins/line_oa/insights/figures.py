"""What the report and the terminal show: delivered, opens, clicks per link, figures over the days.

Pure: built from the statistics table's rows and the delivery log's count of recipients sent. A value
LINE withheld for privacy (fewer than 20 users) stays ``None`` and reads "fewer than 20", never 0.
Links are grouped without their UTM parameters, so the same page tagged for two messages is one link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from line_oa.insights.periods import days_between

FEWER_THAN_20 = "fewer than 20"


@dataclass(frozen=True)
class Count:
    """A figure from LINE: ``value`` (``None``: withheld, fewer than 20) and whether it is a lower bound.

    A sum over rows of which some were withheld is known only as "at least".
    """

    value: int | None
    at_least: bool = False

    @property
    def shown(self) -> str:
        if self.value is None:
            return FEWER_THAN_20
        return f"at least {self.value:,}" if self.at_least else f"{self.value:,}"

    def share_of(self, total: int | None) -> str:
        """Return this count as a percentage of ``total`` ("n/a" when it cannot be computed)."""
        if self.value is None or not total:
            return "under 20 users" if self.value is None else "n/a"
        share = f"{100 * self.value / total:.1f}%"
        return f"at least {share}" if self.at_least else share


def summed(values: list[int | None]) -> Count:
    """Add counts of which some may be withheld (``None``)."""
    known = [value for value in values if value is not None]
    if not known:
        return Count(None)
    return Count(sum(known), at_least=len(known) < len(values))


@dataclass(frozen=True)
class LinkFigures:
    """Taps on one link (UTM parameters removed), over every message that carries it."""

    url: str
    clicks: Count
    unique_clicks: Count


@dataclass(frozen=True)
class DayFigures:
    """The figures as collected on one day (UTC+9), counted from the first send day."""

    as_of_day: str
    days_since_sending: int
    unique_impressions: int | None
    unique_clicks: int | None


@dataclass
class CampaignFigures:
    """A campaign's LINE figures as of its latest collection, and the series of collections."""

    campaign_id: str
    unit: str
    delivered: int
    as_of_day: str
    date_from: str
    date_to: str
    fetched_at: str
    unique_impressions: Count
    unique_clicks: Count
    unique_media_played: Count
    messages: list[tuple[int, Count, Count]] = field(default_factory=list)  # seq, impressions, unique
    links: list[LinkFigures] = field(default_factory=list)
    series: list[DayFigures] = field(default_factory=list)

    @property
    def open_rate(self) -> str:
        """Return unique impressions / delivered, LINE's measure of opens."""
        return self.unique_impressions.share_of(self.delivered)


def without_utm(url: str) -> str:
    """Return ``url`` without its ``utm_*`` query parameters (the page the link leads to)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)]
    kept = [(key, value) for key, value in query if not key.lower().startswith("utm_")]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def latest_overview(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the overview row of the latest collection (its unit and period are what the figures cover)."""
    overviews = [row for row in rows if row["kind"] == "overview"]
    if not overviews:
        return None
    return max(overviews, key=lambda row: (row["as_of_day"], str(row["fetched_at"])))


def campaign_figures(rows: list[dict[str, Any]], *, delivered: int) -> CampaignFigures | None:
    """Build a campaign's figures from its stored rows (see ``InsightStore.statistics``); None if none.

    ``delivered`` is what the open rate divides by: the recipients the latest collection's unit and
    period cover (``InsightStore.sent_under``).
    """
    latest = latest_overview(rows)
    if latest is None:
        return None
    overviews = [row for row in rows if row["kind"] == "overview"]
    key = tuple(latest[column] for column in ("unit", "date_from", "date_to", "as_of_day"))
    fetch = [
        row for row in rows if tuple(row[c] for c in ("unit", "date_from", "date_to", "as_of_day")) == key
    ]
    figures = CampaignFigures(
        campaign_id=latest["campaign_id"], unit=latest["unit"], delivered=delivered,
        as_of_day=latest["as_of_day"], date_from=latest["date_from"], date_to=latest["date_to"],
        fetched_at=str(latest["fetched_at"]), unique_impressions=Count(latest["unique_impression"]),
        unique_clicks=Count(latest["unique_click"]), unique_media_played=Count(latest["unique_media_played"]),
    )  # fmt: skip
    figures.messages = [
        (row["seq"], Count(row["impression"]), Count(row["unique_impression"]))
        for row in sorted(fetch, key=lambda row: row["seq"])
        if row["kind"] == "message"
    ]
    figures.links = _links([row for row in fetch if row["kind"] == "click"])
    figures.series = _series(overviews)
    return figures


def _links(clicks: list[dict[str, Any]]) -> list[LinkFigures]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in clicks:
        grouped.setdefault(without_utm(row["url"]), []).append(row)
    return [
        LinkFigures(url, summed([r["click"] for r in group]), summed([r["unique_click"] for r in group]))
        for url, group in grouped.items()
    ]


def _series(overviews: list[dict[str, Any]]) -> list[DayFigures]:
    """Return one point per collection day: the latest fetch of that day, from the earliest first day."""
    first = min(row["date_from"] for row in overviews)
    by_day: dict[str, dict[str, Any]] = {}
    for row in sorted(overviews, key=lambda row: (row["as_of_day"], str(row["fetched_at"]))):
        by_day[row["as_of_day"]] = row
    return [
        DayFigures(day, days_between(first, day), row["unique_impression"], row["unique_click"])
        for day, row in sorted(by_day.items())
    ]
