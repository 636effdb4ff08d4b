"""The delivery log's writer thread: marks (a request waits for them) before outcomes, grouped commits."""

from __future__ import annotations

import itertools
import queue
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from line_oa.delivery_log.store import DeliveryLog

# While a chunk is delivered the event loop keeps the GIL busy; the log writer thread, back from each
# SQLite call (which runs without the GIL), would wait up to Python's default 5 ms switch interval to
# continue, and the log, not LINE, would pace the sends (measured: 187 vs 199 multicasts/s at 200/s).
GIL_SWITCH_INTERVAL = 0.001


class LogWriter:
    """Run delivery-log writes on one thread, committing a run of queued writes together.

    A write's future resolves only after the commit that includes it, so "marked ``sending``" is
    durable before the request leaves. Grouping commits keeps the log from pacing the sends.

    Marks (``urgent``) go first: a request waits for its mark, while an outcome only has to be
    written before the chunk ends (its row stays ``sending`` with its key until then, which a resume
    handles). Writes of one kind run in the order they were queued. Nothing depends on an outcome
    being written before a later mark: a mark touches only rows that have not been sent.

    A log that offers ``transaction_now`` (SQLite) has its writes committed on the event loop while
    the thread has none queued (``_run_here``); every other write goes to the thread, and once one
    has, the next ones follow it until the thread has applied them, so the order above holds.
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
        # Writes run on the event loop itself while the thread has none (see ``_run_here``).
        self._here: Callable[[], Any] | None = getattr(ledger, "transaction_now", None)
        self._here_writes: list[tuple[int, Callable[[], Any], asyncio.Future]] = []
        self._on_thread = 0  # writes queued for the thread and not yet applied
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="line-oa-log-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], Any], future: asyncio.Future, *, urgent: bool = False) -> None:
        """Queue a write (call on the event loop's thread); ``future`` resolves once it is committed."""
        kind = self._URGENT if urgent else self._NORMAL
        with self._count_lock:
            here = self._here is not None and (self._here_writes or self._on_thread == 0)
            if not here:
                self._on_thread += 1
        if here:
            self._here_writes.append((kind, write, future))
            if len(self._here_writes) == 1:
                self.loop.call_soon(self._run_here)
            return
        self._queue.put((kind, next(self._order), write, future))

    def _run_here(self) -> None:
        """Apply the writes queued during one turn of the event loop in one transaction, on the loop.

        Without the GIL passing to and fro between the loop and the thread for each SQLite call, a
        mark commits within a turn of the loop. Only a transaction that can start at once runs here
        (``transaction_now``); any failure hands all of them, in order, to the thread, which waits for
        the database and reports each write's own error exactly as for any write.
        """
        writes, self._here_writes = self._here_writes, []
        if self._dead:
            return
        try:
            with self._here():  # type: ignore[misc]
                values = [write() for _, write, _ in writes]
        except Exception:
            with self._count_lock:
                self._on_thread += len(writes)
            for kind, write, future in writes:
                self._queue.put((kind, next(self._order), write, future))
            return
        for value, (_, _, future) in zip(values, writes, strict=True):
            _settle_future(future, True, value)

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
            with self._count_lock:
                self._on_thread -= len(group)

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


class ShortGilSwitches:
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


short_gil_switches = ShortGilSwitches()


def _settle_future(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
