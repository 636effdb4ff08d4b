"""Send one request with the campaign's retry policy: same key and body on every attempt."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from line_oa.delivery.answers import MAYBE_ACCEPTED, TRANSIENT
from line_oa.errors import LineApiError, LineQuotaExceededError, LineTransportError

if TYPE_CHECKING:
    from collections.abc import Callable

    from line_oa.delivery.client import LineResponse
    from line_oa.delivery.engine import DeliveryEngine
    from line_oa.delivery.plan import Unit
    from line_oa.delivery.results import ChunkResult


class CampaignStop(Exception):
    """Raised inside a send when the campaign was stopped (quota, auth, or the task being killed)."""

    def __init__(self, reason: Any):
        super().__init__(reason)
        self.reason = reason


class Retrier:
    """Send with retries: transient errors per the policy, temporary monthly limits waited out."""

    def __init__(self, engine: DeliveryEngine):
        self.engine = engine

    # -- sending ---------------------------------------------------------------------------------
    async def attempt(self, send: Callable, unit: Unit, result: ChunkResult, counter: list[int]) -> Any:
        """Send once (the first attempt's permit is already taken; a retry takes its own)."""
        engine = self.engine
        if engine._stop_reason:
            raise CampaignStop(engine._stop_reason)
        if counter[0] > 0:
            await engine._limiters[unit.kind].acquire()
            if engine._stop_reason:
                raise CampaignStop(engine._stop_reason)
        counter[0] += 1
        result.requests += 1
        if counter[0] > 1:
            result.retries += 1
        if engine.on_request is not None:
            engine.on_request(result.requests)
            if engine._stop_reason:
                raise CampaignStop(engine._stop_reason)
        try:
            return await send()
        except MAYBE_ACCEPTED:
            unit.maybe_accepted = True
            raise
        except asyncio.CancelledError:
            unit.maybe_accepted = True  # killed mid-request
            raise

    async def send(self, send: Callable, unit: Unit, result: ChunkResult, counter: list[int]) -> LineResponse:
        """Send; on a transient error, retry per the policy (tenacity) with the same key and body.

        A monthly-limit 429 while the quota still covers what is left to send is LINE's reservation
        for another delivery in progress: it is waited out with the same key (``_quota_is_temporary``).
        """
        engine = self.engine
        quota_waits = 0
        while True:
            try:
                return await self._send_transient(send, unit, result, counter)
            except LineQuotaExceededError:
                quota_waits += 1
                if quota_waits >= engine.policy.max_attempts or not await self._quota_is_temporary():
                    raise
                await asyncio.sleep(
                    min(
                        engine.policy.max_backoff_seconds,
                        engine.policy.initial_backoff_seconds * 2**quota_waits,
                    )
                )

    async def _send_transient(
        self, send: Callable, unit: Unit, result: ChunkResult, counter: list[int]
    ) -> LineResponse:
        engine = self.engine
        try:
            # the common case, without tenacity's overhead
            return await self.attempt(send, unit, result, counter)
        except TRANSIENT:
            if engine.policy.max_attempts <= 1:
                raise
        retrying = AsyncRetrying(
            stop=stop_after_attempt(engine.policy.max_attempts - 1),
            wait=wait_exponential_jitter(
                multiplier=engine.policy.initial_backoff_seconds,
                max=engine.policy.max_backoff_seconds,
                jitter=engine.policy.initial_backoff_seconds,
            ),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        )
        await asyncio.sleep(engine.policy.initial_backoff_seconds)
        async for attempt in retrying:
            with attempt:
                return await self.attempt(send, unit, result, counter)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _quota_is_temporary(self) -> bool:
        """Tell a temporary monthly-limit 429 (quota reserved by another delivery) from a real one.

        Compares the quota LINE reports as remaining with what this run still has to send.
        """
        engine = self.engine
        client = engine._client
        if client is None:
            return False
        try:
            quota = await client.get_json("/v2/bot/message/quota")
            used = int((await client.get_json("/v2/bot/message/quota/consumption")).get("totalUsage", 0))
            unsent = await engine._committed(engine._write(engine.ledger.unsent_count))
        except (LineApiError, LineTransportError):
            return False
        if quota.get("type") == "none":
            return True
        return int(quota.get("value", 0)) - used >= unsent
