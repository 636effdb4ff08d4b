"""Run the simulator in a subprocess and drive its admin endpoints from tests, demos and benchmarks."""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import requests
import yaml

if TYPE_CHECKING:
    from collections.abc import Iterator

STARTUP_TIMEOUT = 20.0


class SimulatorAdmin:
    """Call the ``/_sim/`` admin endpoints of a running simulator."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/_sim/{path}", timeout=self.timeout, **kwargs
        )
        if response.status_code >= 400:
            raise RuntimeError(
                f"simulator admin {method} /_sim/{path}: {response.status_code} {response.text}"
            )
        return response.json()

    def stats(self) -> dict[str, Any]:
        """Return the counters: requests by endpoint and status, faults, deliveries, billed, 429s."""
        return self._call("GET", "stats")

    def iter_deliveries(self, channel: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield one dict per recipient delivery, streamed, oldest first."""
        params = {"channel": channel} if channel else None
        with self.session.get(
            f"{self.base_url}/_sim/deliveries", params=params, stream=True, timeout=self.timeout
        ) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)

    def deliveries(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Return every recipient delivery as a list of dicts (see ``iter_deliveries``)."""
        return list(self.iter_deliveries(channel))

    def delivery_counts(self, min_count: int = 1, channel: str | None = None) -> dict[str, int]:
        """Return ``{recipient: deliveries}`` for recipients recorded at least ``min_count`` times."""
        params: dict[str, Any] = {"min": min_count}
        if channel:
            params["channel"] = channel
        return self._call("GET", "delivery-counts", params=params)

    def messages(self, messages_hash: str) -> list[dict[str, Any]]:
        """Return the message bundle recorded under ``messages_hash``."""
        return self._call("GET", f"messages/{messages_hash}")

    def reset(self, keep_config: bool = True, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Forget record, keys, counters, consumption and clock offset; return the configuration.

        :param keep_config: if false, go back to the configuration the simulator started with.
        :param config: start from the defaults merged with this configuration instead.
        """
        body: dict[str, Any] = {"keep_config": keep_config}
        if config is not None:
            body["config"] = config
        return self._call("POST", "reset", json=body)["config"]

    def next_month(self) -> None:
        """Reset every channel's monthly quota consumption to 0 (record, retry keys, reservations stay)."""
        self._call("POST", "next-month")

    def reserve(self, messages: int, channel: str = "default") -> dict[str, Any]:
        """Hold ``messages`` of ``channel``'s monthly quota for "another delivery in progress".

        Sends that fit the quota but not quota minus the reservation then get LINE's monthly-limit 429;
        ``reserve(0)`` releases it. Return ``{"channel", "reserved", "consumption"}``.
        """
        return self._call("POST", "reserve", json={"channel": channel, "messages": messages})

    def configure(self, **partial: Any) -> dict[str, Any]:
        """Deep-merge ``partial`` (``faults=...``, ``recipients=...``, ``channels=[...]``); return the result."""
        return self._call("POST", "config", json=partial)

    def config(self) -> dict[str, Any]:
        """Return the configuration in force."""
        return self._call("GET", "config")

    def clock(self) -> str:
        """Return the simulated time as an ISO string."""
        return self._call("GET", "clock")["now"]

    def advance_clock(self, seconds: float) -> str:
        """Move the simulated clock forward by ``seconds``; return the new time."""
        return self._call("POST", "clock", json={"advance_seconds": seconds})["now"]

    def set_clock(self, iso: str) -> str:
        """Set the simulated clock to an ISO 8601 time; return it."""
        return self._call("POST", "clock", json={"now": iso})["now"]

    def configure_insights(self, **settings: Any) -> dict[str, Any]:
        """Set ``unit_budget``, ``rate_limit_per_hour`` (None: off), ``rate_limit_burst`` of the insight endpoints."""
        return self._call("POST", "insights", json=settings)


class SimulatorProcess:
    """Run ``python -m line_simulator --port 0`` in a subprocess; a context manager.

    After ``start()``: ``base_url`` (``http://127.0.0.1:PORT``), ``port``, ``pid`` and ``admin``.
    The simulator's stderr goes to ``log_path``.
    """

    def __init__(self, config: dict[str, Any] | None = None, host: str = "127.0.0.1"):
        self.config = config
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.base_url: str | None = None
        self.admin: SimulatorAdmin | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: pathlib.Path | None = None

    @property
    def pid(self) -> int | None:
        """Return the process id of the simulator, or None when it is not running."""
        return self.process.pid if self.process else None

    def start(self) -> SimulatorProcess:
        """Start the subprocess and wait until it prints the port it listens on."""
        if self.process is not None:
            return self
        self._tmp = tempfile.TemporaryDirectory(prefix="line_sim_")
        config_path = pathlib.Path(self._tmp.name, "simulator.yaml")
        config_path.write_text(yaml.safe_dump(self.config or {}), encoding="utf-8")
        self.log_path = pathlib.Path(self._tmp.name, "simulator.log")
        command = [sys.executable, "-m", "line_simulator", "--host", self.host, "--port", "0"]
        # --exit-with-stdin: the simulator stops when this pipe closes, which the system does when this
        # process ends, however it ends (a test run killed with SIGTERM or SIGKILL left simulators behind)
        command += ["--config", str(config_path), "--exit-with-stdin"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=dict(os.environ)
            )
        line = self._first_line()
        self.port = int(line.rsplit(":", 1)[1])
        self.base_url = line.split(" on ", 1)[1]
        self.admin = SimulatorAdmin(self.base_url)
        return self

    def _first_line(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(remaining, 0))
            chunk = os.read(self.process.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                log = self.log_path.read_text(errors="replace") if self.log_path else ""
                self.stop()
                raise RuntimeError(f"the LINE simulator did not start: {log.strip()[-2000:]}")
            buffer += chunk
        return buffer.split(b"\n", 1)[0].decode().strip()

    def stop(self) -> None:
        """Stop the subprocess with SIGTERM (SIGKILL after 10 s) and remove its temporary files."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        if self.admin is not None:
            self.admin.session.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
