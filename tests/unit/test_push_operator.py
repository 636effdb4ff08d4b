"""LineOAPushOperator without a run: its construction, its hook, and how a chunk's end fails the task."""

from __future__ import annotations

from collections import Counter

import pytest
from airflow.sdk.exceptions import AirflowFailException

from line_oa.delivery.results import ChunkResult
from line_oa.integration.operators import LineOAPushOperator, raise_if_stopped
from line_oa.vocabulary import Reason

from .campaign_docs import FIXTURES

CAMPAIGN = str(FIXTURES / "valid" / "full_featured.yaml")


def test_constructing_the_operator_reads_no_file_and_no_connection():
    operator = LineOAPushOperator(
        task_id="push", campaign_file="/nowhere/campaign.yaml", chunk='{"index": 0}', line_oa_conn_id=None
    )
    assert "campaign" not in vars(operator)
    assert "hook" not in vars(operator)


@pytest.mark.parametrize(
    ("conn_id", "expected"),
    [(None, "line_oa_default"), ("line_oa_other", "line_oa_other")],
    ids=["without a connection id the campaign's line_config sends", "an explicit connection id wins"],
)
def test_the_hook_is_the_sender_accounts_and_is_made_once(conn_id, expected):
    operator = LineOAPushOperator(task_id="push", campaign_file=CAMPAIGN, chunk={}, line_oa_conn_id=conn_id)
    assert operator.hook.line_oa_conn_id == expected
    assert operator.hook is operator.hook


def chunk_result(stop: Reason | None = None, failed: dict[Reason, int] | None = None) -> ChunkResult:
    return ChunkResult(chunk_index=3, sent=10, failed=Counter(failed or {}), stopped_reason=stop)


@pytest.mark.parametrize(
    ("result", "raised", "message"),
    [
        (
            chunk_result(Reason.QUOTA_EXCEEDED, {Reason.QUOTA_EXCEEDED: 5}),
            AirflowFailException,
            "chunk 3: delivery stopped",
        ),
        (
            chunk_result(Reason.AUTH_FAILED, {Reason.AUTH_FAILED: 5}),
            AirflowFailException,
            "chunk 3: delivery stopped",
        ),
        (chunk_result(Reason.STOPPED, {Reason.STOPPED: 7}), RuntimeError, "with 7 recipients not sent"),
        (
            chunk_result(failed={Reason.RETRIES_EXHAUSTED: 2}),
            RuntimeError,
            "2 recipients still failing after the retry policy",
        ),
    ],
    ids=[
        "a quota stop fails the task without retries",
        "a refused token fails the task without retries",
        "a stop by on_kill fails the attempt",
        "rows still failing after the retry policy fail the attempt",
    ],
)
def test_a_chunk_that_left_rows_unsent_fails_the_task(result, raised, message):
    with pytest.raises(raised, match=message) as caught:
        raise_if_stopped(result)
    assert type(caught.value) is raised


@pytest.mark.parametrize(
    "result",
    [chunk_result(), chunk_result(failed={Reason.INVALID_RECIPIENT_ID: 4, Reason.UNKNOWN_RECIPIENT: 1})],
    ids=["every row sent", "rows LINE refused are final, not a failure of the task"],
)
def test_a_chunk_whose_rows_are_all_final_succeeds(result):
    raise_if_stopped(result)


def test_a_resumed_run_sends_the_unit_its_first_attempt_recorded_not_the_file_s_current_one(
    tmp_path, monkeypatch
):
    """Same key, same body: the unit is part of the body, so a resume must not take a changed file's unit."""
    import datetime as dt

    from line_oa.insights.store import InsightStore

    monkeypatch.setenv("AIRFLOW__LINE_OA__DATA_DIR", str(tmp_path))
    store = InsightStore.connect()
    try:
        now = dt.datetime.now(dt.UTC)
        assert (
            store.record_unit("spring_sale", "run-1", "unit_at_first_launch", now) == "unit_at_first_launch"
        )
        assert store.record_unit("spring_sale", "run-1", "unit_edited_later", now) == "unit_at_first_launch"
    finally:
        store.close()
    operator = LineOAPushOperator(task_id="push", campaign_file=CAMPAIGN, chunk={}, run_id="run-1")
    assert operator._run_unit("spring_sale") == "unit_at_first_launch"
    older = LineOAPushOperator(task_id="push", campaign_file=CAMPAIGN, chunk={}, run_id="run-before-units")
    assert older._run_unit("spring_sale") is None, "a run from before units were recorded sends none"
