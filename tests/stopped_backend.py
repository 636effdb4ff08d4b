"""Stop a PostgreSQL backend with SIGSTOP in a way that outlives the test process.

A backend left stopped blocks every ``DROP DATABASE`` on the server (it never answers the barrier the
drop waits for), so later test sessions hang at their teardown. A test killed while it holds a backend
stopped (SIGTERM, a timeout) would leave it so; here a separate process resumes it after a deadline
whatever happens to the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


class StoppedBackend:
    """SIGSTOP ``pid`` now; SIGCONT it on ``resume()`` or, at the latest, after ``seconds``."""

    def __init__(self, pid: int, seconds: float):
        self.pid = pid
        # Started before the stop, in its own session: it resumes the backend even if we die next.
        self._watchdog = subprocess.Popen(
            ["sh", "-c", f"sleep {seconds:.3f}; kill -CONT {pid}"], start_new_session=True
        )
        os.kill(pid, signal.SIGSTOP)

    def wait(self) -> None:
        """Wait for the deadline's resume (the stop lasts its full time)."""
        self._watchdog.wait()
        self.resume()

    def resume(self) -> None:
        """Resume the backend now and end the watchdog."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)
        if self._watchdog.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._watchdog.pid, signal.SIGKILL)  # the shell and its sleep
            self._watchdog.wait()
