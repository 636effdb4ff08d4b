"""Prepare the benchmark process (a throwaway Airflow home) and describe the machine it runs on."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
POSTGRES_CONN = {
    "conn_type": "postgres",
    "host": "127.0.0.1",
    "port": 5432,
    "login": "postgres",
    "schema": "test",
}
KEY_DISTRIBUTIONS = (
    "apache-airflow",
    "apache-airflow-task-sdk",
    "apache-airflow-providers-http",
    "apache-airflow-providers-sqlite",
    "apache-airflow-providers-postgres",
    "aiohttp",
    "requests",
    "line-bot-sdk",
    "psycopg2-binary",
    "pyarrow",
)


def prepare_airflow_home() -> pathlib.Path:
    """Point Airflow at a temporary home before it is imported; return the benchmark's work folder."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="line-oa-bench-"))
    os.environ["AIRFLOW_HOME"] = str(work / "airflow")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ["AIRFLOW__LINE_OA__DATA_DIR"] = str(work / "data")
    plugins = str(REPO_ROOT / "plugins")
    if plugins not in sys.path:
        sys.path.insert(0, plugins)
    return work


def define_connection(conn_id: str, definition: dict) -> None:
    """Define an Airflow connection for this process as an ``AIRFLOW_CONN_*`` variable."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(definition)


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def python_speed(steps: int = 2_000_000) -> float:
    """Return the machine's single-core speed now, in millions of steps a second of a fixed pure-Python loop
    (best of three): a reading to compare machines and moments by, which the CPU model alone is not (two
    "AMD EPYC" machines here ran ``make test-fast`` on nearly the same tests in 59-70 s and 101-115 s)."""
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for step in range(steps):
            total += step
        best = min(best, time.perf_counter() - started)
    return round(steps / best / 1e6, 1)


def machine() -> dict:
    """Return the facts a reader needs to judge the figures: cores, memory, CPU, versions, load."""
    versions = {}
    for name in KEY_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "load_average_at_start": _load_average(),
        "python_speed_at_start": python_speed(),
        "git_commit": code_version(),
    }


def code_version() -> str:
    """Return the commit under test, with ``+changes`` when plugins/ or dags/ differ from it."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        except OSError:
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--", "plugins", "dags")
    return f"{commit}+changes" if changed else commit
