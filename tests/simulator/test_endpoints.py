"""Answers of LINE's endpoints when the request is valid: paths, bodies, status codes, headers."""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from .simulator_helpers import text, user_id

IMAGEMAP = {
    "type": "imagemap",
    "baseUrl": "https://example.com/bot/images/rm001",
    "altText": "This is an imagemap",
    "baseSize": {"width": 1040, "height": 1040},
    "actions": [
        {
            "type": "uri",
            "linkUri": "https://example.com/",
            "area": {"x": 0, "y": 0, "width": 520, "height": 1040},
        }
    ],
}


def test_push_answers_one_sent_message_per_message_with_quote_tokens_only_for_text(line):
    response = line.push(user_id(1), [text("a"), IMAGEMAP, text("b")])

    assert response.status_code == 200
    sent = response.json()["sentMessages"]
    assert len(sent) == 3
    assert all(re.fullmatch(r"[0-9]{15,19}", message["id"]) for message in sent)
    assert len({message["id"] for message in sent}) == 3
    assert "quoteToken" in sent[0]
    assert "quoteToken" in sent[2]
    assert "quoteToken" not in sent[1]


def test_multicast_answers_an_empty_object(line):
    response = line.multicast([user_id(1), user_id(2)])

    assert response.status_code == 200
    assert response.json() == {}


def test_every_answer_carries_a_fresh_uuid_request_id_errors_included(line, sim):
    answers = [
        line.push(user_id(1)),
        line.push("not-a-user"),
        requests.get(f"{sim.base_url}/v2/bot/message/quota", timeout=5),
        requests.get(f"{sim.base_url}/no/such/path", timeout=5),
    ]

    ids = [answer.headers["X-Line-Request-Id"] for answer in answers]
    assert [answer.status_code for answer in answers] == [200, 400, 401, 404]
    assert all(str(uuid.UUID(request_id)) == request_id for request_id in ids)
    assert len(set(ids)) == len(ids)


def test_bot_info_describes_the_channel(line):
    response = line.get("/v2/bot/info")

    assert response.status_code == 200
    info = response.json()
    assert re.fullmatch(r"U[0-9a-f]{32}", info["userId"])
    assert info["basicId"].startswith("@")
    assert info["displayName"] == "default"
    assert (info["chatMode"], info["markAsReadMode"]) == ("chat", "manual")


def test_quota_endpoints_report_no_limit_and_zero_usage_by_default(line):
    assert line.get("/v2/bot/message/quota").json() == {"type": "none"}
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 0}


def test_validate_endpoints_answer_an_empty_object_for_valid_messages(line):
    for path in ("/v2/bot/message/validate/push", "/v2/bot/message/validate/multicast"):
        response = line.post(path, {"messages": [text(), IMAGEMAP]})
        assert (response.status_code, response.json()) == (200, {})


def test_validate_sends_nothing(line, sim):
    line.post("/v2/bot/message/validate/push", {"messages": [text()]})

    assert sim.admin.deliveries() == []


def test_an_unknown_path_gets_404_not_found(sim):
    response = requests.post(f"{sim.base_url}/v2/bot/message/narrowcast", json={}, timeout=5)

    assert response.status_code == 404
    assert response.json() == {"message": "Not found"}


def test_a_wrong_method_on_a_line_path_gets_405_with_a_request_id(line):
    response = line.get("/v2/bot/message/push")

    assert response.status_code == 405
    assert "X-Line-Request-Id" in response.headers


def test_optional_send_properties_are_accepted(line):
    body = {
        "to": user_id(1),
        "messages": [text()],
        "notificationDisabled": True,
        "customAggregationUnits": ["spring_sale_2026"],
    }
    assert line.post("/v2/bot/message/push", body).status_code == 200
    body["to"] = [user_id(2)]
    assert line.post("/v2/bot/message/multicast", body).status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "Authorization header required", id="no authorization header is 401"),
        pytest.param(
            {"Authorization": "Basic abc"}, "Authorization header required", id="a non-bearer scheme is 401"
        ),
        pytest.param({"Authorization": "Bearer wrong"}, "invalid token", id="a wrong token is 401"),
    ],
)
def test_requests_without_a_valid_token_are_refused(sim, headers, message):
    body = {"to": user_id(1), "messages": [text()]}
    response = requests.post(f"{sim.base_url}/v2/bot/message/push", json=body, headers=headers, timeout=5)

    assert response.status_code == 401
    assert message in response.json()["message"]
    assert sim.admin.deliveries() == []


def test_the_exact_401_bodies_match_line(sim):
    url = f"{sim.base_url}/v2/bot/message/quota"
    missing = requests.get(url, timeout=5).json()
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).json()

    assert missing == {
        "message": "Authorization header required. Must follow the scheme, 'Authorization: Bearer <ACCESS TOKEN>'"
    }
    assert wrong == {
        "message": "Authentication failed due to the following reason: invalid token. "
        "Confirm that the access token in the authorization header is valid."
    }


def test_each_channel_has_its_own_token_and_quota(line, sim):
    sim.admin.configure(
        channels=[{"name": "shop", "token": "shop-token", "quota": {"type": "limited", "value": 5}}]
    )
    shop = type(line)(sim.base_url, "shop-token")

    assert shop.push(user_id(1)).status_code == 200
    assert shop.get("/v2/bot/message/quota").json() == {"type": "limited", "value": 5}
    assert shop.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 1}
    assert line.get("/v2/bot/message/quota/consumption").json() == {"totalUsage": 0}
    assert {row["channel"] for row in sim.admin.deliveries()} == {"shop"}
