"""Shared fixtures. Airflow's environment is set before anything imports Airflow."""

from __future__ import annotations

import atexit
import functools
import gc
import os
import pathlib
import re
import shutil
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Each pytest process (each xdist worker too) has its own AIRFLOW_HOME and metadata DB: workers never
# share a log folder, a config or a SQLite file. The Makefile's AIRFLOW_HOME (data/airflow) is the demo's.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_AIRFLOW_HOME = pathlib.Path(tempfile.mkdtemp(prefix=f"line_oa_airflow_{_WORKER}_"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
# Airflow waits 1 s, not the default 10 s, before it retries a push task: the runs that kill a push task
# or keep LINE failing (the chaos run, the permanent outage) wait for every retry in real time. The
# default's budget is checked in tests/reliability/test_outage.py.
os.environ.setdefault("AIRFLOW__LINE_OA__PUSH_RETRY_DELAY", "1")

# The PostgreSQL tests' delivery logs go to a database of this process's own (tests/delivery/conftest.py
# POSTGRES_CONN), created for the session and dropped after it.
os.environ["LINE_OA_TEST_PG_DATABASE"] = f"line_oa_test_{_WORKER}_{os.getpid()}"

pytest_plugins = ["line_simulator.pytest_plugin"]


def _fast_loop_profile() -> None:
    """In ``make test-fast``, property tests that set no number of examples generate fewer (tests/fast_loop.py)."""
    from hypothesis import settings

    from tests.fast_loop import FAST, FAST_DEFAULT_EXAMPLES

    if FAST:
        settings.register_profile("line_oa_fast", max_examples=FAST_DEFAULT_EXAMPLES)
        settings.load_profile("line_oa_fast")


_fast_loop_profile()


def _validate_checking_each_schema_once() -> None:
    """Make ``jsonschema.validate`` check a given schema against its metaschema once per process.

    Airflow resolves every DAG param of every task instance with ``jsonschema.validate``, which checks
    the param's (unchanging) schema against the metaschema on every call before it validates the value:
    14 % of the CPU of the process running the ``dag.test`` runs of tests/dags/test_campaign_runs.py
    (py-spy). The value is still validated every time; a schema's check, whose answer cannot change,
    is kept. Tests only: a task process resolves a few params once.
    """
    import json

    import jsonschema
    from jsonschema import exceptions, validators

    checked: set[tuple[type, str]] = set()
    original = jsonschema.validate

    def validate(instance, schema, cls=None, *args, **kwargs):
        try:
            key = json.dumps(schema, sort_keys=True)
        except (TypeError, ValueError):
            return original(instance, schema, cls, *args, **kwargs)
        cls = cls or validators.validator_for(schema)
        if (cls, key) not in checked:
            cls.check_schema(schema)
            checked.add((cls, key))
        error = exceptions.best_match(cls(schema, *args, **kwargs).iter_errors(instance))
        if error is not None:
            raise error
        return None

    jsonschema.validate = validate


_validate_checking_each_schema_once()


def pytest_collection_finish(session):
    """Make the test process's garbage collector run less often once the tests are collected.

    Every pytest process (each xdist worker) imports Airflow, SQLAlchemy, FastAPI and pydantic: a few
    hundred thousand long-lived objects that CPython's cyclic collector walks again and again while the
    tests allocate (gen 0 every 700 allocations by default). ``gc.freeze()`` sets what is loaded by now
    aside for good and a larger gen-0 threshold collects less often; reference counting still frees
    everything at once, only cycles wait a little longer. Side by side, ``make test`` took 341 s of
    CPU without it and 324 s with it (195.5 and 187.1 s of wall time on 2 cores).
    Tests only: the product's processes keep Python's defaults. ``LINE_OA_TEST_GC`` sets other
    thresholds (``700,10,10``: Python's, with the freeze) or ``default`` (neither), to compare.
    """
    setting = os.environ.get("LINE_OA_TEST_GC", "50000,20,20")
    if setting == "default":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*(int(n) for n in setting.split(",")))


@pytest.fixture(scope="session", autouse=True)
def postgres_test_database():
    """Create this process's PostgreSQL test database; drop it at the end. Without a server the
    PostgreSQL tests fail on their own, naming the connection (.ci/run starts the server)."""
    from line_oa.cli.stack import drop_database
    from tests.live.airflow_stack import postgres_available, recreate_database

    name = os.environ["LINE_OA_TEST_PG_DATABASE"]
    if not postgres_available():
        yield name
        return
    for orphan in _orphaned_test_databases():
        drop_database(orphan)
    recreate_database(name)
    yield name
    drop_database(name)


def _orphaned_test_databases() -> list[str]:
    """The test databases of pytest processes that are gone without dropping theirs (stopped with
    SIGTERM or SIGKILL, e.g. a long model-checker run): ``line_oa_test_<worker>_<pid>`` whose pid is no
    live process. A live pid keeps its database, whoever it is."""
    import psutil
    import psycopg2

    from tests.live.airflow_stack import POSTGRES

    conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **POSTGRES)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'line_oa_test_%'")
            names = [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()
    orphans = []
    for name in names:
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            orphans.append(name)
    return orphans


_SHARED_FIXTURE = re.compile(r"""@pytest\.fixture\(\s*scope\s*=\s*["'](module|class)["']""")
# Package-scoped fixtures that cost a whole DAG run: the test files that use one share a worker.
SHARED_PACKAGE_FIXTURES = ("chaos_run",)


@functools.cache
def _worker_group(path: str) -> str | None:
    """The group a test file's tests run in on one worker, or None (its tests are spread singly).

    A file that defines a module- or class-scoped fixture is its own group; a file whose tests use one
    of ``SHARED_PACKAGE_FIXTURES`` joins that fixture's group.
    """
    file = ROOT / path
    if not file.is_file():
        return None
    text = file.read_text(encoding="utf-8")
    if _SHARED_FIXTURE.search(text):
        return path
    return next(
        (name for name in SHARED_PACKAGE_FIXTURES if re.search(rf"def test_\w+\([^)]*\b{name}\b", text)), None
    )


def pytest_xdist_make_scheduler(config, log):
    """``make test`` (``-n 4 --dist loadgroup``): spread single tests over the workers, but keep the tests
    that share an expensive fixture (a live Airflow stack, a built wheel, a browser, the chaos run) on
    one worker, so the fixture is set up once (``_worker_group``).

    xdist's own ``xdist_group`` marks do not group under pytest 9.2 (xdist 3.8 renames the node ids
    through an attribute pytest no longer reads), so the grouping is done here, by file.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _worker_group(nodeid.split("::", 1)[0]) or nodeid

    return SharedFixtureScheduling(config, log)
