"""The one-off guard: a one-off campaign is delivered by one real run unless re-delivery is asked.

A second real run is refused while an earlier one is running, suspended or finished; resuming the same
run is not a second delivery; two runs launched at once cannot both pass; ``redeliver=true`` passes; a
recurring campaign's runs are never blocked. Checked from LINE's side (the simulator's record).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import yaml

from line_oa.delivery_log.store import (
    DELIVERY_TABLE,
    SUMMARY_TABLE,
    TABLE,
    DeliveryLog,
    ledger_hook,
    sqlite_file_hook,
)
from line_oa.integration.launch import validate_for_launch
from line_oa.integration.pipeline import LaunchRefused, TriggerOptions
from line_simulator import DEFAULT_TOKEN
from tests.dags.conftest import _campaign, ledger_of, resume_run, run_dag, task_states
from tests.delivery.conftest import POSTGRES_CONN

from .conftest import (
    assert_every_profile_accounted_for,
    assert_log_equals_record,
    eligible_ids,
    segment_profiles,
)


def set_quota(sim, value: int) -> None:
    sim.admin.configure(
        channels=[{"name": "default", "token": DEFAULT_TOKEN, "quota": {"type": "limited", "value": value}}]
    )


# -- (a) a suspended run blocks a new trigger; resuming it is not a second delivery ------------------
@pytest.mark.slow
def test_a_suspended_one_off_run_refuses_a_new_trigger_and_resuming_it_delivers_the_rest_once(
    rel_env, rel_line
):
    cdp = rel_env["small_cdp"].path
    eligible = eligible_ids(cdp)
    set_quota(rel_line, len(eligible) // 3)
    suspended = run_dag(rel_env, "rel_one_off", run_conf={"allow_partial_delivery": True})
    assert str(suspended.state) == "failed"
    states = task_states(suspended)
    assert states["validate"] == "success"
    assert "failed" in {state for task, state in states.items() if task.startswith("push")}
    delivered = rel_line.admin.stats()["deliveries"]
    assert 0 < delivered < len(eligible), "the run should stop part way (quota)"

    # The quota is raised: nothing but the guard can refuse the next trigger now.
    set_quota(rel_line, 3 * len(eligible))
    again = run_dag(rel_env, "rel_one_off")
    assert str(again.state) == "failed"
    assert task_states(again)["validate"] == "failed"
    assert rel_line.admin.stats()["deliveries"] == delivered, "the second trigger sent something"
    assert rel_line.admin.delivery_counts(min_count=2) == {}
    refused = ledger_of("rel_one_off", again.run_id)
    assert refused.row_count() == 0, "a refused trigger must record nothing"
    refused.close()
    from line_oa.integration.dag_factory import _ledger, _line_hook

    with pytest.raises(LaunchRefused) as refusal:
        validate_for_launch(
            str(rel_env["campaigns"] / "rel_one_off.yaml"),
            run_id="manual__another-trigger",
            options=TriggerOptions(),
            hook_factory=_line_hook,
            ledger_factory=_ledger,
        )
    message = str(refusal.value)
    assert f"run {suspended.run_id} already delivers or delivered this campaign" in message
    assert f"clear {suspended.run_id}'s failed tasks to resume it" in message
    assert "redeliver=true" in message

    # Clearing the suspended run's failed tasks resumes it: the same delivery, not a second one.
    resumed = resume_run(rel_env, "rel_one_off", suspended, run_conf={"allow_partial_delivery": True})
    assert resumed.run_id == suspended.run_id
    assert str(resumed.state) == "success", task_states(resumed)
    assert rel_line.admin.delivery_counts(min_count=2) == {}, "a recipient was delivered twice"
    ledger = ledger_of("rel_one_off", resumed.run_id)
    assert assert_log_equals_record(ledger, rel_line.admin.deliveries()) == len(eligible)
    assert assert_every_profile_accounted_for(ledger, segment_profiles(cdp))[("sent", None)] == len(eligible)
    ledger.close()


# -- (b), (c) the guard at launch, on SQLite and PostgreSQL ------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def log(request, tmp_path, monkeypatch):
    """Return ``make(campaign_id, run_id, cls=DeliveryLog)`` opening the delivery log; ``.entered(id)``."""
    if request.param == "postgres":
        monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_LEDGER_PG", json.dumps(POSTGRES_CONN))
        hook = lambda: ledger_hook("line_oa_ledger_pg")  # noqa: E731
    else:
        hook = lambda: sqlite_file_hook(tmp_path / "delivery_log.db")  # noqa: E731
    campaigns: set[str] = set()

    def make(campaign_id: str, run_id: str, cls: type[DeliveryLog] = DeliveryLog) -> DeliveryLog:
        campaigns.add(campaign_id)
        return cls(hook(), campaign_id=campaign_id, run_id=run_id)

    def entered(campaign_id: str) -> set[str]:
        """Return the runs recorded as real deliveries of the campaign."""
        ledger = make(campaign_id, "-")
        try:
            cursor = ledger._conn.cursor()
            cursor.execute(
                f"SELECT run_id FROM {DELIVERY_TABLE} WHERE campaign_id = {ledger._p}", (campaign_id,)
            )
            runs = {row[0] for row in cursor.fetchall()}
            ledger._conn.commit()
            return runs
        finally:
            ledger.close()

    make.entered = entered
    make.dialect = request.param
    yield make
    if request.param == "postgres":  # a shared database: leave nothing of these campaigns behind
        ledger = DeliveryLog(hook(), campaign_id="-", run_id="-")
        cursor = ledger._conn.cursor()
        for table in (TABLE, SUMMARY_TABLE, DELIVERY_TABLE):
            cursor.execute(f"DELETE FROM {table} WHERE campaign_id = ANY(%s)", (sorted(campaigns),))
        ledger._conn.commit()
        ledger.close()


def one_off_file(directory, *, recurring: bool = False) -> tuple[str, str]:
    """Write a campaign file with an id of its own (the PostgreSQL log is shared); return (path, id)."""
    campaign_id = f"guard_{uuid.uuid4().hex[:12]}"
    changes = {"content.delivery_mode": "push", "target_audience.cdp_conn_id": "line_oa_small_cdp"}
    if recurring:
        changes["delivery_schedule"] = {"type": "recurring", "cron": "0 9 * * 1", "timezone": "Asia/Tokyo"}
    path = directory / f"{campaign_id}.yaml"
    path.write_text(yaml.safe_dump(_campaign("welcome_back", campaign_id, **changes), allow_unicode=True))
    return str(path), campaign_id


def launch(campaign_file: str, run_id: str, log, *, ledger_class=DeliveryLog, **params) -> dict:
    """Run the validate task's body for ``run_id`` against the simulator, the small CDP and ``log``.

    A ``scheduled__`` run id stands for the scheduler's run (a scheduled or recurring campaign delivers
    for real only in those, or with ``send_now``).
    """
    from line_oa.integration.dag_factory import _line_hook

    return validate_for_launch(
        campaign_file,
        run_id=run_id,
        options=TriggerOptions.from_params(params),
        hook_factory=_line_hook,
        ledger_factory=lambda campaign_id, run: log(campaign_id, run, ledger_class),
        scheduled_run=run_id.startswith("scheduled__"),
    )


def racing_ledger(barrier: threading.Barrier) -> type[DeliveryLog]:
    """Return a log whose runs meet at the guard and hold it a while after looking for other runs.

    Without a lock around check-and-record, both runs would find nobody and both enter.
    """

    class RacingLedger(DeliveryLog):
        def enter_delivery(self, **kwargs):
            barrier.wait()
            return super().enter_delivery(**kwargs)

        def _other_real_run(self, cursor):
            found = super()._other_real_run(cursor)
            time.sleep(0.3)
            return found

    return RacingLedger


def test_two_runs_of_a_one_off_campaign_launched_at_once_cannot_both_pass(rel_env, rel_line, log, tmp_path):
    campaign_file, campaign_id = one_off_file(tmp_path)
    log(campaign_id, "-").close()  # the schema exists before the race
    barrier = threading.Barrier(2, timeout=60)
    outcomes: dict[str, object] = {}

    def validate(run_id: str) -> None:
        try:
            outcomes[run_id] = launch(campaign_file, run_id, log, ledger_class=racing_ledger(barrier))
        except Exception as err:
            outcomes[run_id] = err

    runs = ["manual__first-dags-test", "manual__second-dags-test"]
    threads = [threading.Thread(target=validate, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    passed = [run for run in runs if isinstance(outcomes.get(run), dict)]
    refused = [run for run in runs if isinstance(outcomes.get(run), LaunchRefused)]
    assert len(passed) == 1, outcomes
    assert len(refused) == 1, outcomes
    assert f"run {passed[0]} already delivers or delivered" in str(outcomes[refused[0]])
    assert log.entered(campaign_id) == set(passed)

    # The run that passed may enter again (cleared and resumed); the refused one only with redeliver.
    assert launch(campaign_file, passed[0], log)["campaign_id"] == campaign_id
    with pytest.raises(LaunchRefused, match="trigger with redeliver=true to send again"):
        launch(campaign_file, refused[0], log)
    assert launch(campaign_file, refused[0], log, redeliver=True)["campaign_id"] == campaign_id
    assert log.entered(campaign_id) == set(runs)
    with pytest.raises(LaunchRefused):
        launch(campaign_file, "manual__third", log)  # a redelivery is a delivery too


def test_a_refused_launch_records_nothing_and_dry_runs_and_test_sends_are_not_deliveries(
    rel_env, rel_line, log, tmp_path
):
    campaign_file, campaign_id = one_off_file(tmp_path)
    set_quota(rel_line, 1)
    with pytest.raises(LaunchRefused, match="quota"):
        launch(campaign_file, "manual__over-quota", log)
    assert log.entered(campaign_id) == set(), "a launch refused by the quota was recorded"
    set_quota(rel_line, 100_000)
    launch(campaign_file, "manual__dry", log, dry_run=True)
    launch(campaign_file, "manual__test-send", log, test_recipients=["U" + "a" * 32])
    assert log.entered(campaign_id) == set()
    launch(campaign_file, "manual__real", log)
    assert log.entered(campaign_id) == {"manual__real"}
    launch(campaign_file, "manual__dry-2", log, dry_run=True)
    launch(campaign_file, "manual__test-send-2", log, test_recipients=["U" + "b" * 32])
    with pytest.raises(LaunchRefused, match="run manual__real already delivers"):
        launch(campaign_file, "manual__real-2", log)
    assert log.entered(campaign_id) == {"manual__real"}


def test_redeliver_passes_and_a_recurring_campaign_s_runs_are_never_blocked(rel_env, rel_line, log, tmp_path):
    one_off, one_off_id = one_off_file(tmp_path)
    launch(one_off, "manual__1", log)
    launch(one_off, "manual__2", log, redeliver=True)
    assert log.entered(one_off_id) == {"manual__1", "manual__2"}

    recurring, recurring_id = one_off_file(tmp_path, recurring=True)
    for week in ("scheduled__2026-11-23", "scheduled__2026-11-30"):
        launch(recurring, week, log)
    launch(recurring, "manual__extra", log, send_now=True)
    assert log.entered(recurring_id) == {"scheduled__2026-11-23", "scheduled__2026-11-30", "manual__extra"}


def test_a_log_written_before_the_guard_still_blocks_on_what_it_shows(rel_env, rel_line, log, tmp_path):
    """Runs of an earlier release left no entry: their finished summary or their sent rows still count."""
    from line_oa.delivery_log.store import LedgerRow

    campaign_file, campaign_id = one_off_file(tmp_path)
    old = log(campaign_id, "manual__old-release")
    old.add([LedgerRow("p1", "U" + "c" * 32, "sent", chunk_index=0)])
    old.close()
    with pytest.raises(LaunchRefused, match="run manual__old-release already delivers"):
        launch(campaign_file, "manual__new", log)
    assert log.entered(campaign_id) == set()
