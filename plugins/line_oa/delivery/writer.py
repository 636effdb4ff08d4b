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
