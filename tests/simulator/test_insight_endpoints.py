"""The simulator's aggregation-unit and statistics-per-unit endpoints, over real HTTP."""

from __future__ import annotations

import datetime as dt

import pytest

from .simulator_helpers import text, user_id

JST = dt.timezone(dt.timedelta(hours=9))
STATS = "/v2/bot/insight/message/event/aggregation"
LINK = "https://shop.example.com/sale?utm_source=line"


def imagemap(url: str = LINK) -> dict:
    return {
        "type": "imagemap",
        "baseUrl": "https://cdn.example.com/banner",
        "altText": "Sale",
        "baseSize": {"width": 1040, "height": 1040},
        "actions": [{"type": "uri", "linkUri": url, "area": {"x": 0, "y": 0, "width": 1040, "height": 1040}}],
    }


def multicast_with_unit(line, users: range, unit: str = "spring_sale", messages=None):
    for start in range(users.start, users.stop, 500):
        batch = [user_id(n) for n in range(start, min(start + 500, users.stop))]
        body = {"to": batch, "messages": messages or [text(), imagemap()], "customAggregationUnits": [unit]}
        response = line.post("/v2/bot/message/multicast", body)
        assert response.status_code == 200, response.text


def jst_day(sim, days: int = 0) -> str:
    now = dt.datetime.fromisoformat(sim.admin.clock()).astimezone(JST)
    return (now + dt.timedelta(days=days)).strftime("%Y%m%d")


def stats(line, unit: str, first: str, last: str):
    return line.get(STATS, params={"customAggregationUnit": unit, "from": first, "to": last})


def test_units_used_this_month_are_counted_and_listed(sim, line):
    multicast_with_unit(line, range(3), "unit_a")
    multicast_with_unit(line, range(3), "unit_a")
    multicast_with_unit(line, range(3), "unit_b")
    line.push(user_id(9))  # no unit
    assert line.get("/v2/bot/message/aggregation/info").json() == {"numOfCustomAggregationUnits": 2}
    first = line.get("/v2/bot/message/aggregation/list", params={"limit": 1}).json()
    assert first == {"customAggregationUnits": ["unit_a"], "next": "1"}
    second = line.get("/v2/bot/message/aggregation/list", params={"limit": 1, "start": "1"}).json()
    assert second == {"customAggregationUnits": ["unit_b"]}


def test_a_unit_over_the_monthly_budget_is_dropped_but_the_message_is_sent(sim, line):
    sim.admin.configure_insights(unit_budget=1)
    multicast_with_unit(line, range(2), "first_unit")
    multicast_with_unit(line, range(2, 4), "second_unit")
    assert line.get("/v2/bot/message/aggregation/info").json()["numOfCustomAggregationUnits"] == 1
    assert len(sim.admin.deliveries()) == 4
    sent_day = jst_day(sim)
    sim.admin.advance_clock(3 * 86400)
    assert stats(line, "second_unit", sent_day, jst_day(sim)).json() == {
        "overview": {
            "uniqueImpression": None, "uniqueClick": None, "uniqueMediaPlayed": None,
            "uniqueMediaPlayed100Percent": None,
        },
        "messages": [],
        "clicks": [],
    }  # fmt: skip


def test_figures_are_unready_until_the_sending_day_has_ended_then_grow_with_the_days(sim, line):
    multicast_with_unit(line, range(1000))
    sent_day = jst_day(sim)
    assert stats(line, "spring_sale", sent_day, sent_day).json() == {"status": "unready"}
    sim.admin.advance_clock(86400)
    one_day = stats(line, "spring_sale", sent_day, jst_day(sim)).json()
    sim.admin.advance_clock(6 * 86400)
    week = stats(line, "spring_sale", sent_day, jst_day(sim)).json()
    assert 150 <= one_day["overview"]["uniqueImpression"] < week["overview"]["uniqueImpression"] <= 650
    assert week["overview"]["uniqueClick"] <= week["overview"]["uniqueImpression"]
    assert [m["seq"] for m in week["messages"]] == [1, 2]
    assert (week["clicks"][0]["url"], week["clicks"][0]["seq"]) == (LINK, 2)
    assert week["clicks"][0]["click"] >= week["clicks"][0]["uniqueClick"] >= 20
    again = stats(line, "spring_sale", sent_day, jst_day(sim)).json()
    assert again == week  # deterministic: the same record gives the same figures


def test_values_under_twenty_are_null_for_privacy(sim, line):
    multicast_with_unit(line, range(19), "tiny")  # at most 19 can open: always under 20
    sim.admin.advance_clock(14 * 86400)
    body = stats(line, "tiny", jst_day(sim, -14), jst_day(sim)).json()
    assert body["overview"]["uniqueImpression"] is None
    assert body["overview"]["uniqueClick"] is None
    assert body["clicks"][0]["uniqueClick"] is None


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("20261301", "20261302", "The value for the 'from' parameter is invalid"),
        ("20261201", "2026-12-02", "The value for the 'to' parameter is invalid"),
        ("20261210", "20261201", "The value for the 'to' parameter must not be before 'from'"),
        ("20261101", "20261130", None),
        ("20261101", "20261201", "The period from 'from' to 'to' must be 30 days or less"),
    ],
    ids=["a month 13 is refused", "a dashed date is refused", "to before from is refused",
         "30 days are allowed", "31 days are refused"],
)  # fmt: skip
def test_the_period_is_checked_as_line_does(sim, line, first, last, message):
    response = stats(line, "spring_sale", first, last)
    if message is None:
        assert response.status_code == 200
    else:
        assert (response.status_code, response.json()) == (400, {"message": message})


def test_the_statistics_endpoint_allows_60_requests_an_hour(sim, line):
    day = jst_day(sim)
    answers = [stats(line, "spring_sale", day, day).status_code for _ in range(61)]
    assert answers[:60] == [200] * 60
    assert answers[60] == 429
    assert stats(line, "spring_sale", day, day).json() == {
        "message": "The API rate limit has been exceeded. Try again later."
    }


def test_statistics_need_the_channel_token(sim, line):
    response = line.session.get(f"{sim.base_url}{STATS}", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


@pytest.mark.parametrize("limit", ["²", "١٠", "-1", "x"])
def test_a_page_size_that_is_not_ascii_digits_is_a_400_in_line_s_shape(line, limit):
    answer = line.session.get(
        line.base_url + "/v2/bot/message/aggregation/list", params={"limit": limit}, headers=line.headers()
    )
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"message": "The request parameters are invalid"}
    assert answer.headers["X-Line-Request-Id"]
