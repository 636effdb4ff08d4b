"""Resume paths: quota raised, a user stopping delivery, and a resume 24 hours later.

Each ends with zero duplicates at LINE and every profile of the chunk or segment accounted for: exactly
one row each, none left ``pending`` or ``sending``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from line_oa.delivery.chunk import deliver_chunk
from line_oa.delivery.results import RetryPolicy
from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook
from line_oa.integration.hooks import LineOAHook
from line_simulator import DEFAULT_TOKEN
from tests.dags.conftest import ledger_of, resume_run, run_dag, task_states
from tests.delivery.conftest import line_conn, user_id  # noqa: F401  (fixture reused)

from .conftest import (
    assert_every_profile_accounted_for,
    assert_log_equals_record,
    eligible_ids,
    segment_profiles,
)

MESSAGES = [{"type": "text", "text": "Back in stock https://shop.example.com/new?utm_source=line"}]
QUICK = RetryPolicy(max_attempts=6, initial_backoff_seconds=0.01, max_backoff_seconds=0.05)


def people(n: int) -> list[tuple[str, str]]:
    return [(f"p{i:06d}", user_id(i)) for i in range(n)]


def send(conn_id: str, ledger, recipients, **kwargs):
    hook = LineOAHook(line_oa_conn_id=conn_id)
    kwargs.setdefault("policy", QUICK)
    try:
        return deliver_chunk(
            client_factory=lambda: hook.async_client(max_in_flight=32),
            ledger=ledger,
            chunk_index=0,
            recipients=recipients,
            messages=MESSAGES,
            mode="push",
            max_in_flight=32,
            **kwargs,
        )
    finally:
        hook.close()


def wait_for_deliveries(sim, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sim.admin.stats()["deliveries"] < count:
        assert time.monotonic() < deadline, "deliveries did not reach the point where the test interrupts"
        time.sleep(0.02)


# -- (a) the monthly quota runs out, then is raised ----------------------------------------------
@pytest.mark.slow
def test_a_run_suspended_by_the_quota_finishes_once_the_quota_is_raised(rel_env, rel_line):
    cdp = rel_env["cdp"].path
    reachable = eligible_ids(cdp) - set(rel_env["cdp"].unknown_user_ids)
    rel_line.admin.configure(
        channels=[
            {
                "name": "default",
                "token": DEFAULT_TOKEN,
                "quota": {"type": "limited", "value": len(reachable) // 3},
            }
        ]
    )
    suspended = run_dag(rel_env, "rel_quota", run_conf={"allow_partial_delivery": True})
    assert str(suspended.state) == "failed"
    assert "failed" in {state for task, state in task_states(suspended).items() if task.startswith("push")}
    ledger = ledger_of("rel_quota", suspended.run_id)
    stopped = Counter(row.reason for row in ledger.rows("failed"))["quota_exceeded"]
    assert stopped > 0
    assert rel_line.admin.stats()["billed"] <= len(reachable) // 3

    # The same month: the account owner buys more messages; nobody waits for the 1st.
    rel_line.admin.configure(
        channels=[
            {
                "name": "default",
                "token": DEFAULT_TOKEN,
                "quota": {"type": "limited", "value": 2 * len(reachable)},
            }
        ]
    )
    resumed = resume_run(rel_env, "rel_quota", suspended, run_conf={"allow_partial_delivery": True})
    assert resumed.run_id == suspended.run_id
    assert str(resumed.state) == "success", task_states(resumed)
    ledger = ledger_of("rel_quota", resumed.run_id)
    sent = assert_log_equals_record(ledger, rel_line.admin.deliveries())
    counts = assert_every_profile_accounted_for(ledger, segment_profiles(cdp))
    assert rel_line.admin.delivery_counts(min_count=2) == {}
    assert sent + counts[("failed", "unknown_recipient")] == len(eligible_ids(cdp))
    assert ("failed", "quota_exceeded") not in counts
    assert rel_line.admin.stats()["consumption"]["default"] == len(reachable) - len(
        set(rel_env["cdp"].blocked_user_ids) & reachable
    )


# -- (b) a user stops delivery mid-chunk ------------------------------------------------------------
def test_a_delivery_stopped_mid_chunk_by_the_user_resumes_without_duplicates(line_conn, sim, tmp_path):  # noqa: F811
    sim.admin.configure(faults={"latency_ms": 20})

    def open_ledger():
        return DeliveryLog(sqlite_file_hook(tmp_path / "log.db"), campaign_id="stop_test", run_id="run-1")

    chunk = people(2000)
    engines = []
    outcome = {}

    def first_attempt():  # a thread of its own, as the task's process is; SQLite wants its own connection
        ledger = open_ledger()
        outcome["first"] = send(line_conn, ledger, chunk, on_engine=engines.append)
        ledger.close()

    worker = threading.Thread(target=first_attempt)
    worker.start()
    wait_for_deliveries(sim, 300)
    engines[0].request_stop("stopped")  # what the operator's on_kill does when the user marks the task failed
    worker.join(timeout=60)
    first = outcome["first"]
    assert first.stopped_reason == "stopped"
    assert 300 <= first.sent < len(chunk)
    assert first.failed == {"stopped": len(chunk) - first.sent}
    assert sim.admin.stats()["deliveries"] == first.sent, "the stop did not stop sending"

    sim.admin.configure(faults={"latency_ms": 0})
    ledger = open_ledger()
    second = send(line_conn, ledger, chunk)
    assert (second.sent, second.already_final, second.stopped_reason) == (
        len(chunk) - first.sent,
        first.sent,
        None,
    )
    assert assert_log_equals_record(ledger, sim.admin.deliveries()) == len(chunk)
    assert assert_every_profile_accounted_for(ledger, {p for p, _ in chunk}) == {("sent", None): len(chunk)}
    ledger.close()


def test_a_push_task_stopped_by_on_kill_fails_so_that_clearing_failed_tasks_resumes_it(
    rel_env, rel_line, tmp_path
):
    from line_oa.integration.chunks import write_chunks
    from line_oa.integration.operators import LineOAPushOperator

    rel_line.admin.configure(faults={"latency_ms": 20})
    chunk = write_chunks(people(1500), staging_uri=tmp_path / "chunks", chunk_size=1500)[0]
    operator = LineOAPushOperator(
        task_id="push",
        campaign_file=str(rel_env["campaigns"] / "rel_quota.yaml"),
        chunk=chunk,
        run_id="kill-1",
    )
    outcome = {}

    def execute():
        try:
            outcome["returned"] = operator.execute({})
        except Exception as err:
            outcome["raised"] = err

    worker = threading.Thread(target=execute)
    worker.start()
    wait_for_deliveries(rel_line, 200)
    operator.on_kill()
    worker.join(timeout=60)
    ledger = ledger_of("rel_quota", "kill-1")
    stopped = Counter(row.reason for row in ledger.rows("failed"))["stopped"]
    assert stopped > 0, "on_kill did not stop the chunk"
    assert "raised" in outcome, f"the stopped chunk returned {outcome.get('returned')}"


# -- (c) resumed more than 24 hours after a worker died ----------------------------------------------
CHILD = """
import json, sys
from line_oa.delivery.chunk import deliver_chunk
from line_oa.delivery.results import RetryPolicy
from line_oa.integration.hooks import LineOAHook
from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook
args = json.loads(open(sys.argv[1]).read())
hook = LineOAHook(line_oa_conn_id=args["conn"])
ledger = DeliveryLog(sqlite_file_hook(args["db"]), campaign_id="gap_test", run_id="run-1")
print("started", flush=True)
deliver_chunk(client_factory=lambda: hook.async_client(max_in_flight=64), ledger=ledger, chunk_index=0,
              recipients=[tuple(p) for p in args["people"]], messages=args["messages"], mode="push",
              policy=RetryPolicy(5, 0.01, 0.05), max_in_flight=64)
print("finished", flush=True)
"""


def kill_mid_chunk(conn_id: str, sim, tmp_path, chunk, after: int) -> None:
    """Deliver ``chunk`` in a child process and SIGKILL it once LINE has ``after`` deliveries."""
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps({"conn": conn_id, "db": str(tmp_path / "log.db"), "people": chunk, "messages": MESSAGES})
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(args)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        for line in child.stdout:
            if line.strip() == b"started":
                break
        wait_for_deliveries(sim, after)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.slow
def test_after_a_24_hour_gap_rows_left_sending_become_outcome_unknown_not_resent(line_conn, sim, tmp_path):  # noqa: F811
    sim.admin.configure(faults={"latency_ms": 30})
    chunk = people(3000)
    kill_mid_chunk(line_conn, sim, tmp_path, chunk, after=600)
    accepted_before = {d["to"] for d in sim.admin.deliveries()}
    now = [datetime.now(UTC)]
    ledger = DeliveryLog(
        sqlite_file_hook(tmp_path / "log.db"), campaign_id="gap_test", run_id="run-1", clock=lambda: now[0]
    )
    left_sending = {row.line_user_id for row in ledger.rows("sending")}
    assert left_sending & accepted_before, "no accepted send was left unlogged by the kill"

    now[0] += timedelta(hours=25)  # both clocks: the delivery log's and LINE's retry-key memory
    sim.admin.advance_clock(25 * 3600)
    sim.admin.configure(faults={"latency_ms": 0})
    result = send(line_conn, ledger, chunk)

    assert sim.admin.delivery_counts(min_count=2) == {}, "a recipient was delivered twice after the gap"
    counts = assert_every_profile_accounted_for(ledger, {p for p, _ in chunk})
    assert counts[("failed", "outcome_unknown")] == len(left_sending)
    assert counts[("sent", None)] + len(left_sending) == len(chunk)
    assert result.failed == {"outcome_unknown": len(left_sending)}
    ledger.close()


def test_after_a_24_hour_gap_rows_whose_retries_ran_out_become_outcome_unknown(line_conn, sim, tmp_path):  # noqa: F811
    """LINE accepted, the answer was lost, every retry failed: a day later nobody knows; nobody resends."""
    now = [datetime.now(UTC)]
    ledger = DeliveryLog(
        sqlite_file_hook(tmp_path / "log.db"), campaign_id="gap_test", run_id="run-2", clock=lambda: now[0]
    )
    chunk = people(200)
    sim.admin.configure(faults={"seed": 4, "accepted_then_lost_rate": 0.5})
    first = send(
        line_conn, ledger, chunk, policy=RetryPolicy(1, 0.01, 0.01)
    )  # no retry: lost means exhausted
    exhausted = {row.line_user_id for row in ledger.rows("failed") if row.reason == "retries_exhausted"}
    assert exhausted
    assert first.failed == {"retries_exhausted": len(exhausted)}
    delivered = {d["to"] for d in sim.admin.deliveries()}
    assert exhausted <= delivered, "accepted-then-lost: LINE has them although the log says failed"

    now[0] += timedelta(hours=25)
    sim.admin.advance_clock(25 * 3600)
    sim.admin.configure(faults={"accepted_then_lost_rate": 0})
    second = send(line_conn, ledger, chunk)
    assert second.failed == {"outcome_unknown": len(exhausted)}
    assert sim.admin.delivery_counts(min_count=2) == {}
    counts = assert_every_profile_accounted_for(ledger, {p for p, _ in chunk})
    assert counts == {
        ("sent", None): len(chunk) - len(exhausted),
        ("failed", "outcome_unknown"): len(exhausted),
    }
