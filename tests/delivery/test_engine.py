"""The delivery engine against the LINE simulator over real HTTP, with the delivery log on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from line_oa.delivery.chunk import deliver_chunk
from line_oa.delivery.keys import push_retry_key
from line_oa.delivery.results import RetryPolicy
from line_oa.integration.hooks import LineOAHook
from line_simulator import DEFAULT_TOKEN

from .conftest import user_id

MESSAGES = [{"type": "text", "text": "Spring sale starts now https://example.com/sale?utm_source=line"}]
FAST_RETRIES = RetryPolicy(max_attempts=12, initial_backoff_seconds=0.01, max_backoff_seconds=0.05)


def recipients(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [(f"p{i:06d}", user_id(i)) for i in range(start, start + n)]


def run_chunk(line_conn, ledger, people, **kwargs):
    hook = LineOAHook(line_oa_conn_id=line_conn)
    kwargs.setdefault("policy", FAST_RETRIES)
    kwargs.setdefault("chunk_index", 0)
    kwargs.setdefault("max_in_flight", 32)
    try:
        return deliver_chunk(
            client_factory=lambda: hook.async_client(max_in_flight=32),
            ledger=ledger,
            recipients=people,
            messages=MESSAGES,
            **kwargs,
        )
    finally:
        hook.close()


def assert_log_matches_record(ledger, sim, *, expected_sent: int):
    """Every `sent` row has exactly one delivery at the simulator, accepted by the request the row names."""
    record = [d for d in sim.admin.deliveries()]
    by_recipient = Counter(d["to"] for d in record)
    duplicates = {to: n for to, n in by_recipient.items() if n > 1}
    assert duplicates == {}, f"recipients delivered more than once: {list(duplicates)[:5]}"
    sent_rows = {row.line_user_id: row for row in ledger.rows("sent")}
    assert len(sent_rows) == expected_sent
    assert set(sent_rows) == set(by_recipient), "the log and LINE's record disagree on who was sent"
    for delivery in record:
        row = sent_rows[delivery["to"]]
        assert row.accepted_request_id == delivery["request_id"]
        assert row.retry_key == delivery["retry_key"]


def test_push_delivers_each_recipient_once_and_logs_the_request_id(line_conn, ledger_factory, sim):
    ledger = ledger_factory()
    result = run_chunk(line_conn, ledger, recipients(300), mode="push")
    assert result.sent == 300
    assert result.failed == {}
    assert result.requests == 300
    assert_log_matches_record(ledger, sim, expected_sent=300)
    assert ledger.counts() == {("sent", None, False): 300}


def test_a_chunk_the_log_holds_is_sent_from_the_log_and_its_file_is_read_only_when_rows_are_missing(
    line_conn, ledger_factory, sim
):
    """The chunk task registers every chunk before any push task runs: a push task then sends from the log
    without reading its chunk file (no Arrow in its process). A chunk the log lacks rows of is read."""
    from line_oa.delivery.chunk import ChunkRecipients, pending_rows

    people = recipients(40)
    ledger = ledger_factory()
    ledger.add(pending_rows(ledger.campaign_id, ledger.run_id, 0, people))
    reads = []

    def read():
        reads.append(1)
        return people

    result = run_chunk(line_conn, ledger, ChunkRecipients(len(people), read), mode="push")
    assert (result.sent, reads) == (40, [])
    more = recipients(25, start=40)
    result = run_chunk(line_conn, ledger, ChunkRecipients(25, lambda: reads.append(1) or more), chunk_index=1)
    assert (result.sent, result.already_final, reads) == (25, 0, [1])
    assert_log_matches_record(ledger, sim, expected_sent=65)


def test_retry_key_is_deterministic_per_campaign_run_and_recipient():
    key = push_retry_key("spring_sale", "run-1", user_id(1))
    assert key == push_retry_key("spring_sale", "run-1", user_id(1))
    assert key != push_retry_key("spring_sale", "run-2", user_id(1))
    assert key != push_retry_key("spring_sale", "run-1", user_id(2))


def test_transient_errors_are_retried_with_the_same_key_and_deliver_once(line_conn, ledger_factory, sim):
    sim.admin.configure(
        faults={"seed": 3, "error_500_rate": 0.2, "error_503_rate": 0.1, "rate_limit_429_rate": 0.1}
    )
    ledger = ledger_factory()
    result = run_chunk(line_conn, ledger, recipients(200))
    assert result.sent == 200
    assert result.retries > 20, "the faults were not injected"
    assert result.requests == 200 + result.retries
    assert_log_matches_record(ledger, sim, expected_sent=200)
    assert sum(row.attempts for row in ledger.rows("sent")) == result.requests


def test_accepted_then_lost_is_settled_by_409_as_sent(line_conn, ledger_factory, sim):
    sim.admin.configure(faults={"seed": 5, "accepted_then_lost_rate": 0.3})
    ledger = ledger_factory()
    result = run_chunk(line_conn, ledger, recipients(100))
    assert result.sent == 100
    already = [row for row in ledger.rows("sent") if row.http_status == 409]
    assert already, "no request was lost after acceptance"
    assert all(row.line_message == "retry key already accepted" for row in already)
    assert all(row.accepted_request_id != row.line_request_id for row in already)
    assert_log_matches_record(ledger, sim, expected_sent=100)


def test_recipient_errors_are_recorded_without_retry(line_conn, ledger_factory, sim):
    unknown, blocked = user_id(1), user_id(2)
    sim.admin.configure(recipients={"unknown": [unknown], "blocked": [blocked]})
    ledger = ledger_factory()
    people = [("p-unknown", unknown), ("p-blocked", blocked), ("p-bad", "U123"), ("p-ok", user_id(3))]
    result = run_chunk(line_conn, ledger, people)
    rows = {row.profile_id: row for row in ledger.rows()}
    assert (rows["p-unknown"].status, rows["p-unknown"].reason) == ("failed", "unknown_recipient")
    assert (rows["p-bad"].status, rows["p-bad"].reason) == ("failed", "invalid_recipient_id")
    assert rows["p-bad"].http_status == 400
    assert rows["p-bad"].line_request_id
    assert rows["p-blocked"].status == "sent", "LINE answers 200 for a user who blocked the account"
    assert rows["p-ok"].status == "sent"
    assert result.requests == 4, "permanent errors must not be retried"
    delivered = {d["to"]: d["delivered"] for d in sim.admin.deliveries()}
    assert delivered == {blocked: False, user_id(3): True}


def test_auth_failure_stops_the_chunk_without_burning_retries(line_conn, ledger_factory, sim, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_LINE_OA_TEST"])
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_TEST", json.dumps({**conn, "password": "wrong-token"}))
    ledger = ledger_factory()
    result = run_chunk(line_conn, ledger, recipients(500))
    assert result.stopped_reason == "auth_failed"
    assert result.failed == {"auth_failed": 500}
    assert result.requests <= 32, "more requests than were in flight when LINE first answered 401"
    assert ledger.counts() == {("failed", "auth_failed", False): 500}
    assert sim.admin.deliveries() == []


def test_quota_stop_then_resume_next_month_without_duplicates(line_conn, ledger_factory, sim):
    sim.admin.configure(
        channels=[{"name": "default", "token": DEFAULT_TOKEN, "quota": {"type": "limited", "value": 120}}]
    )
    ledger = ledger_factory()
    people = recipients(300)
    first = run_chunk(line_conn, ledger, people)
    assert first.stopped_reason == "quota_exceeded"
    assert first.sent == 120
    assert first.failed == {"quota_exceeded": 180}
    sim.admin.next_month()
    second = run_chunk(line_conn, ledger, people)
    assert (second.sent, second.already_final, second.failed) == (120, 120, {"quota_exceeded": 60})
    sim.admin.next_month()
    third = run_chunk(line_conn, ledger, people)
    assert (third.sent, third.already_final, third.failed, third.stopped_reason) == (60, 240, {}, None)
    assert_log_matches_record(ledger, sim, expected_sent=300)


def test_multicast_packs_500_per_request_and_isolates_a_malformed_id(line_conn, ledger_factory, sim):
    ledger = ledger_factory()
    people = recipients(1100)
    people[700] = ("p-bad", "Uxyz")
    result = run_chunk(line_conn, ledger, people, mode="multicast")
    assert result.sent == 1099
    assert result.failed == {"invalid_recipient_id": 1}
    stats = sim.admin.stats()
    assert stats["requests"]["multicast"] == {"200": 3, "400": 1}
    bad = next(row for row in ledger.rows("failed"))
    assert bad.profile_id == "p-bad"
    assert bad.http_status == 400
    assert_log_matches_record(ledger, sim, expected_sent=1099)


def test_multicast_rejected_without_an_index_falls_back_to_push(line_conn, ledger_factory, sim):
    sim.admin.configure(recipients={"unknown": [user_id(5)], "multicast_unknown": "reject"})
    ledger = ledger_factory()
    result = run_chunk(line_conn, ledger, recipients(20), mode="multicast")
    assert result.sent == 19
    assert result.failed == {"unknown_recipient": 1}
    assert_log_matches_record(ledger, sim, expected_sent=19)


def test_multicast_retries_a_lost_batch_under_its_persisted_key(line_conn, ledger_factory, sim):
    sim.admin.configure(faults={"seed": 1, "accepted_then_lost_rate": 0.5, "error_500_rate": 0.2})
    ledger = ledger_factory()
    result = run_chunk(line_conn, ledger, recipients(2000), mode="multicast")
    assert result.sent == 2000
    assert len({row.retry_key for row in ledger.rows("sent")}) == 4
    assert_log_matches_record(ledger, sim, expected_sent=2000)


def test_rows_sending_for_over_24_hours_become_outcome_unknown_not_resent(line_conn, ledger_factory, sim):
    from line_oa.delivery.chunk import pending_rows

    now = [datetime.now(UTC)]
    ledger = ledger_factory(clock=lambda: now[0])
    people = recipients(10)
    rows = pending_rows(ledger.campaign_id, ledger.run_id, 0, people)
    for row in rows[:4]:
        row.status, row.attempts = "sending", 1
    ledger.add(rows)
    now[0] += timedelta(hours=25)
    result = run_chunk(line_conn, ledger, people)
    assert result.failed == {"outcome_unknown": 4}
    assert result.sent == 6
    assert {d["to"] for d in sim.admin.deliveries()} == {uid for _, uid in people[4:]}


def test_client_side_rate_limit_keeps_429s_the_exception(line_conn, ledger_factory, sim):
    sim.admin.configure(channels=[{"name": "default", "token": DEFAULT_TOKEN, "rate_limits": {"push": 100}}])
    ledger = ledger_factory()
    started = time.monotonic()
    result = run_chunk(line_conn, ledger, recipients(150), rate=95)
    elapsed = time.monotonic() - started
    assert result.sent == 150
    assert sim.admin.stats()["rate_limited"] <= 2
    assert elapsed > 1.2, "the sender was not paced"


def test_the_channel_token_never_reaches_the_logs(line_conn, ledger_factory, sim, caplog):
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    caplog.set_level(logging.DEBUG)
    sim.admin.configure(faults={"seed": 2, "error_500_rate": 0.3})
    hook = LineOAHook(line_oa_conn_id=line_conn)
    assert hook.settings.base_url == sim.base_url
    ledger = ledger_factory()
    run_chunk(line_conn, ledger, recipients(30))
    assert DEFAULT_TOKEN not in caplog.text
    assert DEFAULT_TOKEN not in json.dumps([dataclasses.asdict(row) for row in ledger.rows()])
    assert redact(f"Authorization: Bearer {DEFAULT_TOKEN}") == "Authorization: Bearer ***"


CHILD = """
import json, sys
from line_oa.delivery.chunk import deliver_chunk
from line_oa.delivery.results import RetryPolicy
from line_oa.integration.hooks import LineOAHook
from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook
args = json.loads(open(sys.argv[1]).read())
hook = LineOAHook(line_oa_conn_id=args["conn"])
ledger = DeliveryLog(sqlite_file_hook(args["db"]), campaign_id="kill_test", run_id="run-1")
people = [tuple(p) for p in args["people"]]
print("started", flush=True)
deliver_chunk(client_factory=lambda: hook.async_client(max_in_flight=64), ledger=ledger, chunk_index=0,
              recipients=people, messages=args["messages"], mode=args["mode"],
              policy=RetryPolicy(8, 0.01, 0.05), rate=args["rate"])
print("finished", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["push", "multicast"], ids=["push chunk", "multicast chunk"])
def test_sigkill_mid_chunk_then_rerun_delivers_everyone_exactly_once(line_conn, sim, tmp_path, mode):
    from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook

    latency, rate = (30, None) if mode == "push" else (200, 4)  # multicast: 8 batches paced over 2 s
    sim.admin.configure(faults={"seed": 11, "latency_ms": latency, "accepted_then_lost_rate": 0.05})
    people = recipients(4000)
    db = tmp_path / "kill.db"
    args = {
        "conn": line_conn,
        "db": str(db),
        "people": people,
        "messages": MESSAGES,
        "mode": mode,
        "rate": rate,
    }
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(args))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(args_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    for line in child.stdout:  # Airflow may log to stdout before the child says it started
        if line.strip() == b"started":
            break
    deadline = time.monotonic() + 60
    while sim.admin.stats()["deliveries"] < 800 and time.monotonic() < deadline:
        time.sleep(0.05)
    if mode == "multicast":  # requests leave every 250 ms and take 200 ms: land inside the next one
        time.sleep(0.12)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before_kill = sim.admin.stats()["deliveries"]
    assert 0 < before_kill < len(people), "the kill did not land mid-chunk"
    ledger = DeliveryLog(sqlite_file_hook(db), campaign_id="kill_test", run_id="run-1")
    states = Counter(row.status for row in ledger.rows())
    assert states["sending"] > 0, f"nothing was in flight when killed: {states}"

    sim.admin.configure(faults={"latency_ms": 0})
    run_chunk(line_conn, ledger, people, mode=mode)
    assert_log_matches_record(ledger, sim, expected_sent=len(people))
    assert sim.admin.delivery_counts(min_count=2) == {}
    ledger.close()


@pytest.mark.timeout(60)
def test_a_delivery_log_that_fails_to_write_fails_the_chunk_instead_of_hanging(
    line_conn, ledger_factory, sim
):
    ledger = ledger_factory()

    def broken_mark(rows):
        raise RuntimeError("disk full")

    ledger.mark_push = broken_mark
    with pytest.raises(RuntimeError, match="disk full"):
        run_chunk(line_conn, ledger, recipients(50))
    assert sim.admin.deliveries() == [], "nothing may leave before its row is marked 'sending'"


@pytest.mark.timeout(60)
def test_a_writer_that_cannot_even_open_a_transaction_fails_the_chunk_instead_of_hanging(
    line_conn, ledger_factory, sim
):
    ledger = ledger_factory()

    def no_transaction():
        raise RuntimeError("database is gone")

    ledger.transaction = no_transaction
    with pytest.raises(RuntimeError, match="database is gone"):
        run_chunk(line_conn, ledger, recipients(50))


@pytest.mark.timeout(60)
def test_a_multicast_batch_whose_mark_fails_is_never_sent_and_the_rerun_sends_it_once(
    line_conn, ledger_factory, sim
):
    """Each batch is marked just before it is sent; one whose mark fails never leaves and stops the chunk."""
    ledger = ledger_factory()
    people = recipients(2000)  # four multicasts of 500
    mark_new_batch = ledger.mark_new_batch

    def mark_failing_the_second(chunk_index, first_user, last_user, batch_id, expected):
        if first_user == user_id(500):
            raise RuntimeError("disk full")
        return mark_new_batch(chunk_index, first_user, last_user, batch_id, expected)

    ledger.mark_new_batch = mark_failing_the_second
    with pytest.raises(RuntimeError, match="disk full"):
        run_chunk(line_conn, ledger, people, mode="multicast")
    delivered = {d["to"] for d in sim.admin.deliveries()}
    assert user_id(0) in delivered
    assert not delivered & {uid for _, uid in people[500:1000]}, "the batch whose mark failed left"
    counts = Counter((row.status, row.reason) for row in ledger.rows())
    assert counts[("sent", None)] == len(delivered)
    assert counts[("sending", None)] == 0
    assert sum(counts.values()) == 2000

    ledger.mark_new_batch = mark_new_batch
    result = run_chunk(line_conn, ledger, people, mode="multicast")
    assert (result.sent, result.already_final) == (2000 - len(delivered), len(delivered))
    assert_log_matches_record(ledger, sim, expected_sent=2000)


@pytest.mark.timeout(60)
def test_multicast_outcomes_never_lag_far_behind_the_sends_on_a_slow_log(
    line_conn, ledger_factory, sim, monkeypatch
):
    """Marks go before outcomes, but no more than MULTICAST_MAX_UNSETTLED batches wait to be settled."""
    from line_oa.delivery import engine

    monkeypatch.setattr(engine, "MULTICAST_MAX_UNSETTLED", 2)
    ledger = ledger_factory()
    mark_batch, settle_batch = ledger.mark_new_batch, ledger.settle_batch
    marked, settled, lag = [0], [0], []

    def counting_mark(*args, **kwargs):
        lag.append(marked[0] - settled[0])  # batches marked before this one, not settled yet
        marked[0] += 1
        return mark_batch(*args, **kwargs)

    def slow_settle(*args, **kwargs):
        time.sleep(0.02)  # a log slower than the sends
        settled[0] += 1
        return settle_batch(*args, **kwargs)

    monkeypatch.setattr(ledger, "mark_new_batch", counting_mark)
    monkeypatch.setattr(ledger, "settle_batch", slow_settle)
    result = run_chunk(line_conn, ledger, recipients(20_000), mode="multicast", max_in_flight=4)
    assert (result.sent, marked[0], settled[0]) == (20_000, 40, 40)
    # unsettled (2) + in flight (4), and the batch being marked
    assert max(lag) <= 2 + 4 + 1, lag
    assert_log_matches_record(ledger, sim, expected_sent=20_000)


@pytest.mark.parametrize("mode", ["push", "multicast"])
def test_a_chunk_takes_one_rate_permit_per_request_and_none_after_its_last(
    line_conn, ledger_factory, sim, monkeypatch, mode
):
    """Senders that come back for more while the last requests leave must not each wait for a permit
    they cannot use: with 32 in flight at 200/s, that waiting was as long as the chunk's sends."""
    from line_oa.delivery import ratelimit

    granted = Counter()
    acquire = ratelimit.TokenBucket.acquire

    async def counting(self, wanted=None):
        taken = await acquire(self, wanted)
        granted[taken] += 1
        return taken

    monkeypatch.setattr(ratelimit.TokenBucket, "acquire", counting)
    people = recipients(60 if mode == "push" else 30 * 500)
    result = run_chunk(line_conn, ledger_factory(), people, mode=mode, rate=200)
    assert result.sent == len(people)
    assert result.requests == (60 if mode == "push" else 30)
    assert granted[True] == result.requests, "permits taken beyond the requests made"
