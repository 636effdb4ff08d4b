"""Decide which injected fault, if any, hits a request (seeded, so a run can be replayed)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from line_simulator.config import parse_time

if TYPE_CHECKING:
    import datetime as dt

RESET = "reset"
HANG = "hang"
ERROR_500 = "error_500"
ERROR_503 = "error_503"
RATE_LIMIT_429 = "rate_limit_429"
ACCEPTED_THEN_LOST = "accepted_then_lost"
OUTAGE = "outage"
CONFLICT_WITHOUT_ACCEPTED_ID = "conflict_without_accepted_id"

#: Faults drawn before the request is processed, in the order they are drawn.
_BEFORE = (
    (HANG, "hang_rate"),
    (ERROR_500, "error_500_rate"),
    (ERROR_503, "error_503_rate"),
    (RATE_LIMIT_429, "rate_limit_429_rate"),
)


class FaultInjector:
    """Draw faults from ``random.Random(seed)``; each rate is drawn only when it is above zero.

    The draws happen in a fixed order (reset, latency jitter, hang, 500, 503, 429, then
    accepted-then-lost after a successful send, or the missing ``X-Line-Accepted-Request-Id`` after a
    409 retry-key conflict), so one seed and one request sequence always give the same faults.
    """

    def __init__(self, faults: dict[str, Any]):
        self.random = random.Random(faults["seed"])
        self.endpoints = frozenset(faults["fault_endpoints"])
        self.reset_rate = float(faults["reset_rate"])
        self.latency = float(faults["latency_ms"]) / 1000
        self.jitter = float(faults["latency_jitter_ms"]) / 1000
        self.hang_seconds = float(faults["hang_seconds"])
        self.hang_then_process = faults["hang_then"] == "process"
        self.lost_rate = float(faults["accepted_then_lost_rate"])
        self.conflict_without_id_rate = float(faults["conflict_without_accepted_id_rate"])
        self.before = tuple((kind, float(faults[key])) for kind, key in _BEFORE if faults[key] > 0)
        outage = faults.get("outage")
        self.outage_until: dt.datetime | None = parse_time(outage["until_simulated_time"]) if outage else None
        self.outage_status = outage["status"] if outage else 503
        #: True when nothing is configured: the hot path then skips every draw.
        self.idle = not (
            self.reset_rate
            or self.latency
            or self.jitter
            or self.before
            or self.lost_rate
            or self.conflict_without_id_rate
        )

    def applies_to(self, endpoint: str) -> bool:
        """Return whether faults are injected on ``endpoint`` (push and multicast by default)."""
        return endpoint in self.endpoints

    def draw_reset(self) -> bool:
        """Return whether to drop the connection before doing anything."""
        return self.reset_rate > 0 and self.random.random() < self.reset_rate

    def draw_delay(self) -> float:
        """Return the seconds of added latency for this request."""
        if self.jitter:
            return self.latency + self.random.random() * self.jitter
        return self.latency

    def draw_before(self) -> str | None:
        """Return the fault that answers instead of processing (hang, 500, 503 or 429), if any."""
        for kind, rate in self.before:
            if self.random.random() < rate:
                return kind
        return None

    def draw_lost(self) -> bool:
        """Return whether to drop the connection after a send was accepted and recorded."""
        return self.lost_rate > 0 and self.random.random() < self.lost_rate

    def draw_conflict_without_accepted_id(self) -> bool:
        """Return whether a 409 retry-key conflict leaves out ``X-Line-Accepted-Request-Id``."""
        return self.conflict_without_id_rate > 0 and self.random.random() < self.conflict_without_id_rate

    def in_outage(self, now: dt.datetime) -> bool:
        """Return whether a scheduled outage covers the simulated time ``now``."""
        return self.outage_until is not None and now < self.outage_until
