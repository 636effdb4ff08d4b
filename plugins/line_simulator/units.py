"""Aggregation units: which unit each accepted send counts under, and LINE's monthly budget of names.

LINE counts impressions and clicks of push and multicast requests per ``customAggregationUnits`` name,
up to 1,000 distinct names per calendar month per channel; the 1,001st name is silently not assigned
while the message is still sent (``shared/reference/line-messaging-api.md`` §1.7). Months are counted
in Japan time (UTC+9), like LINE's other statistics dates.

The book of names and the insight settings live beside the simulator's record and are forgotten with
it (``/_sim/reset``).
"""

from __future__ import annotations

import datetime as dt
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from line_simulator.runtime import Simulator
    from line_simulator.state import Record

JST = dt.timezone(dt.timedelta(hours=9), "UTC+9")
DEFAULT_UNIT_BUDGET = 1000
DEFAULT_INSIGHT_RATE_PER_HOUR = 60


@dataclass
class InsightSettings:
    """What the admin endpoint ``/_sim/insights`` may change: the unit budget and the insight limit."""

    unit_budget: int = DEFAULT_UNIT_BUDGET
    #: Requests per hour per channel on the statistics endpoint; ``None``: unlimited.
    rate_limit_per_hour: int | None = DEFAULT_INSIGHT_RATE_PER_HOUR
    #: Requests the bucket holds when full; ``None``: an hour's worth (tests set 1 to see a 429 soon).
    rate_limit_burst: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit_budget": self.unit_budget,
            "rate_limit_per_hour": self.rate_limit_per_hour,
            "rate_limit_burst": self.rate_limit_burst,
        }


@dataclass
class UnitBook:
    """The unit names each channel used, per month (``YYYY-MM`` in UTC+9), in the order first used."""

    names: dict[tuple[str, str], dict[str, None]] = field(default_factory=dict)
    settings: InsightSettings = field(default_factory=InsightSettings)
    #: Per channel: the hourly limit a statistics bucket was made for, and the bucket (None: off).
    buckets: dict[str, tuple[tuple[int | None, int | None], Any]] = field(default_factory=dict)

    def used(self, channel: str, when: dt.datetime) -> list[str]:
        return list(self.names.get((channel, month_of(when)), {}))


_books: weakref.WeakKeyDictionary[Record, UnitBook] = weakref.WeakKeyDictionary()


def month_of(when: dt.datetime) -> str:
    """Return the calendar month of ``when`` in Japan time, ``YYYY-MM``."""
    return when.astimezone(JST).strftime("%Y-%m")


def settings_of(sim: Simulator) -> InsightSettings:
    """Return the simulator's insight settings (LINE's defaults until changed, and after a reset)."""
    return book_of(sim).settings


def book_of(sim: Simulator) -> UnitBook:
    """Return the unit names of the simulator's current record."""
    return _books.setdefault(sim.record, UnitBook())


def assign_unit(sim: Simulator, channel: str, body: dict[str, Any], now: dt.datetime) -> str | None:
    """Return the unit an accepted send counts under, or ``None`` (no unit, or over the month's budget).

    Call only for an accepted request (a refused one uses no name). Never awaits.
    """
    units = body.get("customAggregationUnits")
    if not units:
        return None
    unit = units[0]
    names = book_of(sim).names.setdefault((channel, month_of(now)), {})
    if unit in names:
        return unit
    if len(names) >= settings_of(sim).unit_budget:
        sim.record.events["aggregation_unit_over_budget"] += 1
        return None  # LINE: silently not assigned; the message is still sent
    names[unit] = None
    return unit
