"""Hold what the simulator remembers: the simulated clock, rate buckets, retry keys, quota, the record.

Everything here is touched from one asyncio event loop only. A send is checked and committed in one
synchronous call (no ``await`` between reading a retry key and storing it), so two concurrent requests
with the same key cannot both be accepted: the second one sees the key of the first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from line_simulator.message_types import QUOTABLE

if TYPE_CHECKING:
    from collections.abc import Iterator

RETRY_KEY_LIFETIME = dt.timedelta(hours=24)


class SimulatedClock:
    """Run at real speed from an adjustable offset; drives retry-key expiry and outage windows."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        """Return the simulated time (aware, UTC)."""
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, seconds: float) -> dt.datetime:
        """Move the clock forward (or back, if negative) by ``seconds``."""
        self.offset += dt.timedelta(seconds=seconds)
        return self.now()

    def set(self, when: dt.datetime) -> dt.datetime:
        """Make the simulated time ``when`` from now on."""
        self.offset = when - dt.datetime.now(dt.UTC)
        return self.now()


class TokenBucket:
    """Allow ``rate`` requests per second with a burst of one second's worth (real monotonic time)."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.capacity = max(self.rate, 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        """Take one token if there is one; return whether the request may proceed."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class AcceptedKey:
    """A retry key that was accepted: its first attempt, the accepting request, push's answer for a 409.

    ``accepted_at`` is the time of the key's *first attempt*, from which LINE counts its 24 hours.
    """

    accepted_at: dt.datetime
    request_id: str
    sent_messages: list[dict[str, str]] | None


@dataclass(slots=True)
class SendRecord:
    """One accepted send request; its recipients expand into one delivery row each."""

    channel: str
    endpoint: str
    recipients: list[str]
    blocked: frozenset[str]
    retry_key: str | None
    request_id: str
    time: str
    messages_hash: str
    unknown: frozenset[str] = frozenset()  # multicast recipients unknown to the channel, skipped
    unit: str | None = None  # the customAggregationUnits name LINE counts the send under (None: none)


@dataclass
class ChannelState:
    """The per-channel memory: monthly consumption, reservation, accepted retry keys and rate buckets.

    ``reserved`` is monthly quota held by another delivery in progress (LINE reserves quota for a
    delivery while it runs): it is not consumption, but a send must fit in what is left beside it.
    """

    name: str
    consumption: int = 0
    reserved: int = 0
    retry_keys: dict[str, AcceptedKey] = field(default_factory=dict)
    buckets: dict[str, TokenBucket | None] = field(default_factory=dict)
    #: When each retry key was first attempted: LINE keeps a key "for 24 hours from the first request"
    #: (https://developers.line.biz/en/docs/messaging-api/retrying-api-request/), not from acceptance.
    first_attempts: dict[str, dt.datetime] = field(default_factory=dict)
    #: Accepted pushes per recipient (simulated times), for the per-recipient push limit.
    pushes_to: dict[str, deque[dt.datetime]] = field(default_factory=dict)
    _forget_at: int = 10_000

    def first_attempt(self, key: str, now: dt.datetime) -> dt.datetime:
        """Return when ``key`` was first attempted (now, if never or more than 24 h ago), noting it.

        An accepted key's first attempt is kept in its ``AcceptedKey``; here only keys not accepted
        (yet) are remembered, and those older than 24 h are forgotten now and then (amortized).
        """
        accepted = self.retry_keys.get(key)
        if accepted is not None and now - accepted.accepted_at < RETRY_KEY_LIFETIME:
            return accepted.accepted_at
        first = self.first_attempts.get(key)
        if first is None or now - first >= RETRY_KEY_LIFETIME:
            if len(self.first_attempts) >= self._forget_at:
                self._forget_old_attempts(now)
            first = self.first_attempts[key] = now
        return first

    def accept_key(self, key: str, now: dt.datetime, request_id: str, sent_messages: Any) -> None:
        """Store ``key`` as accepted, its 24 h counted from its first attempt."""
        first = self.first_attempt(key, now)
        self.first_attempts.pop(key, None)
        self.retry_keys[key] = AcceptedKey(first, request_id, sent_messages)

    def _forget_old_attempts(self, now: dt.datetime) -> None:
        for key, first in list(self.first_attempts.items()):
            if now - first >= RETRY_KEY_LIFETIME:
                del self.first_attempts[key]
        self._forget_at = max(10_000, 2 * len(self.first_attempts))

    def accepted_key(self, key: str, now: dt.datetime) -> AcceptedKey | None:
        """Return the still-valid acceptance of ``key``, forgetting it 24 h after its first attempt."""
        accepted = self.retry_keys.get(key)
        if accepted is None:
            return None
        if now - accepted.accepted_at >= RETRY_KEY_LIFETIME:
            del self.retry_keys[key]
            return None
        return accepted

    def recent_pushes(self, user_id: str, now: dt.datetime, window: dt.timedelta) -> int:
        """Return how many pushes to ``user_id`` were accepted within ``window`` before ``now``."""
        times = self.pushes_to.get(user_id)
        if not times:
            return 0
        while times and now - times[0] >= window:
            times.popleft()
        return len(times)


class Record:
    """Keep every accepted send, the message bundles (once per distinct bundle) and the counters."""

    def __init__(self) -> None:
        self.sends: list[SendRecord] = []
        self.bundles: dict[str, list[Any]] = {}
        self.requests: Counter[tuple[str, int | str]] = Counter()
        self.faults: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self._message_ids = itertools.count(int(time.time() * 1000) * 100000)

    def store_bundle(self, messages: list[Any]) -> str:
        """Store a message bundle once and return its hash (sha256 of its canonical JSON)."""
        canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        if digest not in self.bundles:
            self.bundles[digest] = messages
        return digest

    def sent_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, str]]:
        """Return push's ``sentMessages``: a numeric id per message, a quote token for quotable types."""
        result = []
        for message in messages:
            entry = {"id": str(next(self._message_ids))}
            if message.get("type") in QUOTABLE:
                entry["quoteToken"] = secrets.token_urlsafe(48)
            result.append(entry)
        return result

    def add(self, send: SendRecord) -> None:
        """Append an accepted send and count its deliveries."""
        self.sends.append(send)
        self.events["deliveries"] += len(send.recipients)
        self.events["delivered"] += len(send.recipients) - len(send.blocked) - len(send.unknown)

    def rows(self, channel: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield one delivery row per recipient, oldest first (optionally of one channel)."""
        for send in list(self.sends):
            if channel is not None and send.channel != channel:
                continue
            for recipient in send.recipients:
                yield {
                    "channel": send.channel,
                    "endpoint": send.endpoint,
                    "to": recipient,
                    "delivered": recipient not in send.blocked and recipient not in send.unknown,
                    "unknown": recipient in send.unknown,
                    "retry_key": send.retry_key,
                    "request_id": send.request_id,
                    "time": send.time,
                    "messages_hash": send.messages_hash,
                    "unit": send.unit,
                }

    def delivery_counts(self, min_count: int = 1, channel: str | None = None) -> dict[str, int]:
        """Count recorded deliveries per recipient (blocked ones included) and keep those >= min_count."""
        counts: Counter[str] = Counter()
        for send in self.sends:
            if channel is None or send.channel == channel:
                counts.update(send.recipients)
        return {recipient: count for recipient, count in counts.items() if count >= min_count}


def fraction_of(user_id: str, salt: str) -> float:
    """Map a user id to a stable number in [0, 1): sha256("<salt>:<id>"), first 8 bytes, / 2**64."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class RecipientRules:
    """Decide whether a well-formed user id is a friend, blocked, or unknown to the channel."""

    def __init__(self, recipients: dict[str, Any]):
        self.blocked = frozenset(recipients["blocked"])
        self.unknown = frozenset(recipients["unknown"])
        self.blocked_fraction = float(recipients["blocked_fraction"])
        self.unknown_fraction = float(recipients["unknown_fraction"])
        self.multicast_reject_unknown = recipients["multicast_unknown"] == "reject"
        self.push_limit: int | None = recipients["push_per_recipient_limit"]
        self.push_window = dt.timedelta(seconds=recipients["push_per_recipient_window_seconds"])

    def is_unknown(self, user_id: str) -> bool:
        """Return whether ``user_id`` does not exist for the channel (explicitly or by fraction)."""
        if user_id in self.unknown:
            return True
        return self.unknown_fraction > 0 and fraction_of(user_id, "unknown") < self.unknown_fraction

    def is_blocked(self, user_id: str) -> bool:
        """Return whether ``user_id`` blocked the account (explicitly or by fraction)."""
        if user_id in self.blocked:
            return True
        return self.blocked_fraction > 0 and fraction_of(user_id, "blocked") < self.blocked_fraction
