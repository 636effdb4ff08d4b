"""Medians and ratios of repeated measurements, and the simulator's answers during one measurement."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def rotated(items: list, offset: int) -> list:
    """Return ``items`` rotated by ``offset``: each repetition starts with a different alternative."""
    if not items:
        return items
    offset %= len(items)
    return items[offset:] + items[:offset]


def with_simulator_stats(sim, action: Callable[[], Any], *, settle: float = 1.0) -> tuple[Any, dict]:
    """Reset the simulator's record, let its token buckets refill, run ``action``; return it and LINE's answers."""
    sim.admin.reset(keep_config=True)
    time.sleep(settle)
    outcome = action()
    stats = sim.admin.stats()
    push = stats["requests"].get("push", {})
    multicast = stats["requests"].get("multicast", {})
    answers = {
        "rate_limited": stats.get("rate_limited", 0),
        "push_status": push,
        "multicast_status": multicast,
        "deliveries": stats.get("deliveries", 0),
    }
    return outcome, answers
