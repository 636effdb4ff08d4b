"""Sample the resident memory of a process tree while it runs (psutil), to attribute peaks to tasks."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class TreeMemorySampler:
    """Record (wall time, summed RSS of a process and its children) every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
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
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += process.memory_info().rss
            except psutil.Error:
                return
            self.samples.append((time.time(), total))
            self._stop.wait(self.interval)

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
