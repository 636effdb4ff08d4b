"""Every profile the segment returned has exactly one row: ``chunk_profiles`` checks it before any send."""

from __future__ import annotations

from unittest import mock

import pytest

from line_oa.campaign.loading import load_campaign
from line_oa.delivery.keys import push_retry_key
from line_oa.delivery_log.store import LedgerRow
from line_oa.errors import LineOAError
from line_oa.integration.pipeline import RowCountMismatch, chunk_profiles
from line_oa.integration.segment import extract_segment, rows_for_test_send
from tests.dags.conftest import SHIPPED, ledger_of, run_dag, task_states
from tests.delivery.conftest import ledger_factory, user_id  # noqa: F401  (fixture reused)

CAMPAIGN = load_campaign(SHIPPED / "welcome_back.yaml")


def segment_rows(n: int) -> list[tuple[str, str | None]]:
    """Return ``n`` profiles with distinct ids: most eligible, every tenth without a LINE user id."""
    return [(f"p{i:05d}", None if i % 10 == 0 else user_id(i)) for i in range(n)]


def extracted(ledger, tmp_path, rows, *, is_test: bool = False) -> dict:
    return extract_segment(
        rows=rows, ledger=ledger, staging_dir=tmp_path / "staging" / ledger.run_id, is_test=is_test
    ).to_dict()


def _runs_the_planner_knows(ledger) -> list[str]:
    """The run ids PostgreSQL's statistics of the log list as common values (ANALYZE fills them)."""
    cursor = ledger._conn.cursor()
    cursor.execute(
        "SELECT most_common_vals::text::text[] FROM pg_stats WHERE tablename = 'line_delivery_log' "
        "AND attname = 'run_id'"
    )
    row = cursor.fetchone()
    ledger._conn.commit()
    return list(row[0] or []) if row else []


def test_the_normal_path_has_one_row_per_profile_and_passes(ledger_factory, tmp_path):  # noqa: F811
    ledger = ledger_factory(campaign_id="rows_ok")
    segment = extracted(ledger, tmp_path, segment_rows(250))
    assert (segment["profiles"], segment["eligible"]) == (250, 225)
    chunks = chunk_profiles(segment, campaign=CAMPAIGN, ledger=ledger)
    assert sum(chunk["rows"] for chunk in chunks) == 225
    assert ledger.row_count() == 250
    if ledger.dialect == "postgres":  # the push tasks' queries then find the run's rows by index
        assert ledger.run_id in _runs_the_planner_knows(ledger)
    # a retried chunk task registers nothing twice and passes again
    assert chunk_profiles(segment, campaign=CAMPAIGN, ledger=ledger) == chunks
    assert ledger.row_count() == 250


def test_a_test_send_s_rows_are_test_rows_of_the_run_and_pass(ledger_factory, tmp_path):  # noqa: F811
    ledger = ledger_factory(campaign_id="rows_test_send")
    testers = [user_id(1), user_id(2), user_id(1)]  # one listed twice: one profile
    segment = extracted(ledger, tmp_path, rows_for_test_send(testers), is_test=True)
    assert segment["profiles"] == 2
    chunks = chunk_profiles(segment, campaign=CAMPAIGN, ledger=ledger)
    assert [chunk["is_test"] for chunk in chunks] == [True]
    assert ledger.counts() == {("pending", None, True): 2}


def test_a_row_no_extracted_profile_explains_refuses_the_chunk_task(ledger_factory, tmp_path):  # noqa: F811
    ledger = ledger_factory(campaign_id="rows_stray")
    # left by an earlier attempt of extract_segment that read another segment
    ledger.add([LedgerRow("p-gone", None, "excluded", "missing_recipient_id")])
    segment = extracted(ledger, tmp_path, segment_rows(120))
    with pytest.raises(RowCountMismatch) as refusal:
        chunk_profiles(segment, campaign=CAMPAIGN, ledger=ledger)
    assert isinstance(refusal.value, LineOAError)
    assert str(refusal.value).startswith(
        f"120 profiles extracted but 121 rows in the delivery log for run {ledger.run_id}; refusing to send"
    )


def test_a_profile_without_a_row_refuses_the_chunk_task(ledger_factory, tmp_path):  # noqa: F811
    ledger = ledger_factory(campaign_id="rows_missing")
    segment = extracted(ledger, tmp_path, segment_rows(120))
    # One profile more than the log holds: what a repeated or missing profile id collapsed into another
    # profile's row (the log's key is (campaign, run, profile)) looks like to this check.
    segment = {**segment, "profiles": segment["profiles"] + 1}
    with pytest.raises(RowCountMismatch, match=r"^121 profiles extracted but 120 rows in the delivery log"):
        chunk_profiles(segment, campaign=CAMPAIGN, ledger=ledger)


@pytest.mark.slow
def test_a_dag_run_whose_log_does_not_match_its_segment_sends_nothing(rel_env, rel_line):
    """A stray ``pending`` row in the run's scope: without the check, push would send to it."""
    from airflow.models.dagrun import DagRun

    run_id = "manual__row-check"
    stray = user_id(999_999)
    ledger = ledger_of("rel_row_check", run_id)
    ledger.add(
        [
            LedgerRow(
                "p-not-in-segment", stray, "pending", chunk_index=0,
                retry_key=push_retry_key("rel_row_check", run_id, stray),
            )
        ]
    )  # fmt: skip
    ledger.close()
    with mock.patch.object(DagRun, "generate_run_id", return_value=run_id):
        dag_run = run_dag(rel_env, "rel_row_check")
    assert dag_run.run_id == run_id
    states = task_states(dag_run)
    assert (states["validate"], states["extract_segment"]) == ("success", "success")
    assert states["chunk_profiles"] == "failed"
    assert not [task for task, state in states.items() if task.startswith("push") and state == "success"]
    assert str(dag_run.state) == "failed"
    assert rel_line.admin.deliveries() == [], "a run whose log does not match its segment sent"
    ti = dag_run.get_task_instance("chunk_profiles")
    assert ti.try_number == 1, "retrying cannot change the log: the task fails without retries"
