"""The simulator's contract, endpoint by endpoint, written from LINE's reference.

For each endpoint the project uses: the fields and types of a success, the limits and error messages
the project relies on, ``X-Line-Request-Id`` on every answer (errors included), and no change of state
(quota consumption, accepted retry keys, the delivery record) for a request LINE refuses.
Sources: https://developers.line.biz/en/reference/messaging-api/ (#send-push-message,
#send-multicast-message, #validate-message-objects-of-push-message, #get-quota, #get-consumption,
#get-bot-info, #error-responses, #response-headers) and
https://developers.line.biz/en/docs/messaging-api/retrying-api-request/.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from .simulator_helpers import text, user_id

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ENDPOINTS = {
    "push": ("POST", "/v2/bot/message/push"),
    "multicast": ("POST", "/v2/bot/message/multicast"),
    "validate_push": ("POST", "/v2/bot/message/validate/push"),
    "validate_multicast": ("POST", "/v2/bot/message/validate/multicast"),
    "quota": ("GET", "/v2/bot/message/quota"),
    "quota_consumption": ("GET", "/v2/bot/message/quota/consumption"),
    "bot_info": ("GET", "/v2/bot/info"),
    "aggregation_info": ("GET", "/v2/bot/message/aggregation/info"),
    "aggregation_list": ("GET", "/v2/bot/message/aggregation/list"),
    "statistics_per_unit": (
        "GET",
        "/v2/bot/insight/message/event/aggregation?customAggregationUnit=spring_sale&from=20261201&to=20261202",
    ),
}
SENDS = ("push", "multicast")
POSTS = ("push", "multicast", "validate_push", "validate_multicast")


def valid_body(endpoint: str) -> dict[str, Any] | None:
    if endpoint == "push":
        return {"to": user_id(1), "messages": [text()]}
    if endpoint == "multicast":
        return {"to": [user_id(1), user_id(2)], "messages": [text()]}
    if endpoint.startswith("validate"):
        return {"messages": [text()]}
    return None


def call(
    line,
    endpoint: str,
    *,
    body: Any = None,
    headers: dict | None = None,
    data: bytes | None = None,
    method: str | None = None,
):
    verb, path = ENDPOINTS[endpoint]
    kwargs: dict[str, Any] = {"headers": line.headers() if headers is None else headers, "timeout": 10}
    if data is not None:
        kwargs["data"] = data
    elif body is not None:
        kwargs["json"] = body
    return line.session.request(method or verb, line.base_url + path, **kwargs)


def state(sim) -> tuple[int, int, int, int]:
    """What a refused request must not change: billed quota, deliveries, accepted sends and keys."""
    stats = sim.admin.stats()
    return stats["billed"], stats["deliveries"], stats["send_requests_accepted"], stats["retry_keys_accepted"]


def check_success_shape(endpoint: str, body: Any) -> None:
    if endpoint == "push":
        assert set(body) == {"sentMessages"}
        for entry in body["sentMessages"]:
            assert set(entry) == {"id", "quoteToken"}
            assert isinstance(entry["id"], str)
            assert entry["id"].isdigit()
            assert isinstance(entry["quoteToken"], str)
    elif endpoint in ("multicast", "validate_push", "validate_multicast"):
        assert body == {}
    elif endpoint == "quota":
        assert body == {"type": "none"}
    elif endpoint == "quota_consumption":
        assert set(body) == {"totalUsage"}
        assert isinstance(body["totalUsage"], int)
    elif endpoint == "aggregation_info":
        assert set(body) == {"numOfCustomAggregationUnits"}
        assert isinstance(body["numOfCustomAggregationUnits"], int)
    elif endpoint == "aggregation_list":
        assert set(body) <= {"customAggregationUnits", "next"}
        assert isinstance(body["customAggregationUnits"], list)
    elif endpoint == "statistics_per_unit":
        assert body == {"status": "unready"} or {"overview", "messages", "clicks"} <= set(body)
    else:
        assert set(body) >= {"userId", "basicId", "displayName", "chatMode", "markAsReadMode"}
        assert re.fullmatch(r"U[0-9a-f]{32}", body["userId"])
        assert body["basicId"].startswith("@")
        assert body["chatMode"] in ("chat", "bot")
        assert body["markAsReadMode"] in ("auto", "manual")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_success_has_line_s_fields_and_types_and_a_request_id(line, sim, endpoint):
    response = call(line, endpoint, body=valid_body(endpoint))

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert UUID.fullmatch(response.headers["X-Line-Request-Id"])
    check_success_shape(endpoint, response.json())


def test_a_limited_quota_reports_its_value_and_consumption_counts_recipients(line, sim):
    sim.admin.configure(channels=[{"name": "default", "quota": {"type": "limited", "value": 7}}])
    call(line, "multicast", body=valid_body("multicast"))

    assert call(line, "quota").json() == {"type": "limited", "value": 7}
    assert call(line, "quota_consumption").json() == {"totalUsage": 2}


def malformed_requests(endpoint: str) -> list[tuple[str, dict[str, Any], int, str]]:
    """Return (id, request, status, LINE's message or its start) for every refusal of ``endpoint``."""
    no_auth = {"Content-Type": "application/json"}
    bad_token = {"Authorization": "Bearer nope", "Content-Type": "application/json"}
    cases = [
        ("no token", {"headers": no_auth}, 401, "Authorization header required."),
        ("a wrong token", {"headers": bad_token}, 401, "Authentication failed due to the following reason:"),
        ("a wrong method", {"method": "PUT" if endpoint in POSTS else "DELETE"}, 405, "Method not allowed"),
    ]
    if endpoint not in SENDS:
        cases.append(("a retry key", {"key": True}, 400, "The retry key is not supported for this API"))
    else:
        cases.append(("a malformed retry key", {"key": "not-a-uuid"}, 400, "The retry key is invalid"))
    if endpoint in POSTS:
        body = valid_body(endpoint)
        cases += [
            (
                "form data",
                {"data": b"a=1", "type": "application/x-www-form-urlencoded"},
                415,
                "The content type, application/x-www-form-urlencoded, is not supported",
            ),
            ("broken JSON", {"data": b'{"messages": ['}, 400, "The request body could not be parsed as JSON"),
            ("a JSON array", {"data": b"[]"}, 400, "The request body could not be parsed as JSON"),
            (
                "a body over 2 MB",
                {"data": b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'},
                413,
                "The request body is too large",
            ),
            ("no messages", {"body": {**body, "messages": []}}, 400, "The request body has 1 error(s)"),
            (
                "six messages",
                {"body": {**body, "messages": [text()] * 6}},
                400,
                "The request body has 1 error(s)",
            ),
            (
                "a text of 5001 characters",
                {"body": {**body, "messages": [text("a" * 5001)]}},
                400,
                "The request body has 1 error(s)",
            ),
            (
                "messages that are not a list",
                {"body": {**body, "messages": "hi"}},
                400,
                "The property, messages, in the request body is invalid (line: -, column: -)",
            ),
        ]
    if endpoint == "push":
        cases += [
            (
                "a malformed user id",
                {"body": {"to": "Uabc", "messages": [text()]}},
                400,
                "The property, 'to', in the request body is invalid (line: -, column: -)",
            ),
            (
                "notificationDisabled as text",
                {"body": {**valid_body("push"), "notificationDisabled": "no"}},
                400,
                "The property, notificationDisabled, in the request body is invalid",
            ),
        ]
    if endpoint == "multicast":
        cases += [
            (
                "501 recipients",
                {"body": {"to": [user_id(n) for n in range(501)], "messages": [text()]}},
                400,
                "The request body has 1 error(s)",
            ),
            (
                "a group id",
                {"body": {"to": [user_id(1), "C" + "0" * 32], "messages": [text()]}},
                400,
                "The property, to[1], in the request body is invalid (line: -, column: -)",
            ),
        ]
    return cases


CASES = [
    pytest.param(endpoint, request, status, message, id=f"{endpoint}: {name} is {status}")
    for endpoint in ENDPOINTS
    for name, request, status, message in malformed_requests(endpoint)
]


@pytest.mark.parametrize(("endpoint", "request_", "status", "message"), CASES)
def test_a_malformed_request_gets_line_s_error_with_a_request_id_and_changes_nothing(
    line, sim, endpoint, request_, status, message
):
    headers = dict(request_.get("headers") or line.headers())
    if "type" in request_:
        headers["Content-Type"] = request_["type"]
    key = request_.get("key")
    if key is not None:
        headers["X-Line-Retry-Key"] = str(uuid.uuid4()) if key is True else key
    elif endpoint in SENDS:
        headers["X-Line-Retry-Key"] = str(uuid.uuid4())
    before = state(sim)

    response = call(
        line,
        endpoint,
        headers=headers,
        data=request_.get("data"),
        body=request_.get("body", valid_body(endpoint)),
        method=request_.get("method"),
    )

    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert UUID.fullmatch(response.headers["X-Line-Request-Id"])
    assert response.json()["message"].startswith(message)
    assert state(sim) == before
    if endpoint in SENDS and key is None:  # the key of a refused send is still free
        retried = call(
            line,
            endpoint,
            body=valid_body(endpoint),
            headers={**line.headers(), "X-Line-Retry-Key": headers["X-Line-Retry-Key"]},
        )
        assert retried.status_code == 200


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ({"error_500_rate": 1}, 500, "An error occurred in the server. Try again later."),
        ({"error_503_rate": 1}, 503, "The service is temporarily unavailable. Try again later."),
        ({"rate_limit_429_rate": 1}, 429, "The API rate limit has been exceeded. Try again later."),
    ],
    ids=["500", "503", "429"],
)
def test_every_endpoint_can_be_given_faults_and_a_fault_changes_nothing(
    line, sim, endpoint, fault, status, message
):
    sim.admin.configure(faults={**fault, "fault_endpoints": [endpoint]})
    before = state(sim)

    response = call(line, endpoint, body=valid_body(endpoint))

    assert (response.status_code, response.json()) == (status, {"message": message})
    assert UUID.fullmatch(response.headers["X-Line-Request-Id"])
    assert state(sim) == before
    other = "quota" if endpoint != "quota" else "bot_info"
    assert call(line, other).status_code == 200, "faults apply only to the endpoints named"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_the_rate_limit_of_each_endpoint_answers_429_with_a_request_id(line, sim, endpoint):
    key = {"push": "push", "multicast": "multicast", "bot_info": "other"}.get(endpoint, "validate")
    if endpoint.startswith("quota"):
        key = "quota"
    if endpoint.startswith("aggregation"):
        key = "other"
    if endpoint == "statistics_per_unit":  # LINE: 60 an hour; a burst of 1 shows the 429 at once
        sim.admin.configure_insights(rate_limit_per_hour=60, rate_limit_burst=1)
    else:
        sim.admin.configure(channels=[{"name": "default", "rate_limits": {key: 1}}])
    answers = [call(line, endpoint, body=valid_body(endpoint)) for _ in range(3)]

    assert [a.status_code for a in answers].count(429) >= 1
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.json() == {"message": "The API rate limit has been exceeded. Try again later."}
    assert UUID.fullmatch(limited.headers["X-Line-Request-Id"])
