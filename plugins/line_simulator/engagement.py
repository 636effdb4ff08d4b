"""Imitate what LINE users do with a delivered message: open it, tap its links, days after it arrived.

Everything is derived from the simulator's record and ``fraction_of`` (sha256), never from a random
generator, so the same deliveries always give the same figures:

- the unit's open rate is 35-65 % (seeded by the unit's name); a recipient opens the message when
  ``fraction_of(user, "open:<unit>") < rate``, some hours to 13 days after it arrived (mostly the first
  day or two: LINE updates its figures for 14 days after sending);
- an opener views message ``seq`` 1 always, each later message with 85 % of the previous chance;
- each link of message ``seq`` (an action's ``uri``/``linkUri``, or a URL in a text) has a click rate of 8-38 % of the openers (seeded by unit, seq and URL),
  tapped within the hour after opening; a third of the openers view or tap twice (``impression`` and
  ``click`` count views and taps, ``unique*`` count users);
- an event counts once it has happened on the simulated clock.

The statistics count the requests of the unit sent between ``from`` and ``to`` (dates in UTC+9), and
values under 20 are ``null``: LINE withholds them for privacy.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from line_simulator.state import fraction_of
from line_simulator.units import JST

if TYPE_CHECKING:
    from line_simulator.state import Record, SendRecord

PRIVACY_THRESHOLD = 20
MAX_DAYS = 13
LINK_KEYS = ("linkUri", "uri")
#: LINE turns URLs in a text message into links; they are counted like action links.
TEXT_URL = re.compile(r"https?://[^\s<>\"]+")


@dataclass
class Tally:
    """Views and taps counted for one unit: users (for the unique counts) and repeats."""

    openers: set[str] = field(default_factory=set)
    clickers: set[str] = field(default_factory=set)
    views: dict[int, set[str]] = field(default_factory=dict)
    repeat_views: dict[int, int] = field(default_factory=dict)
    taps: dict[tuple[int, str], set[str]] = field(default_factory=dict)
    repeat_taps: dict[tuple[int, str], int] = field(default_factory=dict)


def links_of(messages: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Return ``(seq, url)`` for every web link of the bundle, in order, each once per message."""
    found: list[tuple[int, str]] = []
    for seq, message in enumerate(messages, start=1):
        for url in _urls(message):
            if (seq, url) not in found:
                found.append((seq, url))
    return found


def _urls(node: Any) -> list[str]:
    if isinstance(node, dict):
        text = node.get("text") if node.get("type") == "text" else None
        urls = TEXT_URL.findall(text) if isinstance(text, str) else []
        urls += [
            value
            for key, value in node.items()
            if key in LINK_KEYS and isinstance(value, str) and value.startswith(("http://", "https://"))
        ]
        for value in node.values():
            if isinstance(value, dict | list):
                urls += _urls(value)
        return urls
    if isinstance(node, list):
        return [url for item in node for url in _urls(item)]
    return []


def sends_in_period(
    record: Record, channel: str, unit: str, first: dt.date, last: dt.date
) -> list[SendRecord]:
    """Return the unit's sends on ``channel`` whose date in UTC+9 is within ``first``..``last``."""
    return [
        send
        for send in list(record.sends)
        if send.channel == channel
        and send.unit == unit
        and first <= dt.datetime.fromisoformat(send.time).astimezone(JST).date() <= last
    ]


def open_time(unit: str, user: str, sent: dt.datetime) -> dt.datetime | None:
    """Return when ``user`` opens the unit's message sent at ``sent``, or ``None`` if never."""
    rate = 0.35 + 0.30 * fraction_of(unit, "open-rate")
    if fraction_of(user, f"open:{unit}") >= rate:
        return None
    draw = fraction_of(user, f"open-day:{unit}")
    day = min(MAX_DAYS, int(-math.log(1.0 - draw) * 1.5))
    hours = 0.25 + 8.0 * fraction_of(user, f"open-hour:{unit}")
    return sent + dt.timedelta(days=day, hours=hours)


def tally(record: Record, sends: list[SendRecord], unit: str, now: dt.datetime) -> Tally:
    """Count who had opened, viewed and tapped what by ``now``."""
    counted = Tally()
    for send in sends:
        messages = record.bundles.get(send.messages_hash, [])
        links = links_of(messages)
        sent = dt.datetime.fromisoformat(send.time)
        for user in send.recipients:
            if user in send.blocked or user in send.unknown or user in counted.openers:
                continue
            opened = open_time(unit, user, sent)
            if opened is None or opened > now:
                continue
            counted.openers.add(user)
            _count_views(counted, unit, user, len(messages))
            _count_taps(counted, unit, user, links, opened, now)
    return counted


def _count_views(counted: Tally, unit: str, user: str, messages: int) -> None:
    chance = 1.0
    for seq in range(1, messages + 1):
        if seq > 1:
            chance *= 0.85
            if fraction_of(user, f"view:{unit}:{seq}") >= chance:
                break
        counted.views.setdefault(seq, set()).add(user)
        if fraction_of(user, f"view-again:{unit}:{seq}") < 1 / 3:
            counted.repeat_views[seq] = counted.repeat_views.get(seq, 0) + 1


def _count_taps(
    counted: Tally, unit: str, user: str, links: list[tuple[int, str]], opened: dt.datetime, now: dt.datetime
) -> None:
    for seq, url in links:
        if user not in counted.views.get(seq, ()):
            continue
        rate = 0.08 + 0.30 * fraction_of(f"{unit}:{seq}:{url}", "click-rate")
        if fraction_of(user, f"click:{unit}:{seq}:{url}") >= rate:
            continue
        if opened + dt.timedelta(minutes=60 * fraction_of(user, f"click-at:{unit}:{url}")) > now:
            continue
        counted.clickers.add(user)
        counted.taps.setdefault((seq, url), set()).add(user)
        if fraction_of(user, f"click-again:{unit}:{seq}:{url}") < 1 / 3:
            counted.repeat_taps[seq, url] = counted.repeat_taps.get((seq, url), 0) + 1


def private(value: int | None) -> int | None:
    """Return ``value``, or ``None`` under LINE's privacy threshold of 20."""
    return None if value is None or value < PRIVACY_THRESHOLD else value


def statistics(record: Record, sends: list[SendRecord], unit: str, now: dt.datetime) -> dict[str, Any]:
    """Return the body of ``GET /v2/bot/insight/message/event/aggregation`` for these sends."""
    counted = tally(record, sends, unit, now)
    bundle_links: list[tuple[int, str]] = []
    seqs = 0
    for send in sends:
        messages = record.bundles.get(send.messages_hash, [])
        seqs = max(seqs, len(messages))
        bundle_links += [link for link in links_of(messages) if link not in bundle_links]
    messages_body = []
    for seq in range(1, seqs + 1):
        viewers = len(counted.views.get(seq, ()))
        messages_body.append(
            {
                "seq": seq,
                "impression": private(viewers + counted.repeat_views.get(seq, 0)),
                "uniqueImpression": private(viewers),
                "mediaPlayed": None,
                "uniqueMediaPlayed": None,
            }
        )
    clicks_body = []
    for seq, url in bundle_links:
        tappers = len(counted.taps.get((seq, url), ()))
        clicks_body.append(
            {
                "seq": seq,
                "url": url,
                "click": private(tappers + counted.repeat_taps.get((seq, url), 0)),
                "uniqueClick": private(tappers),
                "uniqueClickOfRequest": private(tappers),
            }
        )
    overview = {
        "uniqueImpression": private(len(counted.openers)),
        "uniqueClick": private(len(counted.clickers)),
        "uniqueMediaPlayed": None,
        "uniqueMediaPlayed100Percent": None,
    }
    return {"overview": overview, "messages": messages_body, "clicks": clicks_body}
