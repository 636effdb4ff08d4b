"""Run Airflow 3 the way a CeleryExecutor deployment does, as separate processes on this machine.

The metadata database and the Celery result backend are a fresh PostgreSQL database on the server at
127.0.0.1:5432, the broker is the Redis server at 127.0.0.1:6379, and each component (API server,
scheduler, DAG processor, one process per Celery worker) is a process of its own whose PID is kept.
``stop()`` ends them by those PIDs, the scheduler first, so no new task is queued while the rest
wind down. Each stack uses its own database and Celery queue, so two test sessions on one machine
do not steal each other's tasks.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg2
import requests

from line_oa.cli.stack import drop_database, free_port

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_URL = os.environ.get("LINE_OA_LIVE_REDIS_URL", "redis://127.0.0.1:6379/14")
ADMIN_USER = "admin"
ADMIN_PASSWORD = "live-admin-password"
STOP_TIMEOUT = 30.0
# The scheduler goes first: nothing new is queued while the workers finish what they hold.
STOP_ORDER = ("scheduler", "dag-processor", "worker", "api-server")


def postgres_available() -> bool:
    try:
        psycopg2.connect(dbname="postgres", connect_timeout=3, **POSTGRES).close()
    except psycopg2.OperationalError:
        return False
    return True


def recreate_database(name: str) -> None:
    """Drop (if present) and create the PostgreSQL database ``name``."""
    conn = psycopg2.connect(dbname="postgres", **POSTGRES)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


@dataclass
class Component:
    """One running Airflow process and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: pathlib.Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class AirflowStack:
    """Airflow's API server, scheduler, DAG processor and Celery workers, each its own process.

    :param root: a scratch directory: AIRFLOW_HOME, task logs and the components' own output go there.
    :param env: extra environment of every component (connections, ``LINE_OA_*`` settings).
    :param workers: one Celery worker per name, started with ``-H <name>@%h``; its task instances
        report the name as their ``hostname``.
    :param pools: pools to create once the components are up (before any run), ``{name: slots}``.
    """

    def __init__(
        self,
        root: pathlib.Path,
        env: dict[str, str],
        *,
        workers: tuple[str, ...] = ("worker1", "worker2"),
        worker_concurrency: int = 2,
        parallelism: int = 4,
        pools: dict[str, int] | None = None,
    ):
        suffix = secrets.token_hex(4)
        self.root = root
        self.home = root / "airflow"
        self.output_dir = root / "components"
        self.extra_env = env
        self.workers = workers
        self.worker_concurrency = worker_concurrency
        self.parallelism = parallelism
        self.pools = pools or {}
        self.metadata_db = f"airflow_live_{suffix}"
        self.queue = f"line_oa_live_{suffix}"
        self.port = free_port()
        # one secret for all: the scheduler signs the tokens the API server checks for the workers
        self.jwt_secret = secrets.token_urlsafe(32)
        self.components: list[Component] = []
        self._database_created = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs_folder(self) -> pathlib.Path:
        """Return Airflow's ``[logging] base_log_folder`` (task logs, DAG processor logs)."""
        return self.home / "logs"

    def environment(self) -> dict[str, str]:
        """Return the environment shared by every component (the parent's Airflow and line_oa settings removed)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LINE_OA_"))}
        database = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.metadata_db}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
                "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                "AIRFLOW__CELERY__RESULT_BACKEND": database.replace("postgresql+psycopg2", "db+postgresql"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__CORE__FERNET_KEY": "",
                # the workers' hostname_callable lives in tests/live
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        env.update(self.extra_env)
        return env

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 240.0) -> AirflowStack:
        """Create the metadata database, migrate it, start the components, create the pools."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}))
        recreate_database(self.metadata_db)
        self._database_created = True
        self._airflow("db", "migrate")
        self._spawn("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "-w", "1"])
        self._spawn("scheduler", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        for name in self.workers:
            self._spawn(
                f"worker-{name}",
                ["celery", "worker", "-H", f"{name}@%h", "-q", self.queue, "-c", str(self.worker_concurrency)]
                + ["--skip-serve-logs", "--without-gossip", "--without-mingle"],
                env={
                    "LINE_OA_LIVE_WORKER": name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.live.worker_hostname.hostname",
                },
            )
        self.wait_until_ready(timeout)
        # through the REST API, as an operator would, before any run is triggered (an `airflow pools
        # import` before the start cost a whole Airflow CLI process: about 2.4 s of CPU)
        api = self.api()
        for name, slots in self.pools.items():
            api.create_pool(name, slots, description="LINE channel")
        return self

    def _airflow(self, *args: str, timeout: float = 300.0) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.environment(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-4000:]}")

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Component:
        log_path = self.output_dir / f"{name}.log"
        with open(log_path, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env={**self.environment(), **(env or {})},
                cwd=self.root,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: its children can be ended with it
            )
        component = Component(name, process, log_path)
        self.components.append(component)
        return component

    def wait_until_ready(self, timeout: float) -> None:
        """Wait for the API's health answer (scheduler and DAG processor healthy) and each worker's 'ready'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for component in self.components:
                if component.process.poll() is not None:
                    raise RuntimeError(
                        f"{component.name} exited with {component.process.returncode}:\n{component.tail()}"
                    )
            if self._healthy() and all(
                " ready." in c.log_path.read_text(errors="replace")
                for c in self.components
                if c.name.startswith("worker")
            ):
                return
            time.sleep(2)
        raise TimeoutError(
            f"Airflow not ready after {timeout:.0f} s:\n"
            + "\n".join(f"--- {c.name}\n{c.tail(15)}" for c in self.components)
        )

    def _healthy(self) -> bool:
        try:
            health = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False
        return all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "dag_processor")
        )

    def stop(self) -> dict[str, int | None]:
        """Stop every component by its PID, scheduler first; return each one's exit status.

        SIGTERM, then after ``STOP_TIMEOUT`` SIGKILL to the process group the component leads (its
        own children, e.g. Celery's pool processes, and nothing else). Drops the metadata database.
        """
        statuses: dict[str, int | None] = {}
        order = {prefix: position for position, prefix in enumerate(STOP_ORDER)}
        for component in sorted(
            self.components, key=lambda c: next(v for k, v in order.items() if c.name.startswith(k))
        ):
            statuses[component.name] = self._stop(component)
        self.components.clear()
        if self._database_created:
            drop_database(self.metadata_db)
            self._database_created = False
        return statuses

    @staticmethod
    def _stop(component: Component) -> int | None:
        process = component.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # children that outlived their parent (a forked task runner, a Celery pool process)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode

    def api(self) -> AirflowApi:
        return AirflowApi(self.base_url, ADMIN_USER, ADMIN_PASSWORD)


class AirflowApi:
    """The few calls of Airflow's REST API (``/api/v2``) the live tests make, with a bearer token."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self.session = requests.Session()
        response = self.session.post(
            f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} /api/v2{path}: {response.status_code} {response.text[:1000]}")
        return response.json()

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120.0) -> None:
        """Wait until the DAG processor has serialized every DAG in ``dag_ids``."""
        deadline = time.monotonic() + timeout
        found: set[str] = set()
        while time.monotonic() < deadline:
            dags = self._call("GET", "/dags", params={"limit": 100, "dag_id_pattern": "line_campaign__"})
            found = {dag["dag_id"] for dag in dags["dags"]}
            if set(dag_ids) <= found:
                return
            time.sleep(2)
        raise TimeoutError(f"DAGs not parsed after {timeout:.0f} s: missing {sorted(set(dag_ids) - found)}")

    def create_pool(self, name: str, slots: int, description: str = "") -> None:
        """Create the pool ``name`` (tasks deferred in it do not hold a slot)."""
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        self._call("POST", "/pools", json=body)

    def import_errors(self) -> list[dict[str, Any]]:
        return self._call("GET", "/importErrors")["import_errors"]

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Trigger a run now (``logical_date`` null) with ``conf``; return its run id."""
        run = self._call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_runs(self, runs: dict[str, str], timeout: float) -> dict[str, str]:
        """Poll ``{dag_id: run_id}`` until every run has ended; return ``{dag_id: state}``."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {dag_id: self.run_state(dag_id, run_id) for dag_id, run_id in runs.items()}
            if all(state in ("success", "failed") for state in states.values()):
                return states
            time.sleep(3)
        raise TimeoutError(f"runs still going after {timeout:.0f} s: {states}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self._call("GET", path, params={"limit": 1000})["task_instances"]
