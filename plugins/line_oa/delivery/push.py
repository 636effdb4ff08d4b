"""The push sender: one recipient per request, under the key derived from (campaign, run, recipient)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from line_oa.delivery.answers import accepted_id, sent_message
from line_oa.delivery.retries import CampaignStop
from line_oa.errors import LineApiError, LineTransportError
from line_oa.vocabulary import RESUMABLE_REASONS, Reason, Status

if TYPE_CHECKING:
    import asyncio

    from line_oa.delivery.client import AsyncLineClient, LineResponse
    from line_oa.delivery.engine import DeliveryEngine
    from line_oa.delivery.plan import Unit
    from line_oa.delivery.results import ChunkResult
    from line_oa.delivery_log.store import LedgerRow

# Push rows marked in one UPDATE at most (rows whose requests wait for the same commit).
MARK_GROUP_ROWS = 1000


class PushMarks:
    """Coalesce the marks of push rows about to be sent into one UPDATE per log transaction."""

    def __init__(self, engine: DeliveryEngine):
        self.engine = engine
        self._lock = threading.Lock()
        self._rows: list[LedgerRow] | None = None
        self._future: asyncio.Future | None = None

    def mark(self, row: LedgerRow) -> asyncio.Future:
        with self._lock:
            if self._rows is None or len(self._rows) >= MARK_GROUP_ROWS:
                self._rows = []
                self._future = self.engine._mark(self._apply, self._rows)
            self._rows.append(row)
            return self._future  # type: ignore[return-value]

    def _apply(self, rows: list[LedgerRow]) -> None:  # on the writer thread
        with self._lock:
            if self._rows is rows:
                self._rows = None  # later marks start a new group
        self.engine.ledger.mark_push(rows)


class PushSender:
    """Send push units: mark each row under its own key (marks of concurrent requests share a commit)."""

    kind = "push"

    def __init__(self, engine: DeliveryEngine):
        self.engine = engine
        self._marks = PushMarks(engine)

    async def mark(self, unit: Unit) -> None:
        """Mark the unit's row ``sending`` and wait for the commit: then its request may leave."""
        row = unit.rows[0]
        row.status, row.reason = Status.SENDING, None
        await self.engine._committed(self._marks.mark(row))

    def stop(self, unit: Unit, result: ChunkResult, reason: Reason) -> None:
        """Record a unit that is not sent in this attempt (its row keeps its key and history)."""
        for row in unit.rows:
            self.engine._fail(row, reason, result)

    async def send(self, client: AsyncLineClient, unit: Unit, result: ChunkResult) -> None:
        """Send the unit's one request with retries; record its outcome."""
        engine = self.engine
        row, counter = unit.rows[0], [0]
        messages = engine.messages_for(row)

        def send():
            return client.push(
                row.line_user_id,
                messages,
                row.retry_key,
                engine.notification_disabled,
                engine.aggregation_unit,
            )

        try:
            response = await engine.retrier.send(send, unit, result, counter)
        except (CampaignStop, LineApiError, LineTransportError) as err:
            row.attempts += counter[0]
            reason = engine._failure_reason(err, unit)
            if reason not in RESUMABLE_REASONS or not unit.maybe_accepted:
                row.dispatched_at = None  # LINE refused every attempt: it holds no request with this key
            engine._fail(row, reason, result, None if isinstance(err, CampaignStop) else err)
            return
        row.attempts += counter[0]
        self._succeed(row, response, result)

    def _succeed(self, row: LedgerRow, response: LineResponse, result: ChunkResult) -> None:
        engine = self.engine
        row.status, row.reason = Status.SENT, None
        row.http_status = response.status
        row.line_request_id = response.request_id
        row.accepted_request_id = accepted_id(response)
        row.line_message = sent_message(response)
        row.sent_at = engine.ledger.clock().isoformat()
        result.sent += 1
        engine._record(row)
