"""Sample the resident memory of a process tree while it runs (psutil), to attribute peaks to tasks.

Besides the tree's total, the sampler keeps each process's own peak (by pid) with the process title it
had then (``setproctitle`` titles such as ``airflow worker -- <task instance id>``), so that a run where
every task is its own process (LocalExecutor) can name the largest task process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import psutil


@dataclass
class ProcessPeak:
    """The highest memory one process of the tree reached while it was sampled."""

    pid: int
    ppid: int
    title: str
    peak_rss: int = 0
    peak_uss: int | None = None  # unique set size: memory no other process shares (with ``unique=True``)
    first_seen: float = 0.0
    last_seen: float = 0.0
    samples: int = 0
    titles: tuple[str, ...] = ()  # every title seen, in order (a forked child is retitled after start)


class TreeMemorySampler:
    """Record (wall time, summed RSS of a process and its children) every ``interval`` seconds.

    :param unique: also read each process's unique set size (``/proc/<pid>/smaps_rollup``, a few
        milliseconds per large process): what the process holds that a forked parent does not share.
    """

    def __init__(self, pid: int, interval: float = 0.1, *, unique: bool = False):
        self.pid = pid
        self.interval = interval
        self.unique = unique
        self.samples: list[tuple[float, int]] = []
        self.processes: dict[int, ProcessPeak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            now = time.time()
            total = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    total += self._sample(process, now)
            self.samples.append((now, total))
            self._stop.wait(self.interval)

    def _sample(self, process: psutil.Process, now: float) -> int:
        """Return one process's RSS and raise its own peak; psutil errors (it ended) go to the caller."""
        rss = process.memory_info().rss
        uss = process.memory_full_info().uss if self.unique else None
        title = " ".join(process.cmdline())
        peak = self.processes.get(process.pid)
        if peak is None:
            peak = self.processes[process.pid] = ProcessPeak(
                process.pid, process.ppid(), title, first_seen=now
            )
        if title and (not peak.titles or peak.titles[-1] != title):
            peak.titles = (*peak.titles, title)
        if rss >= peak.peak_rss:
            peak.peak_rss = rss
            peak.title = title or peak.title
        if uss is not None and uss >= (peak.peak_uss or 0):
            peak.peak_uss = uss
        peak.last_seen = now
        peak.samples += 1
        return rss

    def peak_between(self, start: float, end: float) -> int | None:
        """Return the highest sampled RSS between two wall-clock times (None if no sample fell inside)."""
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else None

    def last_before(self, moment: float) -> int | None:
        before = [rss for t, rss in self.samples if t <= moment]
        return before[-1] if before else None

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)
