"""The multicast sender: up to 500 recipients per request, one persisted key per batch."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from line_oa.delivery.answers import TRANSIENT, accepted_id, bad_recipient_index, sent_message
from line_oa.delivery.keys import new_batch_key, push_retry_key
from line_oa.delivery.plan import Unit
from line_oa.delivery.retries import CampaignStop
from line_oa.errors import LineApiError, LineAuthError, LineQuotaExceededError, LineTransportError
from line_oa.vocabulary import Reason, Status

if TYPE_CHECKING:
    from line_oa.delivery.client import AsyncLineClient
    from line_oa.delivery.engine import DeliveryEngine
    from line_oa.delivery.results import ChunkResult
    from line_oa.delivery_log.store import LedgerRow


class MulticastSender:
    """Send multicast units: a batch keeps its key and exact recipients until LINE has answered for it."""

    kind = "multicast"

    def __init__(self, engine: DeliveryEngine):
        self.engine = engine

    async def mark(self, unit: Unit) -> None:
        """Mark the batch ``sending`` under its key (a new key for a new batch) and wait for the commit."""
        engine = self.engine
        first, last = unit.rows[0].line_user_id, unit.rows[-1].line_user_id
        if unit.resumed:
            future = engine._mark(engine.ledger.mark_batch_again, unit.key, first, last, len(unit.rows))
        else:
            unit.key = new_batch_key()
            future = engine._mark(
                engine.ledger.mark_new_batch, engine._chunk_index, first, last, unit.key, len(unit.rows)
            )
        await engine._committed(future)
        for row in unit.rows:
            row.status, row.reason, row.batch_id, row.retry_key = Status.SENDING, None, unit.key, unit.key

    def stop(self, unit: Unit, result: ChunkResult, reason: Reason) -> None:
        """Record a batch that is not sent in this attempt (a resumed batch keeps its key)."""
        if unit.resumed:
            self.settle(unit, 0, result, status=Status.FAILED, reason=reason)
            return
        for row in unit.rows:
            self.engine._fail(row, reason, result)

    async def send(self, client: AsyncLineClient, unit: Unit, result: ChunkResult) -> None:
        """Send one marked batch and settle it; isolate a recipient LINE names, or push each one."""
        engine = self.engine
        counter = [0]
        to = [row.line_user_id for row in unit.rows]

        def send():
            return client.multicast(
                to, engine.messages, unit.key, engine.notification_disabled, engine.aggregation_unit
            )

        try:
            response = await engine.retrier.send(send, unit, result, counter)
        except (CampaignStop, LineAuthError, LineQuotaExceededError, LineTransportError, *TRANSIENT) as err:
            reason = engine._failure_reason(err, unit)
            outcome: dict[str, Any] = {"status": Status.FAILED, "reason": reason}
            if isinstance(err, LineApiError):
                outcome.update(http_status=err.status, line_request_id=err.request_id)
            if not isinstance(err, CampaignStop):
                outcome["line_message"] = (err.line_message if isinstance(err, LineApiError) else str(err))[
                    :500
                ]
            if not unit.maybe_accepted:
                outcome["dispatched_at"] = None
            self.settle(unit, counter[0], result, **outcome)
            return
        except LineApiError as err:  # a 400: LINE refused this body, so it holds no request with this key
            await self._refused(client, unit, err, counter[0], result)
            return
        self.settle(
            unit,
            counter[0],
            result,
            status=Status.SENT,
            reason=None,
            http_status=response.status,
            line_request_id=response.request_id,
            accepted_request_id=accepted_id(response),
            line_message=sent_message(response),
            sent_at=engine.ledger.clock().isoformat(),
        )

    async def _refused(
        self, client: AsyncLineClient, unit: Unit, err: LineApiError, attempts: int, result: ChunkResult
    ) -> None:
        """Handle a 400 on a batch: fail the recipient LINE names and resend the rest, or push each one.

        Safe for a batch resent after a crash too: LINE answers the same body the same way (and checks
        the body before the key), so a 400 now means it refused every attempt of it.
        """
        engine = self.engine
        for row in unit.rows:
            row.attempts += attempts
        bad_index = bad_recipient_index(err)
        if bad_index is not None and bad_index < len(unit.rows):
            bad = unit.rows[bad_index]
            bad.dispatched_at = None
            engine._fail(bad, Reason.INVALID_RECIPIENT_ID, result, err)
            engine.flush()
            rest = unit.rows[:bad_index] + unit.rows[bad_index + 1 :]
            if rest:
                old, key = unit.key, new_batch_key()
                await engine._committed(
                    engine._mark(engine.ledger.rebatch, old, key, rest[0].line_user_id, rest[-1].line_user_id)
                )
                for row in rest:
                    row.batch_id = row.retry_key = key
                retry = Unit("multicast", rest, key)
                await engine._limiters["multicast"].acquire()
                await self.send(client, retry, result)
            return
        # LINE refused the whole batch without naming a recipient: push each one to learn who.
        for row in unit.rows:
            row.status, row.batch_id, row.dispatched_at = Status.PENDING, None, None
            row.retry_key = push_retry_key(
                engine.ledger.campaign_id, engine.ledger.run_id, row.line_user_id or ""
            )
        await engine._committed(engine._mark(engine.ledger.upsert, unit.rows))  # push keys, before any push

        async def push(row: LedgerRow) -> None:
            await engine._limiters["push"].acquire()
            await engine._deliver_unit(client, Unit("push", [row], row.retry_key), result)

        await asyncio.gather(*(push(row) for row in unit.rows))

    # -- multicast ------------------------------------------------------------------------------
    def settle(self, unit: Unit, attempts: int, result: ChunkResult, **outcome: Any) -> None:
        engine = self.engine
        if outcome["status"] == Status.SENT:
            result.sent += len(unit.rows)
        else:
            result.failed[outcome["reason"]] += len(unit.rows)
        engine._unsettled.append(engine._write(self._settle_or_upsert, unit, attempts, outcome))

    def _settle_or_upsert(self, unit: Unit, attempts: int, outcome: dict[str, Any]) -> None:
        """Write a batch's outcome with one UPDATE; row by row if the log does not hold it as expected.

        Runs on the writer thread; the batch's rows are not touched by the event loop any more.
        """
        batch = unit.rows
        first, last = batch[0].line_user_id, batch[-1].line_user_id
        settled = self.engine.ledger.settle_batch(unit.key, first, last, attempts=attempts, **outcome)
        if settled != len(batch):
            for row in batch:
                row.attempts += attempts
                for name, value in outcome.items():
                    setattr(row, name, value)
            self.engine.ledger.upsert(batch)
