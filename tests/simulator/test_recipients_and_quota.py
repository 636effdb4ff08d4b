"""Blocked and unknown recipients, and the monthly quota that only deliverable recipients consume."""

from __future__ import annotations

import pytest

from line_simulator.state import fraction_of

from .simulator_helpers import user_id

FAILED = {"message": "Failed to send messages"}
MONTHLY_LIMIT = {"message": "You have reached your monthly limit."}


def limit_quota(sim, value: int) -> None:
    sim.admin.configure(channels=[{"name": "default", "quota": {"type": "limited", "value": value}}])


def test_a_blocked_user_gets_200_is_recorded_undelivered_and_not_billed(line, sim):
    sim.admin.configure(recipients={"blocked": [user_id(1)]})

    response = line.push(user_id(1))

    assert response.status_code == 200
    assert "sentMessages" in response.json()
    (row,) = sim.admin.deliveries()
    assert (row["to"], row["delivered"]) == (user_id(1), False)
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 0}


def test_push_to_an_unknown_user_is_400_failed_to_send(line, sim):
    sim.admin.configure(recipients={"unknown": [user_id(1)]})

    response = line.push(user_id(1))

    assert (response.status_code, response.json()) == (400, FAILED)
    assert sim.admin.deliveries() == []


def test_multicast_skips_unknown_users_by_default(line, sim):
    sim.admin.configure(recipients={"unknown": [user_id(2)], "blocked": [user_id(3)]})

    response = line.multicast([user_id(1), user_id(2), user_id(3)])

    assert (response.status_code, response.json()) == (200, {})
    rows = {row["to"]: (row["delivered"], row["unknown"]) for row in sim.admin.deliveries()}
    assert rows == {user_id(1): (True, False), user_id(2): (False, True), user_id(3): (False, False)}
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 1}


def test_multicast_can_be_configured_to_reject_a_request_with_an_unknown_user(line, sim):
    sim.admin.configure(recipients={"unknown": [user_id(2)], "multicast_unknown": "reject"})

    response = line.multicast([user_id(1), user_id(2)])

    assert (response.status_code, response.json()) == (400, FAILED)
    assert sim.admin.deliveries() == []


def test_fractions_pick_the_same_users_every_time(line, sim):
    sim.admin.configure(recipients={"blocked_fraction": 0.3, "unknown_fraction": 0.2})
    users = [user_id(n) for n in range(300)]
    expected_unknown = {u for u in users if fraction_of(u, "unknown") < 0.2}
    expected_blocked = {u for u in users if fraction_of(u, "blocked") < 0.3} - expected_unknown

    assert line.multicast(users[:250]).status_code == 200
    assert line.multicast(users[250:]).status_code == 200

    rows = sim.admin.deliveries()
    assert {row["to"] for row in rows} == set(users), "an accepted multicast records every recipient"
    assert {row["to"] for row in rows if row["unknown"]} == expected_unknown
    assert {row["to"] for row in rows if not row["delivered"]} == expected_blocked | expected_unknown
    assert 40 < len(expected_unknown) < 80
    assert 50 < len(expected_blocked) < 100


def test_a_duplicate_id_in_one_multicast_is_delivered_and_billed_once(line, sim):
    assert line.multicast([user_id(1), user_id(1)]).status_code == 200

    assert sim.admin.delivery_counts() == {user_id(1): 1}
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 1}


def test_quota_counts_recipients_not_messages(line, sim):
    limit_quota(sim, 10)
    line.push(user_id(1), [{"type": "text", "text": "a"}] * 5)
    line.multicast([user_id(2), user_id(3)])

    assert line.get("/v2/bot/message/quota").json() == {"type": "limited", "value": 10}
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 3}
    assert sim.admin.stats()["billed"] == 3


@pytest.mark.parametrize(
    ("recipients", "status"),
    [
        pytest.param(3, 200, id="a multicast that fits the remaining quota exactly is sent"),
        pytest.param(4, 429, id="a multicast one over the remaining quota sends nothing"),
    ],
)
def test_multicast_is_all_or_nothing_against_the_quota(line, sim, recipients, status):
    limit_quota(sim, 5)
    line.multicast([user_id(100), user_id(101)])

    response = line.multicast([user_id(n) for n in range(recipients)])

    assert response.status_code == status
    if status == 429:
        assert response.json() == MONTHLY_LIMIT
        assert len(sim.admin.deliveries()) == 2
        assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 2}


def test_blocked_users_do_not_count_against_the_quota(line, sim):
    limit_quota(sim, 1)
    sim.admin.configure(recipients={"blocked": [user_id(2), user_id(3)]})

    assert line.multicast([user_id(1), user_id(2), user_id(3)]).status_code == 200
    assert line.push(user_id(4)).json() == MONTHLY_LIMIT


def test_raising_the_quota_or_starting_a_new_month_lets_sends_through_again(line, sim):
    limit_quota(sim, 1)
    line.push(user_id(1))
    assert line.push(user_id(2)).status_code == 429

    limit_quota(sim, 2)
    assert line.push(user_id(2)).status_code == 200
    assert line.push(user_id(3)).status_code == 429

    sim.admin.next_month()
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 0}
    assert line.push(user_id(3)).status_code == 200
    assert len(sim.admin.deliveries()) == 3
