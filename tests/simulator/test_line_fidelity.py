"""Issue 15's findings: where the simulator answered other than LINE does, each now as LINE does.

Sources: https://developers.line.biz/en/reference/messaging-api/ (message objects, error responses) and
https://developers.line.biz/en/docs/messaging-api/retrying-api-request/ (retry keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .simulator_helpers import text, user_id
from .test_validation import details, imagemap

if TYPE_CHECKING:
    import requests

PUSH = "/v2/bot/message/push"
VALIDATE_PUSH = "/v2/bot/message/validate/push"
VALIDATE_MULTICAST = "/v2/bot/message/validate/multicast"
HTTPS = "https://example.com/media/a"
VIDEO = {
    "originalContentUrl": HTTPS + ".mp4",
    "previewImageUrl": HTTPS + ".jpg",
    "area": {"x": 0, "y": 0, "width": 1040, "height": 585},
    "externalLink": {"linkUri": "https://example.com/see_more", "label": "See More"},
}


def emoji_text(**emoji) -> dict:
    base = {"index": 6, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"}
    return {"type": "text", "text": "Hello $ world", "emojis": [{**base, **emoji}]}


def binding(prop: str) -> dict:
    return {"message": f"The property, {prop}, in the request body is invalid (line: -, column: -)"}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(emoji_text(), None, id="an emoji whose index is on a $ is accepted"),
        pytest.param(
            {**emoji_text(index=9), "text": "\U0001f34e Hello $"},
            None,
            id="an emoji index counts UTF-16 units (the apple counts two)",
        ),
        pytest.param(
            emoji_text(index=0),
            [{"message": "Must point at a $ character in text", "property": "messages[0].emojis[0].index"}],
            id="an emoji whose index is not on a $ is refused",
        ),
        pytest.param(
            emoji_text(index=999),
            [{"message": "Must point at a $ character in text", "property": "messages[0].emojis[0].index"}],
            id="an emoji index past the end of the text is refused",
        ),
        pytest.param(
            emoji_text(productId=None),
            [{"message": "May not be empty", "property": "messages[0].emojis[0].productId"}],
            id="an emoji without productId is refused",
        ),
        pytest.param(
            emoji_text(emojiId=None),
            [{"message": "May not be empty", "property": "messages[0].emojis[0].emojiId"}],
            id="an emoji without emojiId is refused",
        ),
        pytest.param(
            {"type": "text", "text": "$", "emojis": ["x", 5]},
            binding("messages[0].emojis[0]"),
            id="emojis that are not objects are refused",
        ),
        pytest.param(imagemap(video=VIDEO), None, id="an imagemap with a well-formed video is accepted"),
        pytest.param(
            imagemap(video="https://example.com/v.mp4"),
            binding("messages[0].video"),
            id="an imagemap video that is not an object is refused",
        ),
        pytest.param(
            imagemap(video={**VIDEO, "originalContentUrl": "http://example.com/v.mp4"}),
            [{"message": "Must be an HTTPS URL", "property": "messages[0].video.originalContentUrl"}],
            id="an imagemap video over http is refused",
        ),
        pytest.param(
            imagemap(video={**VIDEO, "externalLink": {"linkUri": "ftp://example.com/f", "label": "F"}}),
            [
                {
                    "message": "Invalid URI scheme (allowed: http, https, line, tel)",
                    "property": "messages[0].video.externalLink.linkUri",
                }
            ],
            id="an imagemap video link to ftp is refused",
        ),
        pytest.param(
            imagemap(video={**VIDEO, "externalLink": {"linkUri": "https://e.com", "label": "x" * 31}}),
            [
                {
                    "message": "Length must be between 0 and 30",
                    "property": "messages[0].video.externalLink.label",
                }
            ],
            id="an imagemap video link label of 31 characters is refused",
        ),
        pytest.param(
            imagemap(actions__0__linkUri="https:"),
            [{"message": "Must be a valid URI", "property": "messages[0].actions[0].linkUri"}],
            id="a link of only https colon is refused",
        ),
        pytest.param(
            imagemap(actions__0__linkUri="https://例え.jp/商品"),
            [{"message": "Must be a valid URI", "property": "messages[0].actions[0].linkUri"}],
            id="a link that is not percent-encoded is refused",
        ),
        pytest.param(
            imagemap(baseSize={"width": 1040, "height": 10**30}),
            binding("messages[0].baseSize.height"),
            id="a base size beyond int32 is refused",
        ),
        pytest.param(
            imagemap(actions__0__area={"x": 2**31, "y": 0, "width": 1, "height": 1}),
            binding("messages[0].actions[0].area.x"),
            id="an area coordinate of 2 to the 31 is refused",
        ),
    ],
)
def test_what_line_refuses_is_refused_and_what_it_accepts_is_accepted(line, sim, message, expected):
    response = line.push(user_id(1), [message])

    if expected is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400
    assert "X-Line-Request-Id" in response.headers
    if "details" in response.json():
        assert details(response) == expected
    else:
        assert response.json() == expected
    assert sim.admin.stats()["deliveries"] == 0


ACCEPTED_TYPES = {
    "flex": {
        "type": "flex",
        "altText": "A bubble",
        "contents": {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": []}},
    },
    "video": {"type": "video", "originalContentUrl": HTTPS + ".mp4", "previewImageUrl": HTTPS + ".jpg"},
    "audio": {"type": "audio", "originalContentUrl": HTTPS + ".m4a", "duration": 60000},
    "location": {
        "type": "location",
        "title": "Shop",
        "address": "Tokyo",
        "latitude": 35.6,
        "longitude": 139.7,
    },
    "template": {
        "type": "template",
        "altText": "Confirm",
        "template": {
            "type": "confirm",
            "text": "Are you sure?",
            "actions": [
                {"type": "message", "label": "Yes", "text": "yes"},
                {"type": "uri", "label": "More", "uri": "https://example.com/more"},
            ],
        },
    },
    "textV2": {
        "type": "textV2",
        "text": "Hi {everyone} {{literal}}",
        "substitution": {"everyone": {"type": "mention", "mentionee": {"type": "all"}}},
    },
    "coupon": {"type": "coupon", "couponId": "01JYNW8JMQVFBNWF1APF8Z3FS7", "deliveryTag": "spring_2026"},
}
BROKEN_TYPES = {
    "flex": ({"type": "flex", "altText": "x", "contents": {"type": "box"}}, "messages[0].contents.type"),
    "video": (
        {"type": "video", "originalContentUrl": "http://e.com/v.mp4", "previewImageUrl": HTTPS},
        "messages[0].originalContentUrl",
    ),
    "audio": ({"type": "audio", "originalContentUrl": HTTPS, "duration": 0}, "messages[0].duration"),
    "location": (
        {"type": "location", "title": "x" * 101, "address": "a", "latitude": 1, "longitude": 2},
        "messages[0].title",
    ),
    "template": (
        {
            "type": "template",
            "altText": "a",
            "template": {
                "type": "confirm",
                "text": "t",
                "actions": [
                    {"type": "uri", "label": "l", "uri": "javascript:alert(1)"},
                    {"type": "message", "label": "m", "text": "m"},
                ],
            },
        },
        "messages[0].template.actions[0].uri",
    ),
    "textV2": ({"type": "textV2", "text": "Hi {nobody}"}, "messages[0].text"),
    "coupon": ({"type": "coupon", "couponId": "c", "deliveryTag": "not-allowed!"}, "messages[0].deliveryTag"),
}


@pytest.mark.parametrize("path", [PUSH, VALIDATE_PUSH, VALIDATE_MULTICAST])
@pytest.mark.parametrize("kind", sorted(ACCEPTED_TYPES))
def test_message_types_line_accepts_are_accepted_and_their_limits_checked(line, path, kind):
    body = {"messages": [ACCEPTED_TYPES[kind]]}
    if path == PUSH:
        body["to"] = user_id(1)
    assert line.post(path, body).status_code == 200

    broken, prop = BROKEN_TYPES[kind]
    body["messages"] = [broken]
    response = line.post(path, body)
    assert response.status_code == 400
    assert [d["property"] for d in details(response)] == [prop]


def test_only_quotable_types_get_a_quote_token(line):
    messages = [ACCEPTED_TYPES["flex"], ACCEPTED_TYPES["audio"], ACCEPTED_TYPES["location"], text()]

    sent = line.push(user_id(1), messages).json()["sentMessages"]

    assert ["quoteToken" in entry for entry in sent] == [True, False, False, True]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/bot/message/quota"),
        ("GET", "/v2/bot/message/quota/consumption"),
        ("GET", "/v2/bot/info"),
        ("POST", VALIDATE_PUSH),
        ("POST", VALIDATE_MULTICAST),
    ],
)
def test_a_retry_key_on_an_api_that_does_not_send_is_400(line, retry_key, method, path):
    headers = line.headers(retry_key)
    response = line.session.request(
        method, line.base_url + path, headers=headers, json={"messages": [text()]}, timeout=10
    )

    assert response.status_code == 400
    assert response.json() == {"message": "The retry key is not supported for this API"}
    assert response.headers["X-Line-Request-Id"]


def test_a_key_lives_24_hours_from_its_first_attempt_not_from_its_acceptance(line, sim, retry_key):
    sim.admin.configure(faults={"error_500_rate": 1})
    assert line.push(user_id(1), retry_key=retry_key).status_code == 500  # first attempt, not accepted
    sim.admin.configure(faults={"error_500_rate": 0})
    sim.admin.advance_clock(23 * 3600)
    assert line.push(user_id(1), retry_key=retry_key).status_code == 200  # accepted 23 h later
    assert line.push(user_id(1), retry_key=retry_key).status_code == 409

    sim.admin.advance_clock(3600)  # 24 h after the first attempt, 1 h after the acceptance

    assert line.push(user_id(1), retry_key=retry_key).status_code == 200  # a new request to LINE
    assert sim.admin.delivery_counts() == {user_id(1): 2}


def test_too_many_pushes_to_one_user_get_429_when_configured(line, sim):
    sim.admin.configure(recipients={"push_per_recipient_limit": 2, "push_per_recipient_window_seconds": 60})

    answers = [line.push(user_id(1)).status_code for _ in range(3)]
    other = line.push(user_id(2)).status_code
    sim.admin.advance_clock(60)
    later = line.push(user_id(1)).status_code

    assert (answers, other, later) == ([200, 200, 429], 200, 200)
    limited = line.push(user_id(1))
    assert limited.status_code == 200  # 2 within the new window: the one 'later' and this one
    stats = sim.admin.stats()
    assert stats["rate_limited_per_recipient"] == 1
    assert stats["deliveries"] == 5


def raw_post(line, path: str, data: bytes, retry_key: str | None = None) -> requests.Response:
    return line.session.post(line.base_url + path, data=data, headers=line.headers(retry_key), timeout=30)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100,000 nested arrays"),
        pytest.param(b'{"to":' + b'{"a":' * 5000 + b"1" + b"}" * 5001, id="5,000 nested objects"),
        pytest.param(b'{"messages": [{"type": "text", "text": NaN}]}', id="NaN"),
        pytest.param(b'{"n": ' + b"9" * 5000 + b"}", id="a number of 5,000 digits"),
    ],
)
def test_bodies_that_are_not_json_get_400_json_with_a_request_id(line, sim, data):
    response = raw_post(line, PUSH, data)

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Line-Request-Id"]
    assert response.json()["message"].startswith("The request body could not be parsed as JSON (line: ")


@pytest.mark.parametrize(
    "escaped_text",
    [
        pytest.param("a\\ud800b", id="a lone high surrogate"),
        pytest.param("a\\udc00b", id="a lone low surrogate"),
        pytest.param("\\ud83c\\ud83c", id="two high surrogates"),
    ],
)
def test_a_lone_surrogate_is_400_and_changes_nothing(line, sim, retry_key, escaped_text):
    data = (f'{{"to": "{user_id(1)}", "messages": [{{"type": "text", "text": "{escaped_text}"}}]}}').encode()

    response = raw_post(line, PUSH, data, retry_key)

    assert response.status_code == 400
    assert response.headers["X-Line-Request-Id"]
    stats = sim.admin.stats()
    assert (stats["billed"], stats["deliveries"], stats["retry_keys_accepted"]) == (0, 0, 0)
    assert line.push(user_id(1), retry_key=retry_key).status_code == 200  # the key is still free


def test_a_surrogate_pair_escaped_in_json_is_a_character_and_accepted(line, sim):
    data = f'{{"to": "{user_id(1)}", "messages": [{{"type": "text", "text": "\\ud83c\\udf4e"}}]}}'.encode()

    assert raw_post(line, PUSH, data).status_code == 200
