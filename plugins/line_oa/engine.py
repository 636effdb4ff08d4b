"""The delivery engine: send one chunk of recipients at LINE's rate, once each, and log every outcome.

Exactly once: every recipient (push) or persisted batch (multicast) has a retry key fixed before the
first request; rows are marked ``sending`` with that key before anything leaves; a 2xx or a 409
"already accepted" both mean ``sent``; a re-executed chunk sends only rows that are not final, with the
same key and the same body, so LINE itself refuses a second delivery.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import queue
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from line_oa.errors import (
    LineApiError,
    LineAuthError,
    LineOAError,
    LineQuotaExceededError,
    LineRateLimitError,
    LineServerError,
    LineTransportError,
)
from line_oa.ledger import FAILED, SENDING, SENT, LedgerRow
from line_oa.ratelimit import TokenBucket

if TYPE_CHECKING:
    from collections.abc import Callable

    from line_oa.hooks import AsyncLineClient, LineResponse
    from line_oa.ledger import DeliveryLedger

RETRY_KEY_NAMESPACE = uuid.UUID("7d5e4c1a-2b8f-4e0a-9c3d-6f1b2a7e9d40")
MULTICAST_MAX_RECIPIENTS = 500
TRANSIENT = (LineServerError, LineRateLimitError, LineTransportError)
# How long before LINE's 24 h key memory ends we stop trusting a key: covers backoff and chunk time.
STALE_MARGIN = timedelta(hours=1)
FLUSH_EVERY_ROWS = 500
FLUSH_EVERY_SECONDS = 1.0
MARK_WINDOW = 1000
# New multicast batches marked `sending` beyond those being sent, so a request never waits on the log.
MULTICAST_MARK_AHEAD = 32
# Sent multicast batches whose outcome may wait to be written (marks go first): one second at LINE's
# limit. Beyond it no new batch is marked until the log catches up, so rows never stay `sending` long
# after LINE has answered.
MULTICAST_MAX_UNSETTLED = 200
# While a chunk is delivered the event loop keeps the GIL busy; the log writer thread, back from each
# SQLite call (which runs without the GIL), would wait up to Python's default 5 ms switch interval to
# continue, and the log, not LINE, would pace the sends (measured: 187 vs 199 multicasts/s at 200/s).
GIL_SWITCH_INTERVAL = 0.001


_NAMESPACE_BYTES = RETRY_KEY_NAMESPACE.bytes


def push_retry_key(campaign_id: str, run_id: str, line_user_id: str) -> str:
    """Return the push retry key of one recipient in one run: the same on every attempt and resume.

    It is ``str(uuid.uuid5(RETRY_KEY_NAMESPACE, "push|<campaign>|<run>|<user id>"))``, computed without
    building a ``UUID`` object (a third of the time; it runs once per registered recipient). Changing
    what it returns would make a resumed run resend under new keys: the unit tests pin it to ``uuid5``.
    """
    name = f"push|{campaign_id}|{run_id}|{line_user_id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class RetryPolicy:
    """The campaign's activation policy for transient errors."""

    max_attempts: int = 8
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


@dataclass
class ChunkResult:
    """What one chunk's delivery did; small enough for XCom."""

    chunk_index: int
    total: int = 0
    sent: int = 0
    already_final: int = 0
    failed: Counter = field(default_factory=Counter)
    requests: int = 0
    retries: int = 0
    duration_seconds: float = 0.0
    stopped_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        rate = self.sent / self.duration_seconds if self.duration_seconds else 0.0
        return {
            "chunk_index": self.chunk_index,
            "total": self.total,
            "sent": self.sent,
            "already_final": self.already_final,
            "failed": dict(self.failed),
            "requests": self.requests,
            "retries": self.retries,
            "duration_seconds": round(self.duration_seconds, 3),
            "recipients_per_second": round(rate, 1),
            "stopped_reason": self.stopped_reason,
        }


class _CampaignStop(Exception):
    """Raised inside a send when the campaign was stopped (quota, auth, or the task being killed)."""


def _classify_rejection(err: LineApiError) -> str:
    """Name the reason a 4xx rejected a send to one recipient."""
    message = err.line_message.lower()
    if "'to'" in message or "to[" in message:
        return "invalid_recipient_id"
    if "failed to send messages" in message:
        return "unknown_recipient"
    return "rejected_by_line"


class LedgerWriter:
    """Run ledger writes on one thread, committing a run of queued writes together.

    A write's future resolves only after the commit that includes it, so "marked ``sending``" is
    durable before the request leaves. Grouping commits keeps the log from pacing the sends.

    Marks (``urgent``) go first: a request waits for its mark, while an outcome only has to be
    written before the chunk ends (its row stays ``sending`` with its key until then, which a resume
    handles). Writes of one kind run in the order they were queued. Nothing depends on an outcome
    being written before a later mark: a mark touches only rows that have not been sent.
    """

    MAX_GROUP = 64
    # Outcomes per commit: few, so that a mark queued meanwhile waits for a short transaction only.
    MAX_NORMAL_IN_GROUP = 4
    _URGENT, _NORMAL, _CLOSE = 0, 1, 2

    def __init__(self, ledger: DeliveryLedger, loop: asyncio.AbstractEventLoop):
        self.ledger = ledger
        self.loop = loop
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="line-oa-ledger", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], Any], future: asyncio.Future, *, urgent: bool = False) -> None:
        self._queue.put((self._URGENT if urgent else self._NORMAL, next(self._order), write, future))

    def close(self) -> None:
        self._queue.put((self._CLOSE, next(self._order), None, None))
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get())[0] != self._CLOSE:
            group, normal = [item[2:]], int(item[0] == self._NORMAL)
            while len(group) < self.MAX_GROUP and normal < self.MAX_NORMAL_IN_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt[0] == self._CLOSE:
                    self._queue.put(nxt)  # stop after this group
                    break
                group.append(nxt[2:])
                normal += nxt[0] == self._NORMAL
            self._apply(group)

    def _apply(self, group: list[tuple[Callable[[], Any], asyncio.Future]]) -> None:
        try:
            outcomes = self._outcomes(group)
        except BaseException as err:  # never leave a coroutine waiting on a write that will not come
            outcomes = [(False, err)] * len(group)
        for (ok, value), (_, future) in zip(outcomes, group, strict=True):
            self.loop.call_soon_threadsafe(_settle_future, future, ok, value)

    def _outcomes(self, group: list[tuple[Callable[[], Any], asyncio.Future]]) -> list[tuple[bool, Any]]:
        try:
            with self.ledger.transaction():
                return [(True, write()) for write, _ in group]
        except Exception:  # one write failed: run each alone, so only that one reports the error
            outcomes = []
            for write, _ in group:
                try:
                    with self.ledger.transaction():
                        outcomes.append((True, write()))
                except Exception as err:  # handed to the awaiting coroutine
                    outcomes.append((False, err))
            return outcomes


class _ShortGilSwitches:
    """Lower Python's GIL switch interval while any chunk is delivered in this process; restore it after.

    Counted, so that deliveries running at once (threads) restore the interval only when the last ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._saved = sys.getswitchinterval()

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, GIL_SWITCH_INTERVAL))
            self._active += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                sys.setswitchinterval(self._saved)


_short_gil_switches = _ShortGilSwitches()


def _settle_future(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class DeliveryEngine:
    """Deliver one chunk of a campaign run through an ``AsyncLineClient`` into a ``DeliveryLedger``.

    :param messages: the LINE ``messages`` bundle (wire JSON, UTM tagging applied).
    :param rate: requests per second this sender may use (its share of the channel's limit).
    :param max_in_flight: concurrent requests; about 100 sustain 2,000/s at 50 ms round trip.
    :param progress: called about every ``progress_interval`` seconds with ``ChunkResult.to_dict()``.
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], AsyncLineClient],
        ledger: DeliveryLedger,
        messages: list[dict],
        policy: RetryPolicy,
        rate: float | None,
        notification_disabled: bool = False,
        max_in_flight: int = 128,
        progress: Callable[[dict], None] | None = None,
        progress_interval: float = 10.0,
        register_unsent: bool = False,
    ):
        self.client_factory = client_factory
        self.ledger = ledger
        self.messages = messages
        self.policy = policy
        self.rate = rate
        self.notification_disabled = notification_disabled
        self.max_in_flight = max_in_flight
        self.progress = progress
        self.progress_interval = progress_interval
        self.register_unsent = register_unsent  # rows are not in the log yet: add them as pending
        self._stop_reason: str | None = None
        self._pending_writes: list[LedgerRow] = []
        self._last_flush = time.monotonic()
        # Log writes run on one background thread (marks first, see LedgerWriter), so that the
        # database's latency overlaps the requests in flight instead of stalling the event loop.
        self._writer: LedgerWriter | None = None
        self._writes: list[asyncio.Future] = []
        self._unsettled: deque[asyncio.Future] = deque()

    def request_stop(self, reason: str = "stopped") -> None:
        """Stop taking new sends (thread-safe enough: a flag read between sends); in-flight ones finish."""
        self._stop_reason = self._stop_reason or reason

    # -- ledger helpers -------------------------------------------------------------------------
    def _write(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future:
        """Queue a ledger write (after earlier writes of its kind); return a future resolved once committed."""
        return self._queue_write(functools.partial(function, *args, **kwargs), urgent=False)

    def _mark(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Queue a write that marks rows ``sending`` (a request waits for it): ahead of other writes."""
        return self._queue_write(functools.partial(function, *args), urgent=True)

    def _queue_write(self, write: Callable[[], Any], *, urgent: bool) -> asyncio.Future:
        assert self._writer is not None, "ledger writes are only queued while delivering"
        future = asyncio.get_running_loop().create_future()
        self._writer.submit(write, future, urgent=urgent)
        self._writes.append(future)
        return future

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
            self._write(self.ledger.upsert, rows)
        self._last_flush = time.monotonic()

    async def _drain_writes(self) -> None:
        """Wait for every queued write; raise the first error (a lost write must fail the chunk)."""
        self.flush()
        writes, self._writes = self._writes, []
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    def _split_stale(self, rows: list[LedgerRow], result: ChunkResult) -> list[LedgerRow]:
        """Report rows whose retry key LINE may have forgotten as ``outcome_unknown`` instead of resending."""
        fresh = []
        for row in rows:
            # A `sending` row may have been accepted even with no attempt recorded (killed mid-request).
            maybe_accepted = row.status == SENDING or row.reason == "retries_exhausted"
            if maybe_accepted and self.ledger.is_stale(row, STALE_MARGIN):
                row.status, row.reason = FAILED, "outcome_unknown"
                result.failed["outcome_unknown"] += 1
                self._record(row)
            else:
                fresh.append(row)
        return fresh

    # -- entry points ---------------------------------------------------------------------------
    def deliver(self, rows: list[LedgerRow], *, mode: str, chunk_index: int) -> ChunkResult:
        """Send ``rows`` (the chunk's not-final rows) by ``push`` or ``multicast`` and log the outcomes."""
        return asyncio.run(self.deliver_async(rows, mode=mode, chunk_index=chunk_index))

    async def deliver_async(self, rows: list[LedgerRow], *, mode: str, chunk_index: int) -> ChunkResult:
        result = ChunkResult(chunk_index=chunk_index, total=len(rows))
        started = time.monotonic()
        with _short_gil_switches:
            self._writer = LedgerWriter(self.ledger, asyncio.get_running_loop())
            reporter = asyncio.create_task(self._report_progress(result, started)) if self.progress else None
            try:
                rows = self._split_stale(rows, result)
                async with self.client_factory() as client:
                    if mode == "multicast":
                        await self._multicast_all(client, rows, result)
                    else:
                        await self._push_all(client, rows, result)
            finally:
                if reporter:
                    reporter.cancel()
                try:
                    await self._drain_writes()
                finally:
                    self._writer.close()
                    self._writer = None
                    result.duration_seconds = time.monotonic() - started
                    result.stopped_reason = self._stop_reason
        return result

    async def _report_progress(self, result: ChunkResult, started: float) -> None:
        while True:
            await asyncio.sleep(self.progress_interval)
            result.duration_seconds = time.monotonic() - started
            self.progress(result.to_dict())  # type: ignore[misc]

    # -- push -----------------------------------------------------------------------------------
    async def _attempt(
        self, send: Callable, result: ChunkResult, counter: list[int], permit: list[bool] | None = None
    ) -> LineResponse:
        """Send once, after taking a permit from the rate limiter (or using ``permit``, one already taken)."""
        if self._stop_reason:
            raise _CampaignStop(self._stop_reason)
        if permit and permit[0]:
            permit[0] = False
        else:
            await self._limiter.acquire()
        counter[0] += 1
        result.requests += 1
        if counter[0] > 1:
            result.retries += 1
        return await send()

    async def _send_with_retries(
        self, send: Callable, result: ChunkResult, counter: list[int], permit: list[bool] | None = None
    ) -> LineResponse:
        """Send once; on a transient error, retry per the policy (tenacity) with the same key and body."""
        try:
            # the common case, without tenacity's overhead
            return await self._attempt(send, result, counter, permit)
        except TRANSIENT:
            if self.policy.max_attempts <= 1:
                raise
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts - 1),
            wait=wait_exponential_jitter(
                multiplier=self.policy.initial_backoff_seconds,
                max=self.policy.max_backoff_seconds,
                jitter=self.policy.initial_backoff_seconds,
            ),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        )
        await asyncio.sleep(self.policy.initial_backoff_seconds)
        async for attempt in retrying:
            with attempt:
                return await self._attempt(send, result, counter)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _push_all(self, client: AsyncLineClient, rows: list[LedgerRow], result: ChunkResult) -> None:
        """Push every row; each window of rows is marked ``sending`` (awaited) just before it is sent.

        Marking just ahead of the sends, not the whole chunk up front, keeps the log's ``sending``
        rows to those that may really have left, so a crash leaves few rows whose fate is unsure. The
        next window is marked on the writer thread while the current one is being sent.
        """
        self._limiter = TokenBucket(self.rate)
        ready: asyncio.Queue[LedgerRow | None] = asyncio.Queue(maxsize=MARK_WINDOW)
        workers = min(self.max_in_flight, max(1, len(rows)))

        async def feed() -> None:
            try:
                for start in range(0, len(rows), MARK_WINDOW):
                    window = rows[start : start + MARK_WINDOW]
                    to_mark = [row for row in window if row.status != SENDING]  # others keep their first time
                    for row in to_mark:
                        row.status, row.reason = SENDING, None
                    if to_mark and self._stop_reason is None:
                        await self._mark(self.ledger.upsert, to_mark)  # inserts rows the log lacks
                    if start == 0 and self.register_unsent:  # the rest, as pending, behind the first sends
                        self._write(self.ledger.add, rows[MARK_WINDOW:])
                    for row in window:
                        await ready.put(row)
            except BaseException:
                self.request_stop("log_write_failed")  # rows not marked must not be sent
                raise
            finally:
                for _ in range(workers + 1):  # release the workers (and the first read) in every case
                    await ready.put(None)

        async def worker() -> None:
            while (row := await ready.get()) is not None:
                if self._stop_reason:
                    self._fail(row, self._stop_reason, result)
                else:
                    await self._push_one(client, row, result)

        feeder = asyncio.create_task(feed())
        # One request first: a campaign-wide stop (token revoked, quota used up by another chunk)
        # then costs one request instead of a full window of in-flight ones.
        first = await ready.get()
        if first is not None:
            await self._push_one(client, first, result)
            await asyncio.gather(*(worker() for _ in range(workers)))
        await feeder

    async def _push_one(self, client: AsyncLineClient, row: LedgerRow, result: ChunkResult) -> None:
        counter = [0]

        def send():
            return client.push(row.line_user_id, self.messages, row.retry_key, self.notification_disabled)

        try:
            response = await self._send_with_retries(send, result, counter)
        except _CampaignStop as stop:
            row.attempts += counter[0]
            self._fail(row, str(stop), result)
            return
        except (LineAuthError, LineQuotaExceededError) as err:
            row.attempts += counter[0]
            reason = "auth_failed" if isinstance(err, LineAuthError) else "quota_exceeded"
            self.request_stop(reason)
            self._fail(row, reason, result, err)
            return
        except TRANSIENT as err:
            row.attempts += counter[0]
            self._fail(row, "retries_exhausted", result, err)
            return
        except LineApiError as err:
            row.attempts += counter[0]
            self._fail(row, _classify_rejection(err), result, err)
            return
        row.attempts += counter[0]
        self._succeed(row, response, result)

    def _succeed(self, row: LedgerRow, response: LineResponse, result: ChunkResult) -> None:
        row.status, row.reason = SENT, None
        row.http_status = response.status
        row.line_request_id = response.request_id
        row.accepted_request_id = response.accepted_request_id or response.request_id
        row.line_message = "retry key already accepted" if response.already_accepted else None
        row.sent_at = self.ledger.clock().isoformat()
        result.sent += 1
        self._record(row)

    def _fail(self, row: LedgerRow, reason: str, result: ChunkResult, err: Exception | None = None) -> None:
        row.status, row.reason = FAILED, reason
        if isinstance(err, LineApiError):
            row.http_status = err.status
            row.line_request_id = err.request_id
            row.line_message = err.line_message[:500]
        elif err is not None:
            row.line_message = str(err)[:500]
        result.failed[reason] += 1
        self._record(row)

    # -- multicast ------------------------------------------------------------------------------
    def _plan_batches(self, rows: list[LedgerRow]) -> list[list[LedgerRow]]:
        """Group rows into batches: resumed batches as they were, new ones of up to 500.

        Batches follow LINE user id order, so a new batch is a range of the chunk's unsent rows, marked
        ``sending`` with one UPDATE just before it is sent; a resumed batch is re-sent with the same
        body and key.
        """
        resumed: dict[str, list[LedgerRow]] = {}
        fresh: list[LedgerRow] = []
        for row in rows:
            if row.status == SENDING and row.batch_id:
                resumed.setdefault(row.batch_id, []).append(row)
            else:
                fresh.append(row)
        batches = [sorted(batch, key=lambda r: r.line_user_id or "") for batch in resumed.values()]
        fresh.sort(key=lambda r: r.line_user_id or "")
        batches += [
            fresh[i : i + MULTICAST_MAX_RECIPIENTS] for i in range(0, len(fresh), MULTICAST_MAX_RECIPIENTS)
        ]
        return batches

    def _mark_batch(self, rows: list[LedgerRow], chunk_index: int) -> asyncio.Future:
        """Give a new batch its key and queue marking its rows ``sending``; await the future before sending."""
        key = str(uuid.uuid4())
        for row in rows:
            row.status, row.reason, row.batch_id, row.retry_key = SENDING, None, key, key
        return self._mark(self._mark_or_register, chunk_index, rows, key)

    def _mark_or_register(self, chunk_index: int, rows: list[LedgerRow], key: str) -> None:
        """Mark a batch with one UPDATE (writer thread); write rows the log lacks one by one.

        Raising rolls the mark back (the writer's transaction): the batch is then never sent.
        """
        marked = self.ledger.mark_batch(chunk_index, rows[0].line_user_id, rows[-1].line_user_id, key)
        if marked > len(rows):  # cannot happen while chunks are deduplicated ranges; never send then
            raise LineOAError(
                f"batch {key}: {marked} rows marked for {len(rows)} recipients; delivery stopped"
            )
        if marked < len(rows):  # rows the log does not hold yet
            self.ledger.upsert(rows)

    async def _rebatch(self, rows: list[LedgerRow]) -> list[LedgerRow]:
        old, key = rows[0].batch_id, str(uuid.uuid4())
        for row in rows:
            row.batch_id = row.retry_key = key
        await self._write(self.ledger.rebatch, old, key, rows[0].line_user_id, rows[-1].line_user_id)
        return rows

    def _settle_batch(
        self, batch: list[LedgerRow], attempts: int, result: ChunkResult, **outcome: Any
    ) -> None:
        if outcome["status"] == SENT:
            result.sent += len(batch)
        else:
            result.failed[outcome["reason"]] += len(batch)
        self._unsettled.append(self._write(self._settle_or_upsert, batch, attempts, outcome))

    def _settle_or_upsert(self, batch: list[LedgerRow], attempts: int, outcome: dict[str, Any]) -> None:
        """Write a batch's outcome with one UPDATE; row by row if the log does not hold it as expected.

        Runs on the writer thread; the batch's rows are not touched by the event loop any more.
        """
        first, last = batch[0].line_user_id, batch[-1].line_user_id
        settled = self.ledger.settle_batch(batch[0].batch_id, first, last, attempts=attempts, **outcome)
        if settled != len(batch):
            for row in batch:
                row.attempts += attempts
                for name, value in outcome.items():
                    setattr(row, name, value)
            self.ledger.upsert(batch)

    async def _multicast_all(
        self, client: AsyncLineClient, rows: list[LedgerRow], result: ChunkResult
    ) -> None:
        """Multicast every batch; batches are marked ``sending`` up to 32 ahead of the requests.

        A feeder queues each new batch's mark on the writer thread and hands the batch, with the
        mark's future, to the senders, at most ``MULTICAST_MARK_AHEAD`` batches ahead of them; a
        sender waits for the commit before the request leaves. So the log's latency overlaps the
        requests in flight instead of adding to each one. A sender takes its permit from the rate
        limiter before it takes a batch: up to ``max_in_flight`` requests can be in flight (a long
        round trip to LINE), yet only those and the few queued ones are ever marked ``sending``
        without having left.
        """
        self._limiter = TokenBucket(self.rate)
        await self._drain_writes()  # outcomes just decided (stale rows) land before any range is marked
        if self.register_unsent:
            await self._write(self.ledger.add, rows)
        batches = self._plan_batches(rows)
        workers = min(self.max_in_flight, max(1, len(batches)))
        # Unbounded, so the end markers never wait; `ahead` bounds the marked batches waiting in it.
        ready: asyncio.Queue[tuple[list[LedgerRow], asyncio.Future | None] | None] = asyncio.Queue()
        ahead = asyncio.Semaphore(MULTICAST_MARK_AHEAD)
        claimed = [1]  # batches a sender has committed to take; the first is the probe request's
        log_errors: list[BaseException] = []

        async def feed() -> None:
            try:
                for batch in batches:
                    await ahead.acquire()
                    while len(self._unsettled) >= MULTICAST_MAX_UNSETTLED:  # let the log catch up
                        await asyncio.wait([self._unsettled.popleft()])  # its error: at the drain
                    marked = None
                    if batch and batch[0].status != SENDING and self._stop_reason is None:
                        marked = self._mark_batch(batch, result.chunk_index)
                    ready.put_nowait((batch, marked))
            finally:  # end markers: a sender waiting for a batch the feeder never handed out returns
                for _ in range(workers + 1):
                    ready.put_nowait(None)

        async def take() -> tuple[list[LedgerRow], asyncio.Future | None] | None:
            item = await ready.get()
            if item is not None:
                ahead.release()
            return item

        async def send(item: tuple[list[LedgerRow], asyncio.Future | None], permit: bool = False) -> None:
            batch, marked = item
            if marked is not None:
                try:
                    await marked
                except Exception as err:  # not marked: never sent; its rows are recorded as stopped
                    self.request_stop("log_write_failed")
                    log_errors.append(err)
            await self._multicast_batch(client, batch, result, [permit])

        async def worker() -> None:
            while claimed[0] < len(batches):
                claimed[0] += 1
                permit = self._stop_reason is None  # stopped: the rest are only recorded
                if permit:
                    await self._limiter.acquire()
                if (item := await take()) is None:
                    return
                await send(item, permit=permit)

        feeder = asyncio.create_task(feed())
        first = await take()  # one request first, as for push
        if first is not None:
            await send(first)
            await asyncio.gather(*(worker() for _ in range(workers)))
        await feeder
        if log_errors:
            raise log_errors[0]

    async def _multicast_batch(
        self,
        client: AsyncLineClient,
        batch: list[LedgerRow],
        result: ChunkResult,
        permit: list[bool] | None = None,
    ) -> None:
        """Send one batch (re-sending what is left after an isolated recipient) and settle it.

        :param permit: ``[True]`` when the caller already took the first request's rate-limit permit.
        """
        while batch:
            if self._stop_reason:
                if batch[0].status == SENDING:  # marked (or resumed): settle the batch as a whole
                    self._settle_batch(batch, 0, result, status=FAILED, reason=self._stop_reason)
                else:  # never marked: the rows are still pending or failed in the log
                    for row in batch:
                        self._fail(row, self._stop_reason, result)
                return
            counter = [0]
            key = batch[0].retry_key

            def send(batch=batch, key=key):
                to = [row.line_user_id for row in batch]
                return client.multicast(to, self.messages, key, self.notification_disabled)

            try:
                response = await self._send_with_retries(send, result, counter, permit)
            except LineApiError as err:
                batch = await self._multicast_failure(client, batch, err, counter[0], result)
                continue
            except (_CampaignStop, *TRANSIENT) as err:
                stop = isinstance(err, _CampaignStop)
                reason = str(err) if stop else "retries_exhausted"
                message = None if stop else str(err)[:500]
                self._settle_batch(
                    batch, counter[0], result, status=FAILED, reason=reason, line_message=message
                )
                return
            self._settle_batch(
                batch,
                counter[0],
                result,
                status=SENT,
                reason=None,
                http_status=response.status,
                line_request_id=response.request_id,
                accepted_request_id=response.accepted_request_id or response.request_id,
                line_message="retry key already accepted" if response.already_accepted else None,
                sent_at=self.ledger.clock().isoformat(),
            )
            return

    async def _multicast_failure(
        self, client, batch, err: LineApiError, attempts: int, result
    ) -> list[LedgerRow]:
        """Handle a rejected multicast; return the rows still to send (under a new key) or []."""
        failure = {
            "http_status": err.status,
            "line_request_id": err.request_id,
            "line_message": err.line_message[:500],
        }
        if isinstance(err, LineAuthError | LineQuotaExceededError):
            reason = "auth_failed" if isinstance(err, LineAuthError) else "quota_exceeded"
            self.request_stop(reason)
            self._settle_batch(batch, attempts, result, status=FAILED, reason=reason, **failure)
            return []
        bad_index = _bad_recipient_index(err)
        if bad_index is not None and bad_index < len(batch):
            bad = batch[bad_index]
            bad.attempts += attempts
            self._fail(bad, "invalid_recipient_id", result, err)
            self.flush()
            rest = batch[:bad_index] + batch[bad_index + 1 :]
            for row in rest:
                row.attempts += attempts
            return await self._rebatch(rest) if rest else []
        # LINE rejected the whole batch without naming a recipient: push each one to learn who.
        for row in batch:
            row.attempts += attempts
            row.batch_id = None
            row.retry_key = push_retry_key(
                self.ledger.campaign_id, self.ledger.run_id, row.line_user_id or ""
            )
        await self._write(self.ledger.upsert, batch)  # their push keys, before any push leaves
        await asyncio.gather(*(self._push_one(client, row, result) for row in batch))
        return []


def _bad_recipient_index(err: LineApiError) -> int | None:
    """Return i from LINE's "The property, to[i], ..." (in the message or a detail), if present."""
    import re

    texts = [err.line_message] + [
        str(d.get("property", "")) + " " + str(d.get("message", "")) for d in err.details
    ]
    for text in texts:
        match = re.search(r"to\[(\d+)\]", text)
        if match:
            return int(match.group(1))
    return None


def pending_rows(
    campaign_id: str,
    run_id: str,
    chunk_index: int,
    recipients: list[tuple[str, str]],
    *,
    is_test: bool = False,
) -> list[LedgerRow]:
    """Return the ledger rows that register a chunk's recipients as ``pending`` with their push keys."""
    return [
        LedgerRow(
            profile_id=profile_id,
            line_user_id=line_user_id,
            status="pending",
            chunk_index=chunk_index,
            retry_key=push_retry_key(campaign_id, run_id, line_user_id),
            is_test=is_test,
        )
        for profile_id, line_user_id in recipients
    ]


def resolve_mode(mode: str, recipients: int, *, is_test: bool = False) -> str:
    """Choose push or multicast: ``auto`` multicasts when one bundle goes to more than one recipient.

    Test sends always push, so each listed recipient gets its own request id in the log.
    """
    if is_test or mode == "push":
        return "push"
    if mode == "multicast":
        return "multicast"
    return "multicast" if recipients > 1 else "push"


def deliver_chunk(
    *,
    client_factory: Callable[[], AsyncLineClient],
    ledger: DeliveryLedger,
    chunk_index: int,
    recipients: list[tuple[str, str]],
    messages: list[dict],
    mode: str = "push",
    policy: RetryPolicy | None = None,
    rate: float | None = None,
    is_test: bool = False,
    on_engine: Callable[[DeliveryEngine], None] | None = None,
    **engine_options: Any,
) -> ChunkResult:
    """Register a chunk in the ledger, then send every row of it that is not final.

    Safe to call again for the same chunk (a retried or resumed task): registration leaves existing
    rows alone and only rows that are not final are sent, with their original keys.
    """
    logged = ledger.chunk_size_logged(chunk_index)
    if logged == 0:  # a chunk the log has never seen: the engine registers it while it sends
        rows = pending_rows(ledger.campaign_id, ledger.run_id, chunk_index, recipients, is_test=is_test)
        engine_options["register_unsent"] = True
    else:
        if logged < len(recipients):
            ledger.add(
                pending_rows(ledger.campaign_id, ledger.run_id, chunk_index, recipients, is_test=is_test)
            )
        rows = ledger.rows_to_send(chunk_index)
    engine = DeliveryEngine(
        client_factory=client_factory,
        ledger=ledger,
        messages=messages,
        policy=policy or RetryPolicy(),
        rate=rate,
        **engine_options,
    )
    if on_engine is not None:
        on_engine(engine)
    result = engine.deliver(
        rows, mode=resolve_mode(mode, len(rows), is_test=is_test), chunk_index=chunk_index
    )
    result.already_final = len(recipients) - len(rows)
    return result
