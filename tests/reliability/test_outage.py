"""LINE outages: a two-minute one is ridden out; a permanent one suspends the run, which resumes later."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from tests.dags.conftest import ledger_of, resume_run, run_dag, task_states

from .conftest import (
    assert_every_profile_accounted_for,
    assert_log_equals_record,
    eligible_ids,
    segment_profiles,
)

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 120


class OutageDriver(threading.Thread):
    """Start a two-minute outage mid-chunk, then move the simulator's clock through it.

    Once LINE has ``start_after`` deliveries (every sender busy), the outage begins; once LINE has
    refused ``refusals`` requests (the senders are backing off), the simulated clock advances in 30 s
    steps, one every half second, past the outage's end.
    """

    def __init__(self, sim, *, start_after: int, refusals: int, seconds: int = OUTAGE_SECONDS):
        super().__init__(name="outage-driver", daemon=True)
        self.sim, self.start_after, self.refusals, self.seconds = sim, start_after, refusals, seconds
        self.refused_before_recovery = 0
        self.delivered_before_outage = 0

    def _wait(self, ready) -> None:
        deadline = time.monotonic() + 120
        while not ready(self.sim.admin.stats()) and time.monotonic() < deadline:
            time.sleep(0.02)

    def run(self) -> None:
        self._wait(lambda stats: stats["deliveries"] >= self.start_after)
        self.sim.admin.configure(faults={"outage_seconds": self.seconds})
        self.delivered_before_outage = self.sim.admin.stats()["deliveries"]
        self._wait(lambda stats: stats["faults"].get("outage", 0) >= self.refusals)
        moved = 0
        while moved <= self.seconds:
            self.sim.admin.advance_clock(30)
            moved += 30
            time.sleep(0.5)
        self.refused_before_recovery = self.sim.admin.stats()["faults"].get("outage", 0)


def test_a_two_minute_outage_is_ridden_out_by_backing_off_without_exhausting_retries(
    rel_env, rel_line, capsys
):
    from line_oa.campaign.loading import load_campaign

    policy = load_campaign(rel_env["campaigns"] / "rel_brief_outage.yaml").activation.retry
    driver = OutageDriver(rel_line, start_after=300, refusals=256)  # every sender refused about twice
    driver.start()
    dag_run = run_dag(rel_env, "rel_brief_outage")
    driver.join(timeout=60)

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert {ti.try_number for ti in dag_run.get_task_instances() if ti.task_id == "push"} == {1}, (
        "a push task failed: the engine gave up during the outage"
    )
    refused = rel_line.admin.stats()["faults"]["outage"]
    assert refused >= 256, "the senders did not meet the outage"
    assert 300 <= driver.delivered_before_outage < 2000, "the outage did not start mid-chunk"
    ledger = ledger_of("rel_brief_outage", dag_run.run_id)
    counts = assert_every_profile_accounted_for(ledger, segment_profiles(rel_env["cdp"].path))
    assert ("failed", "retries_exhausted") not in counts
    sent = assert_log_equals_record(ledger, rel_line.admin.deliveries())
    assert sent + counts[("failed", "unknown_recipient")] == len(eligible_ids(rel_env["cdp"].path))
    attempts = Counter(row.attempts for row in ledger.rows("sent"))
    assert max(attempts) <= policy.max_attempts
    assert max(attempts) >= 3, f"nobody was retried more than once: {attempts}"
    assert rel_line.admin.delivery_counts(min_count=2) == {}
    with capsys.disabled():
        print(
            f"\ntwo-minute outage: {refused} requests refused with 503, attempts per recipient {dict(attempts)}"
        )


def minimum_retry_span(policy, *, task_tries: int, retry_delay: timedelta) -> float:
    """Return the shortest time a chunk keeps retrying a LINE that answers 503: engine backoff, task retries."""
    from tenacity import RetryCallState, wait_exponential_jitter

    wait = wait_exponential_jitter(
        multiplier=policy.initial_backoff_seconds, max=policy.max_backoff_seconds, jitter=0
    )  # the engine's wait without its random jitter

    def after(attempt: int) -> float:
        state = RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        return wait(state)

    # First request, a fixed sleep, then tenacity's attempts 2..max with waits between them.
    engine = policy.initial_backoff_seconds + sum(after(n) for n in range(1, policy.max_attempts - 1))
    return task_tries * engine + (task_tries - 1) * retry_delay.total_seconds()


def test_the_default_retry_budget_outlasts_a_two_minute_outage(rel_env):
    from line_oa import settings
    from line_oa.campaign.loading import load_campaign

    campaign = load_campaign(rel_env["campaigns"] / "rel_right_sender.yaml")  # default activation section
    push = rel_env["bag"].dags["line_campaign__rel_right_sender"].get_task("push")
    assert not push.retry_exponential_backoff
    # the DAG takes the setting (the tests' 1 s, tests/conftest.py); a deployment has its default
    assert push.retry_delay == timedelta(seconds=settings.push_retry_delay())
    default_delay = timedelta(seconds=float(settings.OPTIONS["push_retry_delay"].default))
    span = minimum_retry_span(
        campaign.activation.retry, task_tries=push.retries + 1, retry_delay=default_delay
    )
    assert span > OUTAGE_SECONDS, f"a chunk stops retrying after {span:.0f} s of outage"


def test_a_permanent_outage_suspends_the_run_with_every_unsent_recipient_recorded_then_resumes(
    rel_env, rel_line
):
    from line_oa.campaign.loading import load_campaign
    from line_oa.campaign.states import RunFacts
    from line_oa.integration.status import state_of

    rel_line.admin.configure(
        faults={"outage": {"status": 503, "until_simulated_time": "2099-01-01T00:00:00Z"}}
    )
    suspended = run_dag(rel_env, "rel_outage")
    assert str(suspended.state) == "failed"
    states = task_states(suspended)
    assert (states["push[0]"], states["summarize"]) == ("failed", "failed"), states
    assert suspended.get_task_instance("push", map_index=0).try_number == 4, (
        "Airflow's 3 retries were not used"
    )
    assert rel_line.admin.deliveries() == []
    ledger = ledger_of("rel_outage", suspended.run_id)
    counts = Counter((row.status, row.reason) for row in ledger.rows())
    eligible = eligible_ids(rel_env["small_cdp"].path)
    assert counts[("failed", "retries_exhausted")] == len(eligible), counts
    assert not [key for key in counts if key[0] in ("pending", "sending", "sent")]
    exhausted = [row for row in ledger.rows("failed") if row.reason == "retries_exhausted"]
    assert all(row.http_status == 503 and row.attempts == 4 * 3 for row in exhausted), (
        "attempts: 4 tries of 3"
    )
    campaign = load_campaign(rel_env["campaigns"] / "rel_outage.yaml")
    facts = [RunFacts(suspended.run_id, str(suspended.state), start_date=suspended.start_date)]
    assert state_of(campaign, facts).value == "Suspended"

    rel_line.admin.configure(faults={"outage": None})  # LINE is back
    resumed = resume_run(rel_env, "rel_outage", suspended)
    assert str(resumed.state) == "success", task_states(resumed)
    ledger = ledger_of("rel_outage", resumed.run_id)
    counts = assert_every_profile_accounted_for(ledger, segment_profiles(rel_env["small_cdp"].path))
    sent = assert_log_equals_record(ledger, rel_line.admin.deliveries())
    assert sent == len(eligible)
    assert rel_line.admin.delivery_counts(min_count=2) == {}
    facts = [RunFacts(resumed.run_id, str(resumed.state), start_date=resumed.start_date)]
    assert state_of(campaign, facts).value == "Finished"
