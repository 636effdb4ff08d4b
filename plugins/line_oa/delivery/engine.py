"""The delivery engine: send one chunk of recipients at LINE's rate, once each, and log every outcome.

Exactly once (docs/reliability.md has the whole protocol):

- A sender first *claims* its chunk (``DeliveryLog.claim_chunk``): every later write checks the claim
  in its own transaction, so a stale sender (a zombie task, a retry racing it) can neither mark rows
  nor overwrite them, and what it cannot mark it never sends.
- Each request's rows are marked ``sending`` under the request's retry key, committed, just before the
  request leaves (marks of concurrent requests share one commit). ``dispatched_at`` records when a key
  first went out: from then on LINE may hold it, and the rows keep that key and, for multicast, that
  exact batch, until LINE has answered for it.
- A 2xx or a 409 "already accepted" (with or without the accepted request id) means ``sent``. An answer
  that proves the request was refused (400, 401, 403, 429) clears ``dispatched_at`` when no earlier
  attempt could have been accepted; a lost answer, a timeout or a 5xx keep it.
- A re-run sends rows that are not final: never-dispatched ones as new requests, maybe-accepted ones
  again with the same key and body (LINE answers 409 if it had accepted them), or, when LINE's 24 h
  memory of their key has passed, not at all: they become ``outcome_unknown``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.delivery.answers import TRANSIENT, classify_rejection
from line_oa.delivery.multicast import MulticastSender
from line_oa.delivery.push import PushSender
from line_oa.delivery.ratelimit import TokenBucket
from line_oa.delivery.results import ChunkResult
from line_oa.delivery.retries import CampaignStop, Retrier
from line_oa.delivery.writer import LogWriter, short_gil_switches
from line_oa.delivery_log.store import ChunkClaimLost
from line_oa.errors import LineApiError, LineAuthError, LineOAError, LineQuotaExceededError
from line_oa.vocabulary import Reason, Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from line_oa.delivery.client import AsyncLineClient
    from line_oa.delivery.plan import DeliveryPlan, Unit
    from line_oa.delivery.results import RetryPolicy
    from line_oa.delivery_log.store import DeliveryLog, LedgerRow

FLUSH_EVERY_ROWS = 500
FLUSH_EVERY_SECONDS = 1.0
MULTICAST_MAX_UNSETTLED = 32
PUSH_MAX_UNSETTLED_WRITES = 4


class LogStalled(LineOAError):
    """The delivery log did not commit a write in time: the chunk fails (resumable) instead of hanging."""


class DeliveryEngine:
    """Deliver one chunk of a campaign run through an ``AsyncLineClient`` into a ``DeliveryLog``.

    :param messages: the LINE ``messages`` bundle (wire JSON, UTM tagging applied).
    :param rates: requests per second this sender may use per kind (``{"push": .., "multicast": ..}``,
        its share of the channel's limits); ``rate`` sets both.
    :param aggregation_unit: LINE's ``customAggregationUnits`` name for every request (None: none).
    :param max_in_flight: concurrent requests; about 100 sustain 2,000/s at 50 ms round trip.
    :param progress: called about every ``progress_interval`` seconds with ``ChunkResult.to_dict()``.
    :param personalize: returns one row's messages (a personalized bundle, sent by push only).
    :param on_request: called before each request leaves with the number of requests so far (tests
        use it to stop or kill the sender at a chosen point).
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], AsyncLineClient],
        ledger: DeliveryLog,
        messages: list[dict],
        policy: RetryPolicy,
        rate: float | None = None,
        rates: dict[str, float | None] | None = None,
        notification_disabled: bool = False,
        aggregation_unit: str | None = None,
        max_in_flight: int = 128,
        progress: Callable[[dict], None] | None = None,
        progress_interval: float = 10.0,
        log_timeout: float | None = None,
        on_request: Callable[[int], None] | None = None,
        personalize: Callable[[LedgerRow], list[dict]] | None = None,
    ):
        self.client_factory = client_factory
        self.ledger = ledger
        self.messages = messages
        self.policy = policy
        self.rates = {"push": rate, "multicast": rate, **(rates or {})}
        self.notification_disabled = notification_disabled
        self.aggregation_unit = aggregation_unit
        self.max_in_flight = max_in_flight
        self.progress = progress
        self.progress_interval = progress_interval
        # A log write that has not committed after this long fails the chunk (resumable), never hangs it.
        self.log_timeout = log_timeout if log_timeout is not None else settings.log_write_timeout()
        self.on_request = on_request
        # A personalized bundle: each push row's own messages (the same values give the same body, so a
        # retried key carries the body of its first attempt). Such a chunk is always sent by push.
        self.personalize = personalize
        self._stop_reason: Reason | None = None
        self._pending_writes: list[LedgerRow] = []
        self._last_flush = time.monotonic()
        # Log writes run on one background thread (marks first, see LogWriter), so that the
        # database's latency overlaps the requests in flight instead of stalling the event loop.
        self._writer: LogWriter | None = None
        self._writes: list[asyncio.Future] = []
        self._unsettled: deque[asyncio.Future] = deque()  # multicast batch outcomes not yet committed
        self._unsettled_push: deque[asyncio.Future] = deque()  # push outcome writes not yet committed
        self._limiters: dict[str, TokenBucket] = {}
        self.senders = {sender.kind: sender for sender in (PushSender(self), MulticastSender(self))}
        self.retrier = Retrier(self)
        self._errors: list[BaseException] = []
        self._killed = False
        self._stalled = False
        self._main: asyncio.Task | None = None
        self._client: AsyncLineClient | None = None
        self._chunk_index = 0

    def messages_for(self, row: LedgerRow) -> list[dict]:
        """Return the messages a push to ``row`` carries."""
        return self.messages if self.personalize is None else self.personalize(row)

    def request_stop(self, reason: Reason = Reason.STOPPED) -> None:
        """Stop taking new sends (a flag read between sends); in-flight ones finish and are logged."""
        self._stop_reason = self._stop_reason or Reason(reason)  # ValueError for a word not in Reason

    def kill(self) -> None:
        """Die like a SIGKILLed process: nothing more is written or sent (call on the engine's loop)."""
        self._killed = True
        self.request_stop(Reason.KILLED)
        if self._writer is not None:
            self._writer.abandon()
        if self._main is not None:
            self._main.cancel()

    # -- delivery-log helpers---------------------------------------------------------------------
    def _write(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future:
        """Queue a log write (after earlier writes of its kind); return a future resolved once committed."""
        return self._queue_write(functools.partial(function, *args, **kwargs), urgent=False)

    def _mark(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Queue a write that marks rows ``sending`` (a request waits for it): ahead of other writes."""
        return self._queue_write(functools.partial(function, *args), urgent=True)

    def _queue_write(self, write: Callable[[], Any], *, urgent: bool) -> asyncio.Future:
        assert self._writer is not None, "log writes are only queued while delivering"
        future = asyncio.get_running_loop().create_future()
        self._writer.submit(write, future, urgent=urgent)
        self._writes.append(future)
        return future

    async def _committed(self, future: asyncio.Future) -> Any:
        """Wait for a queued write; a log that does not answer in ``log_timeout`` fails the chunk."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.log_timeout)
        except TimeoutError:
            self._stalled = True
            self.request_stop(Reason.LOG_STALLED)
            raise LogStalled(
                f"the delivery log did not commit a write in {self.log_timeout:.0f} s; the chunk stops "
                "here and clearing the task resumes it"
            ) from None

    def _record(self, row: LedgerRow) -> None:
        self._pending_writes.append(row)
        if (
            len(self._pending_writes) >= FLUSH_EVERY_ROWS
            or time.monotonic() - self._last_flush > FLUSH_EVERY_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Queue the outcomes gathered so far as one batched UPSERT (written in order, committed)."""
        if self._pending_writes:
            rows, self._pending_writes = self._pending_writes, []
            self._unsettled_push.append(self._write(self.ledger.upsert, rows))
        self._last_flush = time.monotonic()

    async def _drain_writes(self) -> None:
        """Wait for every queued write; raise the first error (a lost write must fail the chunk)."""
        self.flush()
        writes, self._writes = self._writes, []
        outcomes = await self._committed(asyncio.gather(*writes, return_exceptions=True))
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    # -- entry points ---------------------------------------------------------------------------
    def deliver(self, plan: DeliveryPlan, *, chunk_index: int) -> ChunkResult:
        """Send a chunk's planned requests and log the outcomes."""
        return asyncio.run(self.deliver_async(plan, chunk_index=chunk_index))

    async def deliver_async(self, plan: DeliveryPlan, *, chunk_index: int) -> ChunkResult:
        result = ChunkResult(chunk_index=chunk_index, total=plan.rows, mode=plan.mode)
        started = time.monotonic()
        self._main = asyncio.current_task()
        self._chunk_index = chunk_index
        with short_gil_switches:
            self._writer = LogWriter(self.ledger, asyncio.get_running_loop())
            reporter = asyncio.create_task(self._report_progress(result, started)) if self.progress else None
            try:
                for row in plan.outcome_unknown:
                    self._fail(row, Reason.OUTCOME_UNKNOWN, result)
                await self._drain_writes()  # decided outcomes land before anything is marked
                async with self.client_factory() as client:
                    self._client = client
                    await self._send_all(client, plan.units, result)
                if self._errors:
                    raise self._errors[0]
            finally:
                if reporter:
                    reporter.cancel()
                await self._finish(result, started)
        return result

    async def _finish(self, result: ChunkResult, started: float) -> None:
        try:
            if not (self._killed or self._stalled):
                await self._drain_writes()
        finally:
            writer, self._writer = self._writer, None
            assert writer is not None
            if self._killed or self._stalled:
                writer.abandon()
                self.ledger.abandoned = self._stalled  # its connection may still be in use
            else:
                writer.close()
            result.duration_seconds = time.monotonic() - started
            result.stopped_reason = self._stop_reason

    async def _report_progress(self, result: ChunkResult, started: float) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            result.duration_seconds = time.monotonic() - started
            self.progress(result.to_dict())  # type: ignore[misc]

    # -- scheduling ------------------------------------------------------------------------------
    async def _send_all(self, client: AsyncLineClient, units: list[Unit], result: ChunkResult) -> None:
        """Send every unit: one request first (a campaign-wide stop then costs one), then many at once.

        A worker takes its rate-limit permit before it takes a unit, so a unit is marked only when its
        request can leave right away; once no unit is left, the workers still queued for a permit
        leave without one (they would otherwise wait 1/rate each: 0.4 s for a 50,000-recipient
        multicast chunk, about as long as its 100 requests at 200/s).
        """
        self._limiters = {kind: TokenBucket(rate) for kind, rate in self.rates.items()}
        todo = deque(units)
        if not todo:
            return
        await self._limiters[todo[0].kind].acquire()
        await self._deliver_unit(client, todo.popleft(), result)

        async def worker() -> None:
            while todo:
                if self._stop_reason is None:
                    await self._limiters[todo[0].kind].acquire(wanted=lambda: bool(todo))
                if not todo:
                    return
                unit = todo.popleft()
                await self._let_the_log_catch_up()
                await self._deliver_unit(client, unit, result)

        await asyncio.gather(*(worker() for _ in range(min(self.max_in_flight, max(1, len(todo))))))

    async def _let_the_log_catch_up(self) -> None:
        """Wait while too many answered requests wait for their outcome to be written (bounds the rows
        left ``sending`` by a crash: see docs/reliability.md, "The at-risk bound")."""
        for unsettled, limit in (
            (self._unsettled, MULTICAST_MAX_UNSETTLED),
            (self._unsettled_push, PUSH_MAX_UNSETTLED_WRITES),
        ):
            while len(unsettled) >= limit:
                await asyncio.wait([unsettled.popleft()])  # its error: at the drain

    async def _deliver_unit(self, client: AsyncLineClient, unit: Unit, result: ChunkResult) -> None:
        """Mark a unit ``sending`` (committed), send it with retries, and record its outcome."""
        sender = self.senders[unit.kind]
        if self._stop_reason:
            self._stop_unit(unit, result)
            return
        try:
            await sender.mark(unit)
        except ChunkClaimLost as err:  # another sender holds the chunk: it sends these rows, not us
            self.request_stop(Reason.CLAIM_LOST)
            self._errors.append(err)
            result.failed[Reason.CLAIM_LOST] += len(unit.rows)
            return
        except Exception as err:  # not marked: never sent; its rows stay as the log has them
            self.request_stop(Reason.LOG_STALLED if isinstance(err, LogStalled) else Reason.LOG_WRITE_FAILED)
            self._errors.append(err)
            result.failed[self._stop_reason or Reason.LOG_WRITE_FAILED] += len(unit.rows)
            return
        if unit.resumed:
            result.resent += len(unit.rows)
        await sender.send(client, unit, result)

    def _stop_unit(self, unit: Unit, result: ChunkResult) -> None:
        """Record a unit that will not be sent in this attempt (its rows keep their key and history)."""
        reason = self._stop_reason or Reason.STOPPED
        if self._killed or reason in (Reason.CLAIM_LOST, Reason.LOG_STALLED):
            result.failed[reason] += len(unit.rows)  # nothing may be written: the log keeps its rows
            return
        self.senders[unit.kind].stop(unit, result, reason)

    def _failure_reason(self, err: Exception, unit: Unit) -> Reason:
        """Name a failed unit's reason; stop the campaign for auth and (real) quota failures."""
        if isinstance(err, CampaignStop):
            return err.reason
        if isinstance(err, LineAuthError):
            self.request_stop(Reason.AUTH_FAILED)
            return Reason.AUTH_FAILED
        if isinstance(err, LineQuotaExceededError):
            self.request_stop(Reason.QUOTA_EXCEEDED)
            return Reason.QUOTA_EXCEEDED
        if isinstance(err, TRANSIENT):
            return Reason.RETRIES_EXHAUSTED
        return classify_rejection(err)  # type: ignore[arg-type]

    def _fail(
        self, row: LedgerRow, reason: Reason, result: ChunkResult, err: Exception | None = None
    ) -> None:
        row.status, row.reason = Status.FAILED, reason
        if isinstance(err, LineApiError):
            row.http_status = err.status
            row.line_request_id = err.request_id
            row.line_message = err.line_message[:500]
        elif err is not None:
            row.line_message = str(err)[:500]
        result.failed[reason] += 1
        self._record(row)
