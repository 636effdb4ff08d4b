"""The model-based exactly-once checker (``exactly_once_model``) over SQLite and PostgreSQL logs.

``make test`` runs a bounded number of examples per log (``LINE_OA_MODEL_EXAMPLES``, default 40);
``make chaos-model`` runs at least 10,000 in all and prints what they exercised.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.delivery.conftest import POSTGRES_CONN

from .exactly_once_model import STATS, World, run_scenario, scenarios

EXAMPLES = int(os.environ.get("LINE_OA_MODEL_EXAMPLES") or 40)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def log_hooks(request, tmp_path, monkeypatch):
    from line_oa.delivery_log.store import ledger_hook, sqlite_file_hook

    if request.param == "postgres":
        monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_MODEL_PG", json.dumps(POSTGRES_CONN))
        return request.param, lambda: ledger_hook("line_oa_model_pg")
    return request.param, lambda: sqlite_file_hook(tmp_path / "model_log.db")


def test_exactly_once_under_random_fault_sequences(line_simulator, log_hooks, capsys):
    dialect, hook_factory = log_hooks
    STATS.clear()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(scenario=scenarios())
    def check(scenario):
        run_scenario(World(line_simulator, hook_factory, dialect), scenario)

    check()
    with capsys.disabled():  # the counts are the point of `make chaos-model`
        print(f"\nexactly-once model checker, {dialect} log, {STATS['examples']} examples:")
        print(json.dumps(dict(sorted(STATS.items())), indent=1))
    assert STATS["examples"] >= EXAMPLES
