"""A 409 without ``X-Line-Accepted-Request-Id``, and monthly quota reserved by another delivery in progress."""

from __future__ import annotations

import random

import pytest
import requests

from line_simulator.cli import config_from_args, parse_args

from .simulator_helpers import user_id

ACCEPTED = "The retry key is already accepted"
MONTHLY_LIMIT = {"message": "You have reached your monthly limit."}
ACCEPTED_ID = "X-Line-Accepted-Request-Id"


def limit_quota(sim, value: int, **extra: int) -> None:
    sim.admin.configure(channels=[{"name": "default", "quota": {"type": "limited", "value": value, **extra}}])


def consumption(line) -> int:
    return line.get("/v2/bot/message/quota/consumption").json()["totalUsage"]


# --- 409 without X-Line-Accepted-Request-Id --------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "has_header"),
    [
        pytest.param(0, True, id="rate 0: the 409 names the accepted request"),
        pytest.param(1.0, False, id="rate 1: the 409 leaves the accepted request id out"),
    ],
)
def test_a_push_conflict_with_and_without_the_accepted_request_id(line, sim, retry_key, rate, has_header):
    sim.admin.configure(faults={"conflict_without_accepted_id_rate": rate})
    first = line.push(user_id(1), retry_key=retry_key)

    second = line.push(user_id(1), retry_key=retry_key)

    assert (first.status_code, second.status_code) == (200, 409)
    assert (ACCEPTED_ID in second.headers) is has_header
    if has_header:
        assert second.headers[ACCEPTED_ID] == first.headers["X-Line-Request-Id"]
    assert second.json() == {"message": ACCEPTED, "sentMessages": first.json()["sentMessages"]}
    assert second.headers["X-Line-Request-Id"] != first.headers["X-Line-Request-Id"]
    assert sim.admin.stats()["faults"].get("conflict_without_accepted_id", 0) == (0 if has_header else 1)
    assert sim.admin.stats()["retry_key_conflicts"] == 1
    assert len(sim.admin.deliveries()) == 1


@pytest.mark.parametrize(
    ("rate", "has_header"),
    [
        pytest.param(0, True, id="rate 0: the multicast 409 names the accepted request"),
        pytest.param(1.0, False, id="rate 1: the multicast 409 leaves the accepted request id out"),
    ],
)
def test_a_multicast_conflict_with_and_without_the_accepted_request_id(
    line, sim, retry_key, rate, has_header
):
    sim.admin.configure(faults={"conflict_without_accepted_id_rate": rate})
    first = line.multicast([user_id(1), user_id(2)], retry_key=retry_key)

    second = line.multicast([user_id(1), user_id(2)], retry_key=retry_key)

    assert second.status_code == 409
    assert second.json() == {"message": ACCEPTED}
    assert second.headers.get(ACCEPTED_ID) == (first.headers["X-Line-Request-Id"] if has_header else None)
    assert len(sim.admin.deliveries()) == 2


def test_the_missing_header_only_hits_fault_endpoints(line, sim, retry_key):
    sim.admin.configure(faults={"conflict_without_accepted_id_rate": 1.0, "fault_endpoints": ["multicast"]})
    first = line.push(user_id(1), retry_key=retry_key)

    second = line.push(user_id(1), retry_key=retry_key)

    assert second.headers[ACCEPTED_ID] == first.headers["X-Line-Request-Id"]
    assert "conflict_without_accepted_id" not in sim.admin.stats()["faults"]


def conflict_run(sim, line, retry_key: str, faults: dict) -> list[tuple[int, bool]]:
    """Reset with ``faults``, push 40 times with one key; return (status, has the header) per answer."""
    sim.admin.reset(config={"faults": faults})
    answers = [line.push(user_id(1), retry_key=retry_key) for _ in range(40)]
    return [(answer.status_code, ACCEPTED_ID in answer.headers) for answer in answers]


def test_the_same_seed_drops_the_same_headers(line, sim, retry_key):
    faults = {"seed": 11, "conflict_without_accepted_id_rate": 0.5}

    first, second = conflict_run(sim, line, retry_key, faults), conflict_run(sim, line, retry_key, faults)

    assert first == second
    assert first[0] == (200, False)
    assert {(409, True), (409, False)} <= set(first[1:])


@pytest.mark.parametrize(
    "rate",
    [
        pytest.param(0, id="rate 0 draws nothing: older seeded sequences are unchanged"),
        pytest.param(0.5, id="rate 0.5 draws once per 409, after the 500 draw"),
    ],
)
def test_the_header_draw_replays_from_the_seed_in_a_fixed_order(line, sim, retry_key, rate):
    seed = 5
    answers = conflict_run(
        sim, line, retry_key, {"seed": seed, "error_500_rate": 0.5, "conflict_without_accepted_id_rate": rate}
    )

    rng, accepted, expected = random.Random(seed), False, []
    for _ in range(40):
        if rng.random() < 0.5:
            expected.append((500, False))
        elif not accepted:
            accepted = True
            expected.append((200, False))
        else:
            expected.append((409, not (rate > 0 and rng.random() < rate)))
    assert answers == expected
    assert {500, 409} <= {status for status, _ in answers}


def test_the_rate_is_a_command_line_option():
    config = config_from_args(parse_args(["--conflict-without-accepted-id-rate", "0.25"]))

    assert config["faults"]["conflict_without_accepted_id_rate"] == 0.25


# --- monthly quota reserved by another delivery in progress ---------------------------------------


@pytest.mark.parametrize(
    ("recipients", "status"),
    [
        pytest.param(2, 200, id="a send that fits beside the reservation is accepted"),
        pytest.param(3, 429, id="a send that fits the quota but not quota minus the reservation is refused"),
    ],
)
def test_a_reservation_refuses_a_send_that_only_fits_without_it(line, sim, recipients, status):
    limit_quota(sim, 10)
    line.multicast([user_id(100 + n) for n in range(3)])
    sim.admin.reserve(5)

    response = line.multicast([user_id(n) for n in range(recipients)])

    assert response.status_code == status
    if status == 429:
        assert response.json() == MONTHLY_LIMIT
        assert consumption(line) == 3
        assert len(sim.admin.deliveries()) == 3
        stats = sim.admin.stats()
        assert (stats["quota_exceeded"], stats["quota_exceeded_by_reservation"]) == (1, 1)
    else:
        assert consumption(line) == 5


def test_a_send_over_the_quota_itself_is_not_blamed_on_the_reservation(line, sim):
    limit_quota(sim, 2)
    sim.admin.reserve(1)

    assert line.multicast([user_id(n) for n in range(3)]).json() == MONTHLY_LIMIT

    stats = sim.admin.stats()
    assert (stats["quota_exceeded"], stats["quota_exceeded_by_reservation"]) == (1, 0)


def test_quota_and_consumption_endpoints_do_not_show_the_reservation(line, sim):
    limit_quota(sim, 10)
    line.push(user_id(1))

    answer = sim.admin.reserve(7)

    assert answer == {"channel": "default", "reserved": 7, "consumption": 1}
    assert line.get("/v2/bot/message/quota").json() == {"type": "limited", "value": 10}
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 1}
    stats = sim.admin.stats()
    assert (stats["reserved"], stats["consumption"], stats["billed"]) == ({"default": 7}, {"default": 1}, 1)


def test_releasing_the_reservation_lets_the_same_retry_key_through(line, sim, retry_key):
    limit_quota(sim, 3)
    sim.admin.reserve(3)

    refused = line.push(user_id(1), retry_key=retry_key)
    assert (refused.status_code, refused.json()) == (429, MONTHLY_LIMIT)
    assert (consumption(line), sim.admin.deliveries()) == (0, [])

    sim.admin.reserve(0)

    accepted = line.push(user_id(1), retry_key=retry_key)
    assert accepted.status_code == 200
    assert line.push(user_id(1), retry_key=retry_key).status_code == 409
    (row,) = sim.admin.deliveries()
    assert (row["retry_key"], row["request_id"]) == (retry_key, accepted.headers["X-Line-Request-Id"])
    assert consumption(line) == 1


def test_a_reservation_holds_one_channel_only(line, sim):
    sim.admin.configure(
        channels=[
            {"name": "default", "quota": {"type": "limited", "value": 5}},
            {"name": "shop", "token": "shop-token", "quota": {"type": "limited", "value": 5}},
        ]
    )
    shop = type(line)(sim.base_url, "shop-token")

    sim.admin.reserve(5, channel="shop")

    assert shop.push(user_id(1)).json() == MONTHLY_LIMIT
    assert line.push(user_id(1)).status_code == 200
    assert sim.admin.stats()["reserved"] == {"default": 0, "shop": 5}


def test_a_configured_reservation_applies_from_the_start_and_survives_unrelated_changes(line, sim):
    limit_quota(sim, 10, reserved=9)

    assert line.multicast([user_id(1), user_id(2)]).json() == MONTHLY_LIMIT
    assert line.push(user_id(1)).status_code == 200
    assert sim.admin.stats()["reserved"] == {"default": 9}
    assert sim.admin.config()["channels"][0]["quota"] == {"type": "limited", "value": 10, "reserved": 9}

    sim.admin.reserve(0)
    sim.admin.configure(faults={"latency_ms": 1})
    assert sim.admin.stats()["reserved"] == {"default": 0}, "a run-time release outlives other config changes"

    limit_quota(sim, 10, reserved=4)
    assert sim.admin.stats()["reserved"] == {"default": 4}, "a changed configured value takes over"

    sim.admin.configure(channels=[{"name": "default", "quota": {"type": "none", "reserved": 0}}])
    assert sim.admin.stats()["reserved"] == {"default": 0}, "a channel without a quota holds no reservation"


def test_reset_releases_the_reservation_and_next_month_keeps_it(line, sim):
    limit_quota(sim, 4)
    line.push(user_id(1))
    sim.admin.reserve(3)

    sim.admin.next_month()
    assert sim.admin.stats()["reserved"] == {"default": 3}
    assert line.multicast([user_id(1), user_id(2)]).json() == MONTHLY_LIMIT
    assert line.push(user_id(2)).status_code == 200

    sim.admin.reset()
    assert sim.admin.stats()["reserved"] == {"default": 0}
    assert line.multicast([user_id(n) for n in range(4)]).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        pytest.param({"channel": "nope", "messages": 1}, 404, "unknown channel", id="an unknown channel is 404"),
        pytest.param({"messages": -1}, 400, "messages", id="a negative count is 400"),
        pytest.param({"messages": 1.5}, 400, "messages", id="a fractional count is 400"),
        pytest.param({"messages": "3"}, 400, "messages", id="a string count is 400"),
        pytest.param({"messages": True}, 400, "messages", id="a boolean count is 400"),
        pytest.param({"channel": "default"}, 400, "messages", id="a missing count is 400"),
        pytest.param({"channel": "open", "messages": 1}, 400, "no monthly quota", id="a channel without a quota is 400"),
    ],
)  # fmt: skip
def test_a_bad_reservation_is_refused_and_changes_nothing(line, sim, body, status, problem):
    sim.admin.configure(channels=[{"name": "open", "token": "open-token"}])
    limit_quota(sim, 10)
    sim.admin.reserve(2)

    response = requests.post(f"{sim.base_url}/_sim/reserve", json=body, timeout=5)

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert problem in response.json()["message"]
    assert sim.admin.stats()["reserved"] == {"default": 2, "open": 0}


def test_the_python_api_raises_on_a_refused_reservation(sim):
    with pytest.raises(RuntimeError, match="404"):
        sim.admin.reserve(1, channel="nope")


@pytest.mark.parametrize(
    ("partial", "problem"),
    [
        pytest.param({"faults": {"conflict_without_accepted_id_rate": 2}}, "faults.conflict_without_accepted_id_rate", id="a conflict rate above 1 is refused"),
        pytest.param({"faults": {"conflict_without_accepted_id_rate": "x"}}, "faults.conflict_without_accepted_id_rate", id="a conflict rate that is not a number is refused"),
        pytest.param({"channels": [{"name": "default", "quota": {"type": "limited", "value": 5, "reserved": -1}}]}, "channels[0].quota.reserved", id="a negative reservation is refused"),
        pytest.param({"channels": [{"name": "default", "quota": {"type": "limited", "value": 5, "reserved": 1.5}}]}, "channels[0].quota.reserved", id="a fractional reservation is refused"),
        pytest.param({"channels": [{"name": "default", "quota": {"type": "limited", "value": 5, "reserved": True}}]}, "channels[0].quota.reserved", id="a boolean reservation is refused"),
        pytest.param({"channels": [{"name": "default", "quota": {"type": "none", "reserved": 3}}]}, "channels[0].quota.reserved", id="a reservation without a limited quota is refused"),
        pytest.param({"channels": [{"name": "default", "quota": {"type": "limited", "value": 5, "reserve": 3}}]}, "reserve", id="a misspelt quota key is refused"),
    ],
)  # fmt: skip
def test_a_bad_new_setting_is_refused_naming_the_key(sim, partial, problem):
    before = sim.admin.config()

    response = requests.post(f"{sim.base_url}/_sim/config", json=partial, timeout=5)

    assert response.status_code == 400
    assert problem in response.json()["message"]
    assert sim.admin.config() == before
