"""Quiet hours: the daily window, in local time, during which a campaign must not send.

Pure functions on the clock (no Airflow): a window ``start``–``end`` in an IANA timezone may cross
midnight (``21:00``–``09:00``). :func:`quiet_hours_end` tells whether an instant falls inside the
window and, if so, the instant the window ends, which is when a held run may send.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, time, timedelta

HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def parse_hh_mm(text: str) -> time:
    """Return the ``time`` of an ``HH:MM`` text (00:00 to 23:59); raise ``ValueError`` otherwise."""
    if not HH_MM.match(text):
        raise ValueError(f"{text!r} is not a time of day written HH:MM (00:00 to 23:59)")
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_inside(start: time, end: time, local: time) -> bool:
    """Tell whether the wall-clock time ``local`` is inside ``[start, end)``, crossing midnight when start > end."""
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(start: str, end: str, timezone: str, now: datetime) -> datetime | None:
    """Return when the quiet hours around ``now`` end (in ``timezone``), or ``None`` when ``now`` is outside.

    The window holds from ``start`` (included) to ``end`` (excluded), read on the local clock of
    ``timezone``; ``start`` after ``end`` means the window crosses midnight. The end is the first
    instant at which the local clock reads ``end`` or later: on a day when ``end`` falls in a
    daylight-saving gap (the clock jumps past it), that is the jump; when ``end`` occurs twice (the
    clock falls back), the first occurrence, and the window does not reopen in the repeated hour.

    :param now: an aware instant (naive values are refused: they have no place on the clock).
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a timezone")
    zone = zoneinfo.ZoneInfo(timezone)
    opens, closes = parse_hh_mm(start), parse_hh_mm(end)
    local = now.astimezone(zone)
    if not is_inside(opens, closes, local.time()):
        return None
    day = local.date()
    if opens > closes and local.time() >= opens:
        day += timedelta(days=1)  # before midnight: the window ends tomorrow
    ends = _first_instant_at(datetime.combine(day, closes), zone)
    # The clock fell back after the first `end` and reads a quiet time again: the window is over.
    return ends if ends > now else None


def _first_instant_at(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """Return the first instant at which the clock of ``zone`` reads the naive ``wall`` time or later."""
    earlier = wall.replace(tzinfo=zone, fold=0)
    if earlier.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return earlier  # the wall time exists (fold=0 is its first occurrence when it occurs twice)
    # In a gap: fold=1 maps before the jump, fold=0 after it; the jump is the first instant past `wall`.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(earlier.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, zone)


def window_text(start: str, end: str, timezone: str) -> str:
    """Return how a quiet-hours window reads in messages: ``quiet hours 21:00–09:00 Asia/Tokyo``."""
    return f"quiet hours {start}–{end} {timezone}"


def held_sentence(start: str, end: str, timezone: str, resumes_at: datetime) -> str:
    """Return the sentence a held launch shows: which quiet hours, and when delivery starts."""
    return (
        f"inside {window_text(start, end, timezone)}: delivery starts at "
        f"{resumes_at.isoformat(timespec='minutes')}"
    )
