"""The ``/_sim/`` admin endpoints: stats, the streamed delivery record, counts, config, reset, clock."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from .simulator_helpers import text, user_id


def test_stats_count_requests_by_endpoint_and_status_and_deliveries(line, sim):
    sim.admin.configure(recipients={"blocked": [user_id(2)]})
    line.push(user_id(1))
    line.multicast([user_id(2), user_id(3)])
    line.push("bad")
    line.get("/v2/bot/message/quota")

    stats = sim.admin.stats()

    assert stats["requests"] == {"push": {"200": 1, "400": 1}, "multicast": {"200": 1}, "quota": {"200": 1}}
    assert (stats["deliveries"], stats["delivered"], stats["blocked"], stats["billed"]) == (3, 2, 1, 2)
    assert stats["consumption"] == {"default": 2}


def test_deliveries_are_json_lines_one_per_recipient(line, sim, retry_key):
    line.multicast([user_id(1), user_id(2)], [text("hi")], retry_key=retry_key)

    response = requests.get(f"{sim.base_url}/_sim/deliveries", timeout=5)

    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    rows = sim.admin.deliveries()
    assert [row["to"] for row in rows] == [user_id(1), user_id(2)]
    assert set(rows[0]) == {
        "channel", "endpoint", "to", "delivered", "unknown", "retry_key", "request_id", "time", "messages_hash",
        "unit",
    }  # fmt: skip
    assert rows[0]["unit"] is None  # no customAggregationUnits in the request
    assert rows[0]["endpoint"] == "multicast"
    assert rows[0]["messages_hash"] == rows[1]["messages_hash"]
    assert sim.admin.messages(rows[0]["messages_hash"]) == [text("hi")]
    assert dt.datetime.fromisoformat(rows[0]["time"]).tzinfo is not None


def test_deliveries_stream_many_rows(line, sim):
    for batch in range(20):
        line.multicast([user_id(batch * 500 + n) for n in range(500)])

    count = sum(1 for _ in sim.admin.iter_deliveries())

    assert count == 10_000


def test_delivery_counts_find_recipients_sent_more_than_once(line, sim):
    line.push(user_id(1))
    line.push(user_id(1))
    line.push(user_id(2))

    assert sim.admin.delivery_counts(min_count=2) == {user_id(1): 2}
    assert sim.admin.delivery_counts() == {user_id(1): 2, user_id(2): 1}


def test_reset_forgets_the_record_keys_and_consumption_but_keeps_the_config(line, sim, retry_key):
    sim.admin.configure(recipients={"blocked": [user_id(1)]})
    line.push(user_id(2), retry_key=retry_key)

    sim.admin.reset()

    assert sim.admin.deliveries() == []
    assert sim.admin.stats()["requests_total"] == 0
    assert sim.admin.config()["recipients"]["blocked"] == [user_id(1)]
    assert line.push(user_id(2), retry_key=retry_key).status_code == 200


def test_reset_without_keeping_the_config_returns_to_the_startup_config(sim):
    sim.admin.configure(faults={"error_500_rate": 0.5})

    config = sim.admin.reset(keep_config=False)

    assert config["faults"]["error_500_rate"] == 0
    assert sim.admin.config() == config


def test_configure_deep_merges_and_returns_the_whole_config(sim):
    config = sim.admin.configure(
        faults={"latency_ms": 5}, channels=[{"name": "default", "rate_limits": {"push": 10}}]
    )

    assert config["faults"]["latency_ms"] == 5
    assert config["faults"]["error_500_rate"] == 0
    assert config["channels"][0]["rate_limits"] == {
        "push": 10, "multicast": 200, "validate": 2000, "quota": 2000, "other": 2000,
    }  # fmt: skip
    assert config["channels"][0]["token"] == "sim-token-default"


@pytest.mark.parametrize(
    ("partial", "problem"),
    [
        pytest.param({"faults": {"error_500_rate": 2}}, "faults.error_500_rate", id="a rate above 1 is refused"),
        pytest.param({"faults": {"typo_rate": 1}}, "typo_rate", id="an unknown fault is refused"),
        pytest.param({"recipients": {"multicast_unknown": "maybe"}}, "multicast_unknown", id="an unknown multicast mode is refused"),
        pytest.param({"channels": [{"name": "default", "quota": {"type": "limited"}}]}, "quota.value", id="a limited quota without a value is refused"),
        pytest.param({"channels": [{"name": "x", "token": "sim-token-default"}]}, "share one token", id="two channels with one token are refused"),
    ],
)  # fmt: skip
def test_a_bad_configuration_is_refused_and_changes_nothing(sim, partial, problem):
    before = sim.admin.config()

    response = requests.post(f"{sim.base_url}/_sim/config", json=partial, timeout=5)

    assert response.status_code == 400
    assert problem in response.json()["message"]
    assert sim.admin.config() == before


def test_the_clock_can_be_set_and_advanced(sim):
    assert sim.admin.set_clock("2030-05-01T09:00:00+09:00").startswith("2030-05-01T00:00:0")

    later = dt.datetime.fromisoformat(sim.admin.advance_clock(3600))

    assert later.replace(microsecond=0, second=0) == dt.datetime(2030, 5, 1, 1, 0, tzinfo=dt.UTC)


def test_reset_returns_the_clock_to_real_time(sim):
    sim.admin.advance_clock(86400 * 10)

    sim.admin.reset()

    now = dt.datetime.fromisoformat(sim.admin.clock())
    assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 5
