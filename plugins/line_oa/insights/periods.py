"""Which statistics to ask LINE for: dates in Japan time, periods of at most 30 days, 14 days of updates.

Pure: no Airflow, no network. LINE's statistics dates are ``yyyyMMdd`` in UTC+9, a period spans at most
30 days, and LINE updates a message's figures for 14 days after it was sent
(``shared/reference/line-messaging-api.md`` §6).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

JST = dt.timezone(dt.timedelta(hours=9), "UTC+9")
MAX_PERIOD_DAYS = 30
UPDATE_DAYS = 14


def line_date(when: dt.datetime | dt.date) -> str:
    """Return LINE's ``yyyyMMdd`` for a moment (its date in UTC+9) or for a date."""
    if isinstance(when, dt.datetime):
        when = jst_day(when)
    return when.strftime("%Y%m%d")


def jst_day(when: dt.datetime) -> dt.date:
    """Return the date in Japan (UTC+9) of an aware moment."""
    if when.tzinfo is None:
        raise ValueError(f"an aware time is required, got {when!r}")
    return when.astimezone(JST).date()


@dataclass(frozen=True)
class Fetch:
    """One statistics request and its fetch key in the statistics table: unit, period, day collected for."""

    campaign_id: str
    unit: str
    date_from: str
    date_to: str
    as_of_day: str

    def to_dict(self) -> dict[str, str]:
        return {
            "campaign_id": self.campaign_id,
            "unit": self.unit,
            "date_from": self.date_from,
            "date_to": self.date_to,
            "as_of_day": self.as_of_day,
        }


def collection_since(as_of: dt.datetime) -> dt.datetime:
    """Return the earliest send time whose figures LINE still updates at ``as_of`` (14 days before)."""
    return as_of - dt.timedelta(days=UPDATE_DAYS)


def fetch_for(campaign_id: str, unit: str, *, first_sent: dt.datetime, as_of: dt.datetime) -> Fetch:
    """Return the request covering a campaign's sends from ``first_sent`` up to the day of ``as_of``.

    The period starts on the day (UTC+9) of the first send and ends on the day of ``as_of``; a longer
    period than LINE's 30 days keeps its last 30 days (sends before then are past LINE's 14 days of
    updates anyway, see ``collection_since``).
    """
    last = jst_day(as_of)
    first = min(jst_day(first_sent), last)
    first = max(first, last - dt.timedelta(days=MAX_PERIOD_DAYS - 1))
    return Fetch(campaign_id, unit, line_date(first), line_date(last), last.isoformat())


def days_between(date_from: str, as_of_day: str) -> int:
    """Return how many days after the first send day (``yyyyMMdd``) a collection day (``yyyy-MM-dd``) is."""
    start = dt.datetime.strptime(date_from, "%Y%m%d").date()
    return (dt.date.fromisoformat(as_of_day) - start).days
