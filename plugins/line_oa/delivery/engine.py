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
import hashlib
import itertools
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from line_oa import settings
from line_oa.delivery.ratelimit import TokenBucket
from line_oa.delivery_log.store import (
    FAILED,
    PENDING,
    RESUMABLE_REASONS,
    SENDING,
    SENT,
    ChunkClaimLost,
    LedgerRow,
)
from line_oa.errors import (
    LineApiError,
    LineAuthError,
    LineOAError,
    LineQuotaExceededError,
    LineRateLimitError,
    LineServerError,
    LineTransportError,
)
from line_oa.vocabulary import Reason

if TYPE_CHECKING:
    from collections.abc import Callable

    from line_oa.delivery.client import AsyncLineClient, LineResponse
    from line_oa.delivery_log.store import DeliveryLog

RETRY_KEY_NAMESPACE = uuid.UUID("7d5e4c1a-2b8f-4e0a-9c3d-6f1b2a7e9d40")
MULTICAST_MAX_RECIPIENTS = 500
TRANSIENT = (LineServerError, LineRateLimitError, LineTransportError)
# Answers after which LINE may have accepted the request although we did not learn it.
MAYBE_ACCEPTED = (LineServerError, LineTransportError)
# How long before LINE's 24 h key memory ends we stop trusting a key: covers backoff and chunk time.
STALE_MARGIN = timedelta(hours=1)
FLUSH_EVERY_ROWS = 500
FLUSH_EVERY_SECONDS = 1.0
# Push rows marked in one UPDATE at most (rows whose requests wait for the same commit).
MARK_GROUP_ROWS = 1000
# Sent multicast batches whose outcome may wait to be written (marks go first). Beyond it no new batch
# is marked until the log catches up: after a crash, at most this many sent batches stay `sending`.
MULTICAST_MAX_UNSETTLED = 32
# Push outcome writes (each up to FLUSH_EVERY_ROWS rows) that may wait; beyond them no new row is marked.
PUSH_MAX_UNSETTLED_WRITES = 4
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
    stopped_reason: Reason | None = None
    mode: str = "push"  # how never-sent rows were sent (decided once, from the rows to send)
    resent: int = 0  # rows that may have reached LINE before, sent again under their first key

    def to_dict(self) -> dict[str, Any]:
        rate = self.sent / self.duration_seconds if self.duration_seconds else 0.0
        return {
            "chunk_index": self.chunk_index,
            "total": self.total,
            "sent": self.sent,
            "already_final": self.already_final,
            "failed": {str(reason): count for reason, count in self.failed.items()},
            "requests": self.requests,
            "retries": self.retries,
            "duration_seconds": round(self.duration_seconds, 3),
            "recipients_per_second": round(rate, 1),
            "stopped_reason": None if self.stopped_reason is None else str(self.stopped_reason),
            "mode": self.mode,
            "resent": self.resent,
        }


class _CampaignStop(Exception):
    """Raised inside a send when the campaign was stopped (quota, auth, or the task being killed)."""

    def __init__(self, reason: Reason):
        super().__init__(reason)
        self.reason = reason


def _classify_rejection(err: LineApiError) -> Reason:
    """Name the reason a 4xx rejected a send to one recipient."""
    message = err.line_message.lower()
    if "'to'" in message or "to[" in message:
        return Reason.INVALID_RECIPIENT_ID
    if "failed to send messages" in message:
        return Reason.UNKNOWN_RECIPIENT
    return Reason.REJECTED_BY_LINE


class LogWriter:
    """Run delivery-log writes on one thread, committing a run of queued writes together.

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

    def __init__(self, ledger: DeliveryLog, loop: asyncio.AbstractEventLoop):
        self.ledger = ledger
        self.loop = loop
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="line-oa-log-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], Any], future: asyncio.Future, *, urgent: bool = False) -> None:
        self._queue.put((self._URGENT if urgent else self._NORMAL, next(self._order), write, future))

    def close(self) -> None:
        self._queue.put((self._CLOSE, next(self._order), None, None))
        self._thread.join()

    def abandon(self) -> None:
        """Stop applying writes (a killed process, or a log that stopped answering); do not wait."""
        self._dead = True
        self._queue.put((self._CLOSE, next(self._order), None, None))

    _dead = False

    def _run(self) -> None:
        while (item := self._queue.get())[0] != self._CLOSE and not self._dead:
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
        if self._dead:
            return
        try:
            outcomes = self._outcomes(group)
        except BaseException as err:  # never leave a coroutine waiting on a write that will not come
            outcomes = [(False, err)] * len(group)
        for (ok, value), (_, future) in zip(outcomes, group, strict=True):
            try:
                self.loop.call_soon_threadsafe(_settle_future, future, ok, value)
            except RuntimeError:  # the loop is closed: the delivery was abandoned
                return

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


class LogStalled(LineOAError):
    """The delivery log did not commit a write in time: the chunk fails (resumable) instead of hanging."""


@dataclass(eq=False)
class Unit:
    """One request's worth of rows: a push to one recipient, or a multicast batch of up to 500.

    :param resumed: its rows may have reached LINE in an earlier attempt of the chunk: they are sent
        again with the same key (and, for a batch, the same recipients in the same order).
    """

    kind: str
    rows: list[LedgerRow]
    key: str | None = None
    resumed: bool = False
    maybe_accepted: bool = False  # an attempt may have been accepted without our learning it

    def __post_init__(self) -> None:
        self.maybe_accepted = self.maybe_accepted or self.resumed


@dataclass
class DeliveryPlan:
    """What a chunk's delivery will do, decided once from the rows actually to be sent."""

    mode: str
    units: list[Unit]
    outcome_unknown: list[LedgerRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(unit.rows) for unit in self.units) + len(self.outcome_unknown)


def may_have_been_accepted(row: LedgerRow) -> bool:
    """Tell whether LINE may hold a request carrying this row's current key."""
    if row.status == SENDING:
        return True
    return row.status == FAILED and row.reason in RESUMABLE_REASONS and row.dispatched_at is not None


def plan_delivery(
    rows: list[LedgerRow], *, mode: str, is_test: bool, is_stale: Callable[[LedgerRow], bool]
) -> DeliveryPlan:
    """Group a chunk's not-final rows into requests; decide push or multicast for the never-sent ones.

    Rows that may have reached LINE keep their request: a batch is resent whole under its key, a push
    under its key; past LINE's 24 h key memory they are not resent but reported ``outcome_unknown``.
    """
    resumed_batches: dict[str, list[LedgerRow]] = {}
    units: list[Unit] = []
    unknown: list[LedgerRow] = []
    fresh: list[LedgerRow] = []
    for row in rows:
        if not may_have_been_accepted(row):
            row.batch_id = None  # a batch that never left can be regrouped
            fresh.append(row)
        elif is_stale(row):
            unknown.append(row)
        elif row.batch_id:
            resumed_batches.setdefault(row.batch_id, []).append(row)
        else:
            units.append(Unit("push", [row], row.retry_key, resumed=True))
    for key, batch in resumed_batches.items():
        units.append(Unit("multicast", sorted(batch, key=_by_user), key, resumed=True))
    chosen = resolve_mode(mode, len(fresh), is_test=is_test)
    if chosen == "multicast":
        fresh.sort(key=_by_user)
        for start in range(0, len(fresh), MULTICAST_MAX_RECIPIENTS):
            units.append(Unit("multicast", fresh[start : start + MULTICAST_MAX_RECIPIENTS]))
    else:
        units.extend(Unit("push", [row], row.retry_key) for row in fresh)
    return DeliveryPlan(chosen, units, unknown)


def _by_user(row: LedgerRow) -> str:
    return row.line_user_id or ""


class _PushMarks:
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


class DeliveryEngine:
    """Deliver one chunk of a campaign run through an ``AsyncLineClient`` into a ``DeliveryLog``.

    :param messages: the LINE ``messages`` bundle (wire JSON, UTM tagging applied).
    :param rates: requests per second this sender may use per kind (``{"push": .., "multicast": ..}``,
        its share of the channel's limits); ``rate`` sets both.
    :param max_in_flight: concurrent requests; about 100 sustain 2,000/s at 50 ms round trip.
    :param progress: called about every ``progress_interval`` seconds with ``ChunkResult.to_dict()``.
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
        max_in_flight: int = 128,
        progress: Callable[[dict], None] | None = None,
        progress_interval: float = 10.0,
        log_timeout: float | None = None,
        on_request: Callable[[int], None] | None = None,
    ):
        self.client_factory = client_factory
        self.ledger = ledger
        self.messages = messages
        self.policy = policy
        self.rates = {"push": rate, "multicast": rate, **(rates or {})}
        self.notification_disabled = notification_disabled
        self.max_in_flight = max_in_flight
        self.progress = progress
        self.progress_interval = progress_interval
        # A log write that has not committed after this long fails the chunk (resumable), never hangs it.
        self.log_timeout = log_timeout if log_timeout is not None else settings.log_write_timeout()
        self.on_request = on_request
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
        self._push_marks = _PushMarks(self)
        self._errors: list[BaseException] = []
        self._killed = False
        self._stalled = False
        self._main: asyncio.Task | None = None
        self._client: AsyncLineClient | None = None
        self._chunk_index = 0

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
        with _short_gil_switches:
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
        request can leave right away.
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
                    await self._limiters[todo[0].kind].acquire()
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
        if self._stop_reason:
            self._stop_unit(unit, result)
            return
        try:
            await self._mark_unit(unit)
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
        if unit.kind == "push":
            await self._push(client, unit, result)
        else:
            await self._multicast(client, unit, result)

    async def _mark_unit(self, unit: Unit) -> None:
        if unit.kind == "push":
            row = unit.rows[0]
            row.status, row.reason = SENDING, None
            await self._committed(self._push_marks.mark(row))
            return
        first, last = unit.rows[0].line_user_id, unit.rows[-1].line_user_id
        if unit.resumed:
            future = self._mark(self.ledger.mark_batch_again, unit.key, first, last, len(unit.rows))
        else:
            unit.key = str(uuid.uuid4())
            future = self._mark(
                self.ledger.mark_new_batch, self._chunk_index, first, last, unit.key, len(unit.rows)
            )
        await self._committed(future)
        for row in unit.rows:
            row.status, row.reason, row.batch_id, row.retry_key = SENDING, None, unit.key, unit.key

    def _stop_unit(self, unit: Unit, result: ChunkResult) -> None:
        """Record a unit that will not be sent in this attempt (its rows keep their key and history)."""
        reason = self._stop_reason or Reason.STOPPED
        if self._killed or reason in (Reason.CLAIM_LOST, Reason.LOG_STALLED):
            result.failed[reason] += len(unit.rows)  # nothing may be written: the log keeps its rows
            return
        if unit.kind == "multicast" and unit.resumed:
            self._settle_batch(unit, 0, result, status=FAILED, reason=reason)
            return
        for row in unit.rows:
            self._fail(row, reason, result)

    # -- sending ---------------------------------------------------------------------------------
    async def _attempt(self, send: Callable, unit: Unit, result: ChunkResult, counter: list[int]) -> Any:
        """Send once (the first attempt's permit is already taken; a retry takes its own)."""
        if self._stop_reason:
            raise _CampaignStop(self._stop_reason)
        if counter[0] > 0:
            await self._limiters[unit.kind].acquire()
            if self._stop_reason:
                raise _CampaignStop(self._stop_reason)
        counter[0] += 1
        result.requests += 1
        if counter[0] > 1:
            result.retries += 1
        if self.on_request is not None:
            self.on_request(result.requests)
            if self._stop_reason:
                raise _CampaignStop(self._stop_reason)
        try:
            return await send()
        except MAYBE_ACCEPTED:
            unit.maybe_accepted = True
            raise
        except asyncio.CancelledError:
            unit.maybe_accepted = True  # killed mid-request
            raise

    async def _send_with_retries(
        self, send: Callable, unit: Unit, result: ChunkResult, counter: list[int]
    ) -> LineResponse:
        """Send; on a transient error, retry per the policy (tenacity) with the same key and body.

        A monthly-limit 429 while the quota still covers what is left to send is LINE's reservation
        for another delivery in progress: it is waited out with the same key (``_quota_is_temporary``).
        """
        quota_waits = 0
        while True:
            try:
                return await self._send_with_transient_retries(send, unit, result, counter)
            except LineQuotaExceededError:
                quota_waits += 1
                if quota_waits >= self.policy.max_attempts or not await self._quota_is_temporary():
                    raise
                await asyncio.sleep(
                    min(self.policy.max_backoff_seconds, self.policy.initial_backoff_seconds * 2**quota_waits)
                )

    async def _send_with_transient_retries(
        self, send: Callable, unit: Unit, result: ChunkResult, counter: list[int]
    ) -> LineResponse:
        try:
            # the common case, without tenacity's overhead
            return await self._attempt(send, unit, result, counter)
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
                return await self._attempt(send, unit, result, counter)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _quota_is_temporary(self) -> bool:
        """Tell a temporary monthly-limit 429 (quota reserved by another delivery) from a real one.

        Compares the quota LINE reports as remaining with what this run still has to send.
        """
        client = self._client
        if client is None:
            return False
        try:
            quota = await client.get_json("/v2/bot/message/quota")
            used = int((await client.get_json("/v2/bot/message/quota/consumption")).get("totalUsage", 0))
            unsent = await self._committed(self._write(self.ledger.unsent_count))
        except (LineApiError, LineTransportError):
            return False
        if quota.get("type") == "none":
            return True
        return int(quota.get("value", 0)) - used >= unsent

    async def _push(self, client: AsyncLineClient, unit: Unit, result: ChunkResult) -> None:
        row, counter = unit.rows[0], [0]

        def send():
            return client.push(row.line_user_id, self.messages, row.retry_key, self.notification_disabled)

        try:
            response = await self._send_with_retries(send, unit, result, counter)
        except (_CampaignStop, LineApiError, LineTransportError) as err:
            row.attempts += counter[0]
            reason = self._failure_reason(err, unit)
            if reason not in RESUMABLE_REASONS or not unit.maybe_accepted:
                row.dispatched_at = None  # LINE refused every attempt: it holds no request with this key
            self._fail(row, reason, result, None if isinstance(err, _CampaignStop) else err)
            return
        row.attempts += counter[0]
        self._succeed(row, response, result)

    def _failure_reason(self, err: Exception, unit: Unit) -> Reason:
        """Name a failed unit's reason; stop the campaign for auth and (real) quota failures."""
        if isinstance(err, _CampaignStop):
            return err.reason
        if isinstance(err, LineAuthError):
            self.request_stop(Reason.AUTH_FAILED)
            return Reason.AUTH_FAILED
        if isinstance(err, LineQuotaExceededError):
            self.request_stop(Reason.QUOTA_EXCEEDED)
            return Reason.QUOTA_EXCEEDED
        if isinstance(err, TRANSIENT):
            return Reason.RETRIES_EXHAUSTED
        return _classify_rejection(err)  # type: ignore[arg-type]

    def _succeed(self, row: LedgerRow, response: LineResponse, result: ChunkResult) -> None:
        row.status, row.reason = SENT, None
        row.http_status = response.status
        row.line_request_id = response.request_id
        row.accepted_request_id = _accepted_id(response)
        row.line_message = _sent_message(response)
        row.sent_at = self.ledger.clock().isoformat()
        result.sent += 1
        self._record(row)

    def _fail(
        self, row: LedgerRow, reason: Reason, result: ChunkResult, err: Exception | None = None
    ) -> None:
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
    def _settle_batch(self, unit: Unit, attempts: int, result: ChunkResult, **outcome: Any) -> None:
        if outcome["status"] == SENT:
            result.sent += len(unit.rows)
        else:
            result.failed[outcome["reason"]] += len(unit.rows)
        self._unsettled.append(self._write(self._settle_or_upsert, unit, attempts, outcome))

    def _settle_or_upsert(self, unit: Unit, attempts: int, outcome: dict[str, Any]) -> None:
        """Write a batch's outcome with one UPDATE; row by row if the log does not hold it as expected.

        Runs on the writer thread; the batch's rows are not touched by the event loop any more.
        """
        batch = unit.rows
        first, last = batch[0].line_user_id, batch[-1].line_user_id
        settled = self.ledger.settle_batch(unit.key, first, last, attempts=attempts, **outcome)
        if settled != len(batch):
            for row in batch:
                row.attempts += attempts
                for name, value in outcome.items():
                    setattr(row, name, value)
            self.ledger.upsert(batch)

    async def _multicast(self, client: AsyncLineClient, unit: Unit, result: ChunkResult) -> None:
        """Send one marked batch and settle it; isolate a recipient LINE names, or push each one."""
        counter = [0]
        to = [row.line_user_id for row in unit.rows]

        def send():
            return client.multicast(to, self.messages, unit.key, self.notification_disabled)

        try:
            response = await self._send_with_retries(send, unit, result, counter)
        except (_CampaignStop, LineAuthError, LineQuotaExceededError, LineTransportError, *TRANSIENT) as err:
            reason = self._failure_reason(err, unit)
            outcome: dict[str, Any] = {"status": FAILED, "reason": reason}
            if isinstance(err, LineApiError):
                outcome.update(http_status=err.status, line_request_id=err.request_id)
            if not isinstance(err, _CampaignStop):
                outcome["line_message"] = (err.line_message if isinstance(err, LineApiError) else str(err))[
                    :500
                ]
            if not unit.maybe_accepted:
                outcome["dispatched_at"] = None
            self._settle_batch(unit, counter[0], result, **outcome)
            return
        except LineApiError as err:  # a 400: LINE refused this body, so it holds no request with this key
            await self._multicast_refused(client, unit, err, counter[0], result)
            return
        self._settle_batch(
            unit,
            counter[0],
            result,
            status=SENT,
            reason=None,
            http_status=response.status,
            line_request_id=response.request_id,
            accepted_request_id=_accepted_id(response),
            line_message=_sent_message(response),
            sent_at=self.ledger.clock().isoformat(),
        )

    async def _multicast_refused(
        self, client: AsyncLineClient, unit: Unit, err: LineApiError, attempts: int, result: ChunkResult
    ) -> None:
        """Handle a 400 on a batch: fail the recipient LINE names and resend the rest, or push each one.

        Safe for a batch resent after a crash too: LINE answers the same body the same way (and checks
        the body before the key), so a 400 now means it refused every attempt of it.
        """
        for row in unit.rows:
            row.attempts += attempts
        bad_index = _bad_recipient_index(err)
        if bad_index is not None and bad_index < len(unit.rows):
            bad = unit.rows[bad_index]
            bad.dispatched_at = None
            self._fail(bad, Reason.INVALID_RECIPIENT_ID, result, err)
            self.flush()
            rest = unit.rows[:bad_index] + unit.rows[bad_index + 1 :]
            if rest:
                old, key = unit.key, str(uuid.uuid4())
                await self._committed(
                    self._mark(self.ledger.rebatch, old, key, rest[0].line_user_id, rest[-1].line_user_id)
                )
                for row in rest:
                    row.batch_id = row.retry_key = key
                retry = Unit("multicast", rest, key)
                await self._limiters["multicast"].acquire()
                await self._multicast(client, retry, result)
            return
        # LINE refused the whole batch without naming a recipient: push each one to learn who.
        for row in unit.rows:
            row.status, row.batch_id, row.dispatched_at = PENDING, None, None
            row.retry_key = push_retry_key(
                self.ledger.campaign_id, self.ledger.run_id, row.line_user_id or ""
            )
        await self._committed(self._mark(self.ledger.upsert, unit.rows))  # push keys, before any push

        async def push(row: LedgerRow) -> None:
            await self._limiters["push"].acquire()
            await self._deliver_unit(client, Unit("push", [row], row.retry_key), result)

        await asyncio.gather(*(push(row) for row in unit.rows))


def _accepted_id(response: LineResponse) -> str | None:
    """Return the id of the request LINE accepted (unknown for a 409 that does not name it)."""
    if response.already_accepted:
        return response.accepted_request_id
    return response.request_id


def _sent_message(response: LineResponse) -> str | None:
    if not response.already_accepted:
        return None
    if response.accepted_request_id:
        return "retry key already accepted"
    return "retry key already accepted (LINE did not name the accepted request)"


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
    """Return the delivery-log rows that register a chunk's recipients as ``pending`` with their push keys."""
    return [
        LedgerRow(
            profile_id=profile_id,
            line_user_id=line_user_id,
            status=PENDING,
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


def sender_identity() -> str:
    """Return who is sending (host, process, a random part): written to the chunk's claim."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def deliver_chunk(
    *,
    client_factory: Callable[[], AsyncLineClient],
    ledger: DeliveryLog,
    chunk_index: int,
    recipients: list[tuple[str, str]],
    messages: list[dict],
    mode: str = "push",
    policy: RetryPolicy | None = None,
    rate: float | None = None,
    rates: dict[str, float | None] | None = None,
    is_test: bool = False,
    on_engine: Callable[[DeliveryEngine], None] | None = None,
    **engine_options: Any,
) -> ChunkResult:
    """Register a chunk in the delivery log, claim it, then send every row of it that is not final.

    Safe to call again for the same chunk (a retried or resumed task), and even while a stale sender
    still runs on it: claiming fences that sender out; only rows that are not final are sent, rows that
    may have reached LINE with their original keys.
    """
    if ledger.chunk_size_logged(chunk_index) < len(recipients):
        ledger.add(pending_rows(ledger.campaign_id, ledger.run_id, chunk_index, recipients, is_test=is_test))
    ledger.claim_chunk(chunk_index, sender_identity())
    rows = ledger.rows_to_send(chunk_index)  # read under the claim: no other sender changes them now
    plan = plan_delivery(
        rows, mode=mode, is_test=is_test, is_stale=lambda row: ledger.is_stale(row, STALE_MARGIN)
    )
    engine = DeliveryEngine(
        client_factory=client_factory,
        ledger=ledger,
        messages=messages,
        policy=policy or RetryPolicy(),
        rate=rate,
        rates=rates,
        **engine_options,
    )
    if on_engine is not None:
        on_engine(engine)
    result = engine.deliver(plan, chunk_index=chunk_index)
    result.already_final = len(recipients) - len(rows)
    return result
