"""Retry keys: 409 with the original answer, 24 h of simulated memory, and what does not consume a key."""

from __future__ import annotations

import threading
import uuid

import pytest

from .simulator_helpers import text, user_id


def test_a_repeated_push_key_gets_409_with_the_original_request_id_and_sent_messages(line, sim, retry_key):
    first = line.push(user_id(1), [text("a"), text("b")], retry_key=retry_key)
    second = line.push(user_id(1), [text("a"), text("b")], retry_key=retry_key)

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json() == {
        "message": "The retry key is already accepted",
        "sentMessages": first.json()["sentMessages"],
    }
    assert second.headers["X-Line-Accepted-Request-Id"] == first.headers["X-Line-Request-Id"]
    assert second.headers["X-Line-Request-Id"] != first.headers["X-Line-Request-Id"]
    assert len(sim.admin.deliveries()) == 1


def test_a_repeated_multicast_key_gets_409_with_only_a_message(line, sim, retry_key):
    first = line.multicast([user_id(1), user_id(2)], retry_key=retry_key)
    second = line.multicast([user_id(1), user_id(2)], retry_key=retry_key)

    assert second.status_code == 409
    assert second.json() == {"message": "The retry key is already accepted"}
    assert second.headers["X-Line-Accepted-Request-Id"] == first.headers["X-Line-Request-Id"]
    assert len(sim.admin.deliveries()) == 2


def test_the_delivery_record_carries_the_retry_key_and_request_id(line, sim, retry_key):
    response = line.push(user_id(7), retry_key=retry_key)

    (row,) = sim.admin.deliveries()
    assert row["retry_key"] == retry_key
    assert row["request_id"] == response.headers["X-Line-Request-Id"]


@pytest.mark.parametrize(
    ("advance_hours", "status"),
    [
        pytest.param(23.9, 409, id="a key is still remembered after 23.9 simulated hours"),
        pytest.param(24, 200, id="a key is forgotten after 24 simulated hours"),
    ],
)
def test_a_key_is_remembered_for_24_hours_of_simulated_time(line, sim, retry_key, advance_hours, status):
    line.push(user_id(1), retry_key=retry_key)
    sim.admin.advance_clock(advance_hours * 3600)

    assert line.push(user_id(1), retry_key=retry_key).status_code == status


def test_setting_the_clock_also_expires_keys(line, sim, retry_key):
    sim.admin.set_clock("2026-01-01T00:00:00Z")
    line.push(user_id(1), retry_key=retry_key)
    sim.admin.set_clock("2026-01-02T00:00:01+00:00")

    assert line.push(user_id(1), retry_key=retry_key).status_code == 200
    assert len(sim.admin.deliveries()) == 2


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("not-a-uuid", id="a word is not a retry key"),
        pytest.param("123e4567e89b12d3a456426614174000", id="a uuid without dashes is not a retry key"),
        pytest.param("123e4567-e89b-12d3-a456-42661417400g", id="a non-hex character is not a retry key"),
        pytest.param("", id="an empty key is not a retry key"),
    ],
)
def test_a_malformed_retry_key_is_400_and_sends_nothing(line, sim, key):
    response = line.push(user_id(1), retry_key=key)

    assert response.status_code == 400
    assert response.json() == {"message": "The retry key is invalid"}
    assert sim.admin.deliveries() == []


def test_a_retry_key_on_a_validate_endpoint_is_400(line, retry_key):
    response = line.post("/v2/bot/message/validate/push", {"messages": [text()]}, retry_key=retry_key)

    assert response.status_code == 400


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param("invalid body", id="a 400 does not consume the key"),
        pytest.param("quota", id="a monthly-limit 429 does not consume the key"),
        pytest.param("server error", id="a 500 does not consume the key"),
    ],
)
def test_a_failed_request_does_not_consume_its_key(line, sim, retry_key, failure):
    if failure == "invalid body":
        assert line.push(user_id(1), [text("")], retry_key=retry_key).status_code == 400
    elif failure == "quota":
        sim.admin.configure(channels=[{"name": "default", "quota": {"type": "limited", "value": 0}}])
        assert line.push(user_id(1), retry_key=retry_key).status_code == 429
        sim.admin.configure(channels=[{"name": "default", "quota": {"type": "none"}}])
    else:
        sim.admin.configure(faults={"error_500_rate": 1})
        assert line.push(user_id(1), retry_key=retry_key).status_code == 500
        sim.admin.configure(faults={"error_500_rate": 0})

    assert line.push(user_id(1), retry_key=retry_key).status_code == 200


def test_keys_are_remembered_per_channel(line, sim, retry_key):
    sim.admin.configure(channels=[{"name": "shop", "token": "shop-token"}])
    shop = type(line)(sim.base_url, "shop-token")

    assert line.push(user_id(1), retry_key=retry_key).status_code == 200
    assert shop.push(user_id(1), retry_key=retry_key).status_code == 200


def test_concurrent_requests_with_one_key_deliver_once(line, sim, retry_key):
    sim.admin.configure(faults={"latency_ms": 200})
    statuses: list[int] = []

    def send() -> None:
        client = type(line)(sim.base_url)
        statuses.append(client.push(user_id(1), retry_key=retry_key).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [409] * 7
    assert sim.admin.delivery_counts() == {user_id(1): 1}


def test_a_key_in_uppercase_is_the_same_key(line, retry_key):
    line.push(user_id(1), retry_key=retry_key)

    assert line.push(user_id(1), retry_key=retry_key.upper()).status_code == 409


def test_requests_without_a_key_are_never_deduplicated(line, sim):
    line.push(user_id(1))
    line.push(user_id(1))

    assert sim.admin.delivery_counts(min_count=2) == {user_id(1): 2}
    assert uuid.UUID(sim.admin.deliveries()[0]["request_id"])


def test_the_memory_of_first_attempts_stays_bounded_by_the_keys_not_accepted():
    import datetime as dt

    from line_simulator.state import ChannelState

    state = ChannelState("default")
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for n in range(30_000):  # a long run: every key accepted at its first attempt
        key = f"{n:032x}"
        state.first_attempt(key, start)
        state.accept_key(key, start, "request", None)
    assert (len(state.first_attempts), len(state.retry_keys)) == (0, 30_000)

    later = start + dt.timedelta(hours=25)
    for n in range(25_000):  # refused attempts a day later: the old ones are forgotten on the way
        state.first_attempt(f"x{n}", start if n < 12_000 else later)
    assert len(state.first_attempts) < 25_000
