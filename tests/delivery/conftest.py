"""Fixtures for delivery tests: a LINE connection at the simulator and a delivery log on SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import uuid

import pytest

from line_simulator import DEFAULT_TOKEN

POSTGRES_CONN = {
    "conn_type": "postgres",
    "host": "127.0.0.1",
    "port": 5432,
    "login": "postgres",
    # this pytest process's own database, created and dropped by tests/conftest.py: the delivery logs
    # the tests write never pile up from one run to the next (they slowed every later run)
    "schema": os.environ["LINE_OA_TEST_PG_DATABASE"],
}


def user_id(n: int) -> str:
    """Return a well-formed LINE user id, distinct for each n."""
    return "U" + f"{n:032x}"


@pytest.fixture
def line_conn(sim, monkeypatch):
    """Define the ``line_oa_test`` connection pointing at the simulator; return its id."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_LINE_OA_TEST",
        json.dumps(
            {
                "conn_type": "line_oa",
                "host": sim.base_url,
                "password": DEFAULT_TOKEN,
                "extra": {"workspaces": "retail_jp", "timeout": 2},
            }
        ),
    )
    return "line_oa_test"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_factory(request, tmp_path, monkeypatch):
    """Return ``make(campaign_id=..., run_id=..., clock=...)`` opening a delivery log on SQLite or PostgreSQL."""
    from line_oa.delivery_log.store import DeliveryLog, ledger_hook, sqlite_file_hook

    if request.param == "postgres":
        monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_LEDGER_PG", json.dumps(POSTGRES_CONN))
        hook_factory = lambda: ledger_hook("line_oa_ledger_pg")  # noqa: E731
    else:
        hook_factory = lambda: sqlite_file_hook(tmp_path / "delivery_log.db")  # noqa: E731
    opened = []
    run_id = f"test-{uuid.uuid4().hex[:12]}"

    def make(campaign_id: str = "engine_test", run_id: str = run_id, **kwargs):
        ledger = DeliveryLog(hook_factory(), campaign_id=campaign_id, run_id=run_id, **kwargs)
        opened.append(ledger)
        return ledger

    make.dialect = request.param
    yield make
    for ledger in opened:
        with contextlib.suppress(Exception):  # already closed by the code under test
            ledger.close()
