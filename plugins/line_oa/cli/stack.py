"""Start the local Airflow stack for the UI: ``make airflow`` / ``python -m line_oa.cli.stack``.

Everything a user needs to look at campaigns in the Airflow UI on this machine: the LINE simulator,
the demo CDP (a sample of 50,000 profiles), the connections, and Airflow's api-server, scheduler,
dag-processor and triggerer as processes (LocalExecutor). Airflow's metadata goes to PostgreSQL when
a server answers on 127.0.0.1:5432 (database ``line_oa_airflow``), else to SQLite, and it says which.
It prints the URL and the login, and stops every process on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from line_oa.cli.demo import checkout_root, demo_environment

ADMIN = "admin"
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres_database(name: str, *, fresh: bool = False) -> str | None:
    """Return the SQLAlchemy URL of database ``name`` on the local PostgreSQL server (created when
    missing, recreated when ``fresh``), or None when no server answers."""
    try:
        import psycopg2
    except ImportError:
        return None
    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **POSTGRES)
    except psycopg2.OperationalError:
        return None
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            if fresh:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    """Drop the local PostgreSQL database ``name`` (a test stack's)."""
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **POSTGRES)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@dataclass
class Stack:
    """The local stack: its folder, port, metadata database and running processes."""

    home: pathlib.Path
    port: int
    database: str | None = None  # PostgreSQL database name; None: SQLite
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    campaigns_dir: pathlib.Path | None = None  # default: the checkout's include/campaigns
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self, simulator_url: str, token: str) -> dict[str, str]:
        """Return the environment of every Airflow process of the stack."""
        # Airflow and line_oa settings of the calling shell stay out: the stack is the checkout's
        # example campaigns, the simulator and the demo CDP, whatever the caller had configured.
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LINE_OA_"))}
        env = demo_environment(self.home, simulator_url, token, base=base)
        env["AIRFLOW__LINE_OA__CAMPAIGNS_DIR"] = str(
            self.campaigns_dir or checkout_root() / "include" / "campaigns"
        )
        env["AIRFLOW__LINE_OA__SQL_ROOT"] = str(checkout_root() / "include" / "sql")
        url = postgres_database(self.database) if self.database else None
        if url is None:
            self.database = None
            url = f"sqlite:///{self.home / 'airflow' / 'airflow.db'}"
        (self.home / "airflow").mkdir(parents=True, exist_ok=True)
        secret_file = self.home / "airflow" / "jwt_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(32))
        env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.home / "airflow" / "passwords.json"
                ),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            }
        )
        self.env = env
        return env

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
        )

    def start(self, timeout: float = 180.0) -> Stack:
        """Migrate the metadata database and start the components; wait until the api-server answers."""
        (self.home / "airflow").mkdir(parents=True, exist_ok=True)
        (self.home / "airflow" / "passwords.json").write_text(json.dumps({ADMIN: self.password}))
        self.airflow("db", "migrate")
        logs = self.home / "components"
        logs.mkdir(exist_ok=True)
        for name in COMPONENTS:
            args = ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "-w", "1"]
            command = args if name == "api-server" else [name]
            with open(logs / f"{name}.log", "wb") as out:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *command],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"airflow {name} exited ({process.returncode}): see {self.home}/components"
                    )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(1)
        raise TimeoutError(f"the api-server did not answer on {self.url} within {timeout:.0f} s")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the scheduler first (nothing new starts), then the rest; kill what does not stop."""
        order = sorted(self.processes, key=lambda name: name != "scheduler")
        for name in order:
            process = self.processes[name]
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


def run(port: int, home: pathlib.Path, profiles: int) -> int:
    from line_oa.cli.sample_cdp import generate_sample_cdp
    from line_simulator import DEFAULT_TOKEN
    from line_simulator.testing import SimulatorProcess

    home.mkdir(parents=True, exist_ok=True)
    (home / "cdp.db").unlink(missing_ok=True)
    cdp = generate_sample_cdp(home / "cdp.db", profiles=profiles)
    stack = Stack(home=home, port=port, database="line_oa_airflow")
    recipients = {"blocked": cdp.blocked_user_ids, "unknown": cdp.unknown_user_ids}
    with SimulatorProcess({"recipients": recipients}) as simulator:
        stack.environment(simulator.base_url, DEFAULT_TOKEN)
        where = (
            "PostgreSQL (database line_oa_airflow on 127.0.0.1:5432)"
            if stack.database
            else "SQLite (no PostgreSQL server answered on 127.0.0.1:5432; slower under load)"
        )
        print(
            f"Airflow metadata: {where}\nLINE simulator: {simulator.base_url}\nstarting Airflow ...",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            stack.start()
            print(
                f"\nAirflow UI: {stack.url}  (login {ADMIN} / {stack.password})\n"
                f"LINE campaigns page: {stack.url}/plugin/line-campaigns\n"
                f"processes: {', '.join(f'{n} {p.pid}' for n, p in stack.processes.items())}; logs in "
                f"{home / 'components'}\nCtrl-C stops everything.",
                flush=True,
            )
            while all(process.poll() is None for process in stack.processes.values()):
                time.sleep(1)
            print("an Airflow process exited; stopping the others", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
            status = 0
        finally:
            stack.stop()
            print("every process has stopped", flush=True)
    return status


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m line_oa.cli.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="the api-server's port (default 8080)")
    parser.add_argument("--profiles", type=int, default=50_000, help="profiles in the sample CDP")
    parser.add_argument(
        "--home", type=pathlib.Path, help="working folder (default: the checkout's data/stack)"
    )
    args = parser.parse_args(argv)
    home = (args.home or checkout_root() / "data" / "stack").resolve()
    return run(args.port, home, args.profiles)


if __name__ == "__main__":
    sys.exit(main())
