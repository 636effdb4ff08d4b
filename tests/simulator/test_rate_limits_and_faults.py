"""Token-bucket rate limits and every injected fault mode (rates of 1.0, so each test is deterministic)."""

from __future__ import annotations

import time

import pytest
import requests

from .simulator_helpers import text, user_id

RATE_LIMITED = {"message": "The API rate limit has been exceeded. Try again later."}


def test_a_low_push_rate_limit_answers_429_to_the_excess(line, sim):
    sim.admin.configure(channels=[{"name": "default", "rate_limits": {"push": 5}}])

    answers = [line.push(user_id(n)) for n in range(20)]

    statuses = [answer.status_code for answer in answers]
    accepted = statuses.count(200)
    assert statuses[:5] == [200] * 5
    assert 5 <= accepted <= 10
    assert statuses.count(429) == 20 - accepted
    assert all(answer.json() == RATE_LIMITED for answer in answers if answer.status_code == 429)
    assert sim.admin.stats()["rate_limited"] == 20 - accepted
    assert len(sim.admin.deliveries()) == accepted


def test_the_bucket_refills_over_time(line, sim):
    sim.admin.configure(channels=[{"name": "default", "rate_limits": {"multicast": 5}}])
    statuses = [line.multicast([user_id(n)]).status_code for n in range(10)]
    assert 429 in statuses

    time.sleep(0.5)

    assert line.multicast([user_id(50)]).status_code == 200


def test_each_endpoint_has_its_own_bucket(line, sim):
    sim.admin.configure(channels=[{"name": "default", "rate_limits": {"push": 1}}])
    line.push(user_id(1))
    assert line.push(user_id(2)).status_code == 429

    assert line.multicast([user_id(3)]).status_code == 200
    assert line.get("/v2/bot/message/quota").status_code == 200


def test_a_zero_rate_limit_means_unlimited(line, sim):
    sim.admin.configure(channels=[{"name": "default", "rate_limits": {"multicast": 0}}])

    assert {line.multicast([user_id(n)]).status_code for n in range(300)} == {200}


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        pytest.param("error_500_rate", 500, "An error occurred in the server. Try again later.", id="a 500 fault answers 500"),
        pytest.param("error_503_rate", 503, "The service is temporarily unavailable. Try again later.", id="a 503 fault answers 503"),
        pytest.param("rate_limit_429_rate", 429, RATE_LIMITED["message"], id="a spurious 429 fault answers the rate-limit 429"),
    ],
)  # fmt: skip
def test_an_error_fault_answers_without_sending(line, sim, retry_key, fault, status, message):
    sim.admin.configure(faults={fault: 1.0})

    response = line.push(user_id(1), retry_key=retry_key)

    assert (response.status_code, response.json()) == (status, {"message": message})
    assert "X-Line-Request-Id" in response.headers
    assert sim.admin.deliveries() == []
    assert sim.admin.stats()["faults"] == {fault.removesuffix("_rate"): 1}


def test_a_reset_fault_drops_the_connection_before_anything_happens(line, sim, retry_key):
    sim.admin.configure(faults={"reset_rate": 1.0})

    with pytest.raises(requests.ConnectionError):
        line.push(user_id(1), retry_key=retry_key)

    assert sim.admin.deliveries() == []
    sim.admin.configure(faults={"reset_rate": 0})
    assert line.push(user_id(1), retry_key=retry_key).status_code == 200


def test_an_accepted_then_lost_request_is_recorded_and_its_retry_gets_409(line, sim, retry_key):
    sim.admin.configure(faults={"accepted_then_lost_rate": 1.0})

    with pytest.raises(requests.ConnectionError):
        line.push(user_id(1), retry_key=retry_key)

    (row,) = sim.admin.deliveries()
    assert (row["to"], row["retry_key"], row["delivered"]) == (user_id(1), retry_key, True)
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 1}
    assert sim.admin.stats()["requests"]["push"] == {"dropped": 1}
    sim.admin.configure(faults={"accepted_then_lost_rate": 0})
    retry = line.push(user_id(1), retry_key=retry_key)
    assert retry.status_code == 409
    assert retry.headers["X-Line-Accepted-Request-Id"] == row["request_id"]
    assert len(retry.json()["sentMessages"]) == 1


def test_a_hanging_request_outlasts_the_client_timeout_and_sends_nothing(line, sim):
    sim.admin.configure(faults={"hang_rate": 1.0, "hang_seconds": 1.5})

    with pytest.raises(requests.Timeout):
        line.push(user_id(1), timeout=0.3)

    assert sim.admin.stats()["faults"] == {"hang": 1}
    time.sleep(1.5)
    assert sim.admin.deliveries() == []


def test_a_hanging_request_can_be_processed_after_the_hang(line, sim):
    sim.admin.configure(faults={"hang_rate": 1.0, "hang_seconds": 0.5, "hang_then": "process"})

    started = time.monotonic()
    response = line.push(user_id(1))

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5
    assert len(sim.admin.deliveries()) == 1


def test_latency_is_added_to_send_endpoints_only_by_default(line, sim):
    sim.admin.configure(faults={"latency_ms": 500})

    started = time.monotonic()
    line.push(user_id(1))
    push_seconds = time.monotonic() - started
    started = time.monotonic()
    line.get("/v2/bot/message/quota")
    quota_seconds = time.monotonic() - started

    assert push_seconds >= 0.5
    assert quota_seconds < 0.4


def test_fault_endpoints_choose_where_faults_apply(line, sim):
    sim.admin.configure(faults={"error_503_rate": 1.0, "fault_endpoints": ["quota"]})

    assert line.push(user_id(1)).status_code == 200
    assert line.get("/v2/bot/message/quota").status_code == 503


def test_the_same_seed_gives_the_same_faults(line, sim):
    def run() -> list[int]:
        sim.admin.reset(config={"faults": {"seed": 42, "error_500_rate": 0.3, "error_503_rate": 0.3}})
        return [line.push(user_id(n)).status_code for n in range(40)]

    first, second = run(), run()

    assert first == second
    assert {200, 500, 503} <= set(first)


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param({"outage_seconds": 120}, id="outage seconds last two simulated minutes"),
        pytest.param({"outage": {"status": 503, "until_simulated_time": "2030-01-01T00:02:00Z"}}, id="an outage until a simulated time ends then"),
    ],
)  # fmt: skip
def test_a_scheduled_outage_answers_503_until_the_simulated_clock_passes_its_end(line, sim, outage):
    if "outage" in outage:
        sim.admin.set_clock("2030-01-01T00:00:00Z")
    sim.admin.configure(faults=outage)

    assert line.push(user_id(1)).status_code == 503
    assert line.multicast([user_id(2)]).status_code == 503
    assert line.get("/v2/bot/message/quota").status_code == 200
    sim.admin.advance_clock(119)
    assert line.push(user_id(1)).status_code == 503
    sim.admin.advance_clock(2)
    assert line.push(user_id(1)).status_code == 200
    assert sim.admin.stats()["faults"]["outage"] == 3


def test_faults_never_hide_a_wrong_token(sim):
    sim.admin.configure(faults={"error_500_rate": 1.0})
    body = {"to": user_id(1), "messages": [text()]}

    response = requests.post(
        f"{sim.base_url}/v2/bot/message/push", json=body, headers={"Authorization": "Bearer x"}, timeout=5
    )

    assert response.status_code == 401


def test_a_request_abandoned_before_it_was_read_counts_as_abandoned_not_as_a_simulator_error(line, sim):
    sim.admin.configure(faults={"latency_ms": 400})

    with pytest.raises(requests.Timeout):
        line.multicast([user_id(n) for n in range(300)], timeout=0.05)
    deadline = time.monotonic() + 10  # the handler wakes from the latency and finds the client gone
    while not sim.admin.stats()["requests"] and time.monotonic() < deadline:
        time.sleep(0.1)

    stats = sim.admin.stats()
    assert stats["requests"] == {"multicast": {"abandoned": 1}}
    assert stats["internal_errors"] == 0
    assert sim.admin.deliveries() == []


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"latency_ms": 400}, id="in an injected latency"),
        pytest.param({"latency_ms": 400, "error_500_rate": 1.0}, id="before an injected 500"),
        pytest.param(
            {"hang_rate": 1.0, "hang_seconds": 0.4, "hang_then": "process"}, id="in a hang that then sends"
        ),
    ],
)
def test_a_request_still_in_flight_at_a_reset_never_lands_in_the_record_after_it(line, sim, faults):
    """A client's abandoned request used to show up in the next test's stats (a 500 no client had seen)."""
    sim.admin.configure(faults=faults)
    with pytest.raises(requests.Timeout):
        line.multicast([user_id(n) for n in range(300)], timeout=0.05)

    sim.admin.reset(keep_config=False)
    sim.admin.configure(faults={"error_503_rate": 1.0})
    time.sleep(0.8)  # past the old request's latency or hang

    stats = sim.admin.stats()
    assert stats["requests"] == {}
    assert stats["internal_errors"] == 0
    assert sim.admin.deliveries() == []
    assert line.multicast([user_id(1)]).status_code == 503, "the simulator serves on after the reset"
