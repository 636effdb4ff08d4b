"""LINE's request checks: message limits, recipient ids, body size, content type and JSON syntax."""

from __future__ import annotations

import copy
import json

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from line_simulator.validation import utf16_length

from .simulator_helpers import text, user_id

PUSH = "/v2/bot/message/push"
MULTICAST = "/v2/bot/message/multicast"
APPLE = "\U0001f34e"  # two UTF-16 code units

IMAGEMAP = {
    "type": "imagemap",
    "baseUrl": "https://example.com/bot/images/rm001",
    "altText": "Spring sale",
    "baseSize": {"width": 1040, "height": 700},
    "actions": [
        {
            "type": "uri",
            "linkUri": "https://example.com/",
            "area": {"x": 0, "y": 0, "width": 520, "height": 700},
        },
        {"type": "message", "text": "Hello", "area": {"x": 520, "y": 0, "width": 520, "height": 700}},
    ],
}


def imagemap(**changes) -> dict:
    """Return the valid imagemap above with some keys changed (dotted paths into actions[0])."""
    message = copy.deepcopy(IMAGEMAP)
    for path, value in changes.items():
        target = message
        *parents, last = path.split("__")
        for parent in parents:
            target = target[int(parent)] if parent.isdigit() else target[parent]
        target[last] = value
    return message


def details(response: requests.Response) -> list[dict]:
    body = response.json()
    assert body["message"] == f"The request body has {len(body['details'])} error(s)"
    return body["details"]


@pytest.mark.parametrize(
    ("messages", "valid"),
    [
        pytest.param([text()] * 5, True, id="five messages are accepted"),
        pytest.param([text()] * 6, False, id="six messages are refused"),
        pytest.param([], False, id="no message is refused"),
    ],
)
def test_a_request_carries_one_to_five_messages(line, messages, valid):
    response = (
        line.push(user_id(1), messages) if messages else line.post(PUSH, {"to": user_id(1), "messages": []})
    )

    if valid:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert details(response) == [{"message": "Size must be between 1 and 5", "property": "messages"}]


@pytest.mark.parametrize(
    ("content", "valid"),
    [
        pytest.param("a" * 5000, True, id="5000 ASCII characters are accepted"),
        pytest.param("a" * 5001, False, id="5001 ASCII characters are refused"),
        pytest.param(APPLE * 2500, True, id="2500 emoji are 5000 UTF-16 units and accepted"),
        pytest.param("a" + APPLE * 2500, False, id="one more unit after 2500 emoji is refused"),
        pytest.param("あ" * 5000, True, id="5000 BMP Japanese characters are accepted"),
    ],
)
def test_text_length_is_counted_in_utf16_code_units(line, content, valid):
    response = line.push(user_id(1), [text(content)])

    if valid:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert details(response) == [
            {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}
        ]


@given(st.text())
def test_utf16_length_matches_python_s_utf16_encoder(content):
    assert utf16_length(content) == len(content.encode("utf-16-le")) // 2


def test_every_problem_of_a_bundle_is_reported_with_its_property(line):
    response = line.push(user_id(1), [text(""), {"type": "richmenu"}, text("ok")])

    assert response.status_code == 400
    assert details(response) == [
        {"message": "May not be empty", "property": "messages[0].text"},
        {
            "message": "Must be one of the following values: "
            "[text, textV2, sticker, image, video, audio, location, imagemap, template, flex, coupon]",
            "property": "messages[1].type",
        },
    ]


def test_image_and_sticker_messages_are_accepted(line):
    image = {
        "type": "image",
        "originalContentUrl": "https://e.com/a.jpg",
        "previewImageUrl": "https://e.com/p.jpg",
    }
    sticker = {"type": "sticker", "packageId": "446", "stickerId": "1988"}

    assert line.push(user_id(1), [image, sticker]).status_code == 200


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        pytest.param(imagemap(), None, id="a valid imagemap is accepted"),
        pytest.param(imagemap(baseUrl="http://e.com/i"), ("Must be an HTTPS URL", "baseUrl"), id="an http base url is refused"),
        pytest.param(imagemap(baseUrl="https://e.com/" + "a" * 1987), ("Length must be between 0 and 2000", "baseUrl"), id="a 2001 character base url is refused"),
        pytest.param(imagemap(altText="a" * 1500), None, id="a 1500 character alt text is accepted"),
        pytest.param(imagemap(altText="a" * 1501), ("Length must be between 0 and 1500", "altText"), id="a 1501 character alt text is refused"),
        pytest.param(imagemap(baseSize__width=1000), ("Must be 1040", "baseSize.width"), id="a base width other than 1040 is refused"),
        pytest.param(imagemap(baseSize__height=0), ("Must be greater than or equal to 1", "baseSize.height"), id="a zero base height is refused"),
        pytest.param(imagemap(actions=[]), ("Size must be between 1 and 50", "actions"), id="no action is refused"),
        pytest.param(imagemap(actions=IMAGEMAP["actions"][:1] * 50), None, id="50 actions are accepted"),
        pytest.param(imagemap(actions=IMAGEMAP["actions"][:1] * 51), ("Size must be between 1 and 50", "actions"), id="51 actions are refused"),
        pytest.param(imagemap(actions__0__linkUri="https://e.com/" + "a" * 986), None, id="a 1000 character link is accepted"),
        pytest.param(imagemap(actions__0__linkUri="https://e.com/" + "a" * 987), ("Length must be between 0 and 1000", "actions[0].linkUri"), id="a 1001 character link is refused"),
        pytest.param(imagemap(actions__0__linkUri="tel:0312345678"), None, id="a tel link is accepted"),
        pytest.param(imagemap(actions__0__linkUri="line://nv/chat"), None, id="a line link is accepted"),
        pytest.param(imagemap(actions__0__linkUri="ftp://e.com/"), ("Invalid URI scheme (allowed: http, https, line, tel)", "actions[0].linkUri"), id="an ftp link is refused"),
        pytest.param(imagemap(actions__1__text="a" * 400), None, id="a 400 character message action is accepted"),
        pytest.param(imagemap(actions__1__text="a" * 401), ("Length must be between 0 and 400", "actions[1].text"), id="a 401 character message action is refused"),
        pytest.param(imagemap(actions__0__label="a" * 101), ("Length must be between 0 and 100", "actions[0].label"), id="a 101 character label is refused"),
        pytest.param(imagemap(actions__1__area={"x": 521, "y": 0, "width": 520, "height": 700}), ("Area must be inside the base size (1040x700)", "actions[1].area"), id="an area past the right edge is refused"),
        pytest.param(imagemap(actions__1__area={"x": 0, "y": 1, "width": 520, "height": 700}), ("Area must be inside the base size (1040x700)", "actions[1].area"), id="an area past the bottom edge is refused"),
        pytest.param(imagemap(actions__1__area={"x": -1, "y": 0, "width": 520, "height": 700}), ("Must be greater than or equal to 0", "actions[1].area.x"), id="a negative area x is refused"),
    ],
)  # fmt: skip
def test_imagemap_limits(line, message, problem):
    response = line.post("/v2/bot/message/validate/push", {"messages": [message]})

    if problem is None:
        assert (response.status_code, response.json()) == (200, {})
    else:
        assert response.status_code == 400
        assert details(response) == [{"message": problem[0], "property": f"messages[0].{problem[1]}"}]


@pytest.mark.parametrize(
    ("count", "status"),
    [
        pytest.param(500, 200, id="500 recipients are accepted"),
        pytest.param(501, 400, id="501 recipients are refused"),
    ],
)
def test_multicast_carries_at_most_500_recipients(line, sim, count, status):
    response = line.multicast([user_id(n) for n in range(count)])

    assert response.status_code == status
    if status == 400:
        assert details(response) == [{"message": "Size must be between 1 and 500", "property": "to"}]
        assert sim.admin.deliveries() == []


def test_multicast_to_nobody_is_refused(line):
    response = line.multicast([])

    assert response.status_code == 400
    assert details(response) == [{"message": "Size must be between 1 and 500", "property": "to"}]


@pytest.mark.parametrize(
    "to",
    [
        pytest.param("U" + "A" * 32, id="an uppercase hex id is malformed"),
        pytest.param("U" + "a" * 31, id="a 32 character id is malformed"),
        pytest.param("@lineid", id="a LINE id is malformed"),
        pytest.param(12345, id="a number is malformed"),
    ],
)
def test_push_to_a_malformed_id_names_the_to_property(line, to):
    response = line.post(PUSH, {"to": to, "messages": [text()]})

    assert response.status_code == 400
    assert response.json() == {
        "message": "The property, 'to', in the request body is invalid (line: -, column: -)"
    }


def test_push_accepts_group_and_room_ids(line):
    assert line.push("C" + "a" * 32).status_code == 200
    assert line.push("R" + "b" * 32).status_code == 200


def test_multicast_with_a_malformed_id_is_refused_whole_naming_the_first_bad_index(line, sim):
    to = [user_id(1), user_id(2), user_id(3), "Cbad", "also bad"]

    response = line.multicast(to)

    assert response.status_code == 400
    assert response.json() == {
        "message": "The property, to[3], in the request body is invalid (line: -, column: -)"
    }
    assert sim.admin.deliveries() == []


def test_a_body_over_2_mb_is_413(line, sim):
    body = {"to": user_id(1), "messages": [text()], "padding": "a" * (2 * 1024 * 1024)}

    response = line.post(PUSH, body)

    assert response.status_code == 413
    assert "X-Line-Request-Id" in response.headers
    assert sim.admin.deliveries() == []


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/x-www-form-urlencoded", id="a form body is 415"),
        pytest.param("text/plain", id="a plain text body is 415"),
    ],
)
def test_a_body_that_is_not_json_by_content_type_is_415(line, sim, content_type):
    headers = {**line.headers(), "Content-Type": content_type}
    response = requests.post(f"{sim.base_url}{PUSH}", data="to=U1", headers=headers, timeout=5)

    assert response.status_code == 415
    assert response.json() == {"message": f"The content type, {content_type}, is not supported"}


def test_json_with_a_charset_parameter_is_accepted(line, sim):
    headers = {**line.headers(), "Content-Type": "application/json; charset=UTF-8"}
    body = json.dumps({"to": user_id(1), "messages": [text("hi")]})

    assert requests.post(f"{sim.base_url}{PUSH}", data=body, headers=headers, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        pytest.param('{"to": "U1",', "line: 1, column: 13", id="a truncated object points at its end"),
        pytest.param('{\n  "to": "U1"\n  "messages": []\n}', "line: 3, column: 3", id="a missing comma points at the next line"),
    ],
)  # fmt: skip
def test_a_body_that_does_not_parse_is_400_with_line_and_column(line, sim, raw, position):
    response = requests.post(f"{sim.base_url}{PUSH}", data=raw, headers=line.headers(), timeout=5)

    assert response.status_code == 400
    assert response.json() == {"message": f"The request body could not be parsed as JSON ({position})"}


def test_custom_aggregation_units_allow_one_unit_of_30_word_characters(line):
    ok = {"to": user_id(1), "messages": [text()], "customAggregationUnits": ["a" * 30]}
    too_many = {**ok, "customAggregationUnits": ["a", "b"]}
    bad_name = {**ok, "customAggregationUnits": ["spring-sale"]}

    assert line.post(PUSH, ok).status_code == 200
    assert details(line.post(PUSH, too_many)) == [
        {"message": "Size must be between 0 and 1", "property": "customAggregationUnits"}
    ]
    assert details(line.post(PUSH, bad_name))[0]["property"] == "customAggregationUnits[0]"
