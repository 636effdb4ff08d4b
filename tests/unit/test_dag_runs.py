"""The demo and the benchmarks judge an ``airflow dags test`` run by its recorded state, not its exit status."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from line_oa.cli.dag_runs import recorded_run_state, run_outcome

STATES = st.sampled_from([None, "success", "failed", "running", "queued"])


@given(returncode=st.integers(min_value=-64, max_value=255), state=STATES)
def test_a_run_succeeded_exactly_when_airflow_recorded_success(returncode, state):
    outcome = run_outcome(returncode, state)
    assert outcome.succeeded is (state == "success")
    if not outcome.succeeded:
        assert outcome.message.startswith("FAILED")
        assert str(returncode) in outcome.message
    elif returncode != 0:
        assert str(returncode) in outcome.message, "an exit status that disagrees with the run must be shown"


@pytest.mark.parametrize("returncode", [-6, 134])
def test_an_abort_at_exit_after_a_finished_run_is_explained_not_called_a_failure(returncode):
    outcome = run_outcome(returncode, "success")
    assert outcome.succeeded
    assert "SIGABRT" in outcome.message
    assert "docs/operations.md" in outcome.message


def test_a_clean_run_says_only_that_it_succeeded():
    assert run_outcome(0, "success").message == "succeeded"


def test_an_abort_before_the_run_finished_is_a_failure():
    outcome = run_outcome(-6, "running")
    assert not outcome.succeeded
    assert "recorded state running" in outcome.message


def test_no_database_or_no_run_reads_as_no_recorded_state(tmp_path):
    assert recorded_run_state(tmp_path / "absent.db", "line_campaign__x") is None
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert recorded_run_state(empty, "line_campaign__x") is None
