"""Client-side token bucket: keeps a sender under its share of the channel's LINE rate limit."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class TokenBucket:
    """Hand out at most ``rate`` permits per second, with a small burst.

    LINE limits each channel per endpoint with a token bucket; pacing the client with one of its own
    (slightly below LINE's rate) makes a 429 the exception instead of the feedback loop.

    :param rate: permits per second; ``None`` or ``0`` means unlimited.
    :param burst: bucket capacity; defaults to 1/20 s worth of permits (at least 1).
    """

    def __init__(self, rate: float | None, burst: float | None = None):
        self.rate = float(rate) if rate else 0.0
        self.capacity = float(burst) if burst else max(1.0, self.rate / 20)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, wanted: Callable[[], bool] | None = None) -> bool:
        """Wait until a permit is available and take it; return True once taken.

        :param wanted: asked before each wait and before taking the permit; once it answers False the
            call returns False at once, taking nothing. Senders queue here one per request they may
            still make: without it, each of them would wait its turn for a permit (1/rate each) after
            the last request had left, only to find nothing left to send.
        """
        if not self.rate:
            return wanted is None or wanted()
        async with self._lock:
            while True:
                if wanted is not None and not wanted():
                    return False
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                await asyncio.sleep((1 - self._tokens) / self.rate)


def channel_share(
    limit: float, *, safety: float = 0.97, concurrent_senders: int = 1, cap: float | None = None
) -> float:
    """Return one sender's rate: the channel's limit, less a safety margin, split among its senders.

    :param limit: LINE's limit for the endpoint on this channel (requests/s).
    :param concurrent_senders: chunk tasks of this channel allowed to send at once (its pool size).
    :param cap: the campaign's own cap on the send rate, if any.
    """
    rate = limit * safety / max(1, concurrent_senders)
    return min(rate, cap) if cap else rate
