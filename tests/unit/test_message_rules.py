"""LINE's message rules, each tested at its boundary: the last value accepted and the first refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from line_oa.campaign.messages import utf16_len

from .campaign_docs import problems_of, valid_document

if TYPE_CHECKING:
    from collections.abc import Callable

SITE = "https://shop.example.com/"
APPLE = "\N{RED APPLE}"  # outside the BMP: 2 UTF-16 code units


def url(length: int, base: str = SITE) -> str:
    """Return an https link of exactly ``length`` characters."""
    return base + "a" * (length - len(base))


def text_message(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["content"]["messages"][0]


def imagemap(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["content"]["messages"][1]


def no_utm(doc: dict[str, Any]) -> None:
    doc["utm_tracking"] = {"enabled": False}


def area(x: int = 0, y: int = 0, width: int = 100, height: int = 100) -> dict[str, int]:
    return {"x": x, "y": y, "width": width, "height": height}


def video(**changes: Any) -> dict[str, Any]:
    base = {
        "original_content_url": "https://cdn.example.com/video.mp4",
        "preview_image_url": "https://cdn.example.com/preview.jpg",
        "area": area(0, 0, 1040, 585),
        "external_link": {"link_uri": "https://shop.example.com/video", "label": "See more"},
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def set_text(value: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        text_message(doc)["text"] = value

    return change


def set_emojis(text: str, indexes: list[int]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        text_message(doc)["text"] = text
        text_message(doc)["emojis"] = [
            {"index": index, "product_id": "5ac1bfd5040ab15980c9b435", "emoji_id": "001"} for index in indexes
        ]

    return change


def set_imagemap(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        imagemap(doc)[key] = value

    return change


def set_action(
    key: str, value: Any, number: int = 0, *, tagging: bool = False
) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        imagemap(doc)["actions"][number][key] = value
        if not tagging:
            no_utm(doc)

    return change


def set_actions(count: int) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        imagemap(doc)["actions"] = [
            {"type": "message", "text": f"tap {n}", "area": area(0, n * 10, 1040, 10)} for n in range(count)
        ]
        imagemap(doc)["base_size"]["height"] = max(count * 10, 10)

    return change


def set_messages(count: int) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["content"]["messages"] = [{"type": "text", "text": f"message {n}"} for n in range(count)]

    return change


def set_video(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        imagemap(doc)["video"] = video(**changes)
        no_utm(doc)

    return change


BOUNDARIES = [
    # (id, change, path of the problem or None when accepted, words the message must hold)
    ("text of 5000 characters is accepted", set_text("a" * 5000), None, None),
    (
        "text of 5001 characters is refused",
        set_text("a" * 5001),
        "content.messages[0].text",
        "5001 characters (UTF-16), LINE allows 5000",
    ),
    ("2500 apples are 5000 UTF-16 units and accepted", set_text(APPLE * 2500), None, None),
    (
        "2500 apples and a letter are 5001 units and refused",
        set_text(APPLE * 2500 + "a"),
        "content.messages[0].text",
        "5001 characters",
    ),
    ("empty text is refused", set_text(""), "content.messages[0].text", "is empty"),
    ("20 LINE emojis are accepted", set_emojis("$" * 20, list(range(20))), None, None),
    (
        "21 LINE emojis are refused",
        set_emojis("$" * 21, list(range(21))),
        "content.messages[0].emojis",
        "21 LINE emojis, LINE allows 20",
    ),
    (
        "an emoji index on a dollar after an apple counts the apple twice",
        set_emojis(APPLE + "$", [2]),
        None,
        None,
    ),
    (
        "an emoji index not on a dollar is refused",
        set_emojis(APPLE + "$", [1]),
        "content.messages[0].emojis[0].index",
        "does not point at a '$'",
    ),
    (
        "an emoji index past the end of the text is refused",
        set_emojis("hi $", [9]),
        "content.messages[0].emojis[0].index",
        "does not point at a '$'",
    ),
    (
        "a base URL of 2000 characters is accepted",
        set_imagemap("base_url", url(2000, "https://cdn.example.com/")),
        None,
        None,
    ),
    (
        "a base URL of 2001 characters is refused",
        set_imagemap("base_url", url(2001, "https://cdn.example.com/")),
        "content.messages[1].base_url",
        "2001 characters, LINE allows 2000",
    ),
    (
        "an http base URL is refused",
        set_imagemap("base_url", "http://cdn.example.com/sale"),
        "content.messages[1].base_url",
        "LINE accepts https:",
    ),
    (
        "a base URL ending in .png is refused",
        set_imagemap("base_url", "https://cdn.example.com/sale.png"),
        "content.messages[1].base_url",
        "file extension",
    ),
    (
        "a base URL ending in .JPG is refused",
        set_imagemap("base_url", "https://cdn.example.com/sale.JPG"),
        "content.messages[1].base_url",
        "file extension",
    ),
    (
        "a base URL with a version number is accepted",
        set_imagemap("base_url", "https://cdn.example.com/sale/v1.2"),
        None,
        None,
    ),
    ("alt text of 1500 characters is accepted", set_imagemap("alt_text", "a" * 1500), None, None),
    (
        "alt text of 1501 characters is refused",
        set_imagemap("alt_text", "a" * 1501),
        "content.messages[1].alt_text",
        "1501 characters (UTF-16), LINE allows 1500",
    ),
    ("empty alt text is refused", set_imagemap("alt_text", ""), "content.messages[1].alt_text", "is empty"),
    (
        "a base width of 1039 is refused",
        set_imagemap("base_size", {"width": 1039, "height": 1040}),
        "content.messages[1].base_size.width",
        "exactly 1040",
    ),
    (
        "a base height of 0 is refused",
        set_imagemap("base_size", {"width": 1040, "height": 0}),
        "content.messages[1].base_size.height",
        "greater than 0",
    ),
    ("50 actions are accepted", set_actions(50), None, None),
    ("51 actions are refused", set_actions(51), "content.messages[1].actions", "51 actions, LINE allows 50"),
    ("an imagemap without actions is refused", set_actions(0), "content.messages[1].actions", "1 to 50"),
    ("an area reaching the right edge is accepted", set_action("area", area(40, 0, 1000, 10)), None, None),
    (
        "an area one pixel past the right edge is refused",
        set_action("area", area(41, 0, 1000, 10)),
        "content.messages[1].actions[0].area.width",
        "x 41 + width 1000 = 1041 goes past the right edge",
    ),
    ("an area reaching the bottom edge is accepted", set_action("area", area(0, 1000, 10, 40)), None, None),
    (
        "an area one pixel past the bottom edge is refused",
        set_action("area", area(0, 1000, 10, 41)),
        "content.messages[1].actions[0].area.height",
        "1041 goes past the bottom edge",
    ),
    (
        "an area left of the image is refused",
        set_action("area", area(-1, 0, 10, 10)),
        "content.messages[1].actions[0].area.x",
        "greater than or equal to 0",
    ),
    (
        "an area of width 0 is refused",
        set_action("area", area(0, 0, 0, 10)),
        "content.messages[1].actions[0].area.width",
        "greater than 0",
    ),
    ("a link of 1000 characters is accepted", set_action("link_uri", url(1000)), None, None),
    (
        "a link of 1001 characters is refused",
        set_action("link_uri", url(1001)),
        "content.messages[1].actions[0].link_uri",
        "1001 characters, LINE allows 1000",
    ),
    ("an http link is accepted", set_action("link_uri", "http://shop.example.com/"), None, None),
    ("a line: link is accepted", set_action("link_uri", "line://app/1234-abcd"), None, None),
    ("a tel: link is accepted", set_action("link_uri", "tel:+81312345678"), None, None),
    (
        "an ftp link is refused",
        set_action("link_uri", "ftp://files.example.com/a"),
        "content.messages[1].actions[0].link_uri",
        "scheme 'ftp:' is not allowed",
    ),
    (
        "a javascript link is refused",
        set_action("link_uri", "javascript:alert(1)"),
        "content.messages[1].actions[0].link_uri",
        "scheme 'javascript:' is not allowed",
    ),
    (
        "a link with a space is refused",
        set_action("link_uri", "https://shop.example.com/a b"),
        "content.messages[1].actions[0].link_uri",
        "must be percent-encoded",
    ),
    (
        "a link without a host is refused",
        set_action("link_uri", "https:///sale"),
        "content.messages[1].actions[0].link_uri",
        "host name",
    ),
    ("an action label of 100 characters is accepted", set_action("label", "a" * 100), None, None),
    (
        "an action label of 101 characters is refused",
        set_action("label", "a" * 101),
        "content.messages[1].actions[0].label",
        "101 characters, LINE allows 100",
    ),
    ("a message action text of 400 characters is accepted", set_action("text", "a" * 400, 1), None, None),
    (
        "a message action text of 401 characters is refused",
        set_action("text", "a" * 401, 1),
        "content.messages[1].actions[1].text",
        "401 characters, LINE allows 400",
    ),
    (
        "an empty message action text is refused",
        set_action("text", "", 1),
        "content.messages[1].actions[1].text",
        "is empty",
    ),
    ("a complete video is accepted", set_video(), None, None),
    (
        "a video without its preview image is refused",
        set_video(preview_image_url=None),
        "content.messages[1].video.preview_image_url",
        "required",
    ),
    (
        "a video over http is refused",
        set_video(original_content_url="http://cdn.example.com/v.mp4"),
        "content.messages[1].video.original_content_url",
        "LINE accepts https:",
    ),
    (
        "a video URL of 2001 characters is refused",
        set_video(preview_image_url=url(2001)),
        "content.messages[1].video.preview_image_url",
        "2001 characters, LINE allows 2000",
    ),
    (
        "a video area past the bottom is refused",
        set_video(area=area(0, 1000, 1040, 41)),
        "content.messages[1].video.area.height",
        "past the bottom edge",
    ),
    (
        "a video link label of 30 characters is accepted",
        set_video(external_link={"link_uri": SITE, "label": "a" * 30}),
        None,
        None,
    ),
    (
        "a video link label of 31 characters is refused",
        set_video(external_link={"link_uri": SITE, "label": "a" * 31}),
        "content.messages[1].video.external_link.label",
        "31 characters, LINE allows 30",
    ),
    (
        "a video link of 1001 characters is refused",
        set_video(external_link={"link_uri": url(1001), "label": "go"}),
        "content.messages[1].video.external_link.link_uri",
        "1001 characters, LINE allows 1000",
    ),
    (
        "a video link without a label is refused",
        set_video(external_link={"link_uri": SITE}),
        "content.messages[1].video.external_link.label",
        "required",
    ),
    ("5 messages are accepted", set_messages(5), None, None),
    ("6 messages are refused", set_messages(6), "content.messages", "6 messages, LINE sends at most 5"),
    ("no message is refused", set_messages(0), "content.messages", "at least one message"),
]


@pytest.mark.parametrize(
    ("change", "path", "words"), [case[1:] for case in BOUNDARIES], ids=[case[0] for case in BOUNDARIES]
)
def test_line_rule_boundary(change, path, words):
    doc = valid_document()
    change(doc)
    problems = problems_of(doc)
    if path is None:
        assert problems == []
        return
    assert [(p.tab, p.path) for p in problems] == [("content", path)], "\n".join(map(str, problems))
    assert words in problems[0].message


# The default tags add "?utm_source=line&utm_medium=social": 34 characters.
@pytest.mark.parametrize(
    ("length", "problem"),
    [(966, None), (967, "1001 characters after UTM tagging, LINE allows 1000")],
    ids=[
        "a link that reaches 1000 characters with its tags is accepted",
        "a link pushed to 1001 by its tags is refused",
    ],
)
def test_link_limit_is_checked_after_utm_tagging(length, problem):
    doc = valid_document()
    imagemap(doc)["actions"][0]["link_uri"] = url(length)
    problems = problems_of(doc)
    assert [p.message for p in problems] == ([problem] if problem else [])
    if problem:
        assert problems[0].path == "content.messages[1].actions[0].link_uri"


def test_text_limit_is_checked_after_utm_tagging():
    doc = valid_document()
    text_message(doc)["text"] = "a" * (5000 - len(SITE)) + SITE
    problem = problems_of(doc)[0]
    assert (problem.path, problem.message) == (
        "content.messages[0].text",
        "5034 characters (UTF-16) after UTM tagging, LINE allows 5000",
    )


def test_tagged_length_is_checked_even_when_another_tab_has_a_problem():
    doc = valid_document()
    doc["activation"] = {"chunk_size": 1}
    imagemap(doc)["actions"][0]["link_uri"] = url(999)
    assert {p.path for p in problems_of(doc)} == {
        "activation.chunk_size",
        "content.messages[1].actions[0].link_uri",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("abc", 3), ("お帰り", 3), (APPLE, 2), ("a" + APPLE + "b", 4), ("☀️", 2)],
    ids=[
        "empty",
        "ascii",
        "japanese is one unit each",
        "an apple is two",
        "mixed",
        "sun with variation selector",
    ],
)
def test_utf16_len_counts_like_line(text, expected):
    assert utf16_len(text) == expected


def _campaign(doc: dict[str, Any]):
    import yaml

    from line_oa.campaign.validation import campaign_from_text

    campaign, problems = campaign_from_text(yaml.safe_dump(doc, allow_unicode=True), "test_campaign.yaml")
    assert problems == [], "\n".join(map(str, problems))
    return campaign


def test_an_international_link_in_a_uri_action_is_accepted_and_sent_percent_encoded():
    doc = valid_document()
    imagemap(doc)["actions"][0]["link_uri"] = "https://例え.jp/商品/123?色=赤"
    text_message(doc)["text"] = "新作 https://shop.example.com/商品/123 をチェック"

    text, imagemap_json = _campaign(doc).wire_messages()

    tags = "utm_source=line&utm_medium=social"
    assert imagemap_json["actions"][0]["linkUri"] == (
        # LINE: "Domain names, paths, query parameters, and fragments ... percent-encoded using UTF-8"
        f"https://%E4%BE%8B%E3%81%88.jp/%E5%95%86%E5%93%81/123?%E8%89%B2=%E8%B5%A4&{tags}"
    )
    assert text["text"] == f"新作 https://shop.example.com/%E5%95%86%E5%93%81/123?{tags} をチェック"


# "商品" is 2 characters as written and 18 as sent (%E5%95%86%E5%93%81), plus 34 for the default tags.
@pytest.mark.parametrize(
    ("length", "problem"),
    [(950, None), (951, "1001 characters after UTM tagging, LINE allows 1000")],
    ids=[
        "an international link that reaches 1000 characters as sent is accepted",
        "an international link that is 1001 characters as sent is refused",
    ],
)
def test_the_link_limit_is_checked_on_the_percent_encoded_link(length, problem):
    doc = valid_document()
    imagemap(doc)["actions"][0]["link_uri"] = url(length - 2) + "商品"
    problems = problems_of(doc)
    assert [p.message for p in problems] == ([problem] if problem else [])


def test_a_control_character_in_an_international_link_is_still_refused():
    doc = valid_document()
    imagemap(doc)["actions"][0]["link_uri"] = "https://shop.example.com/商品\u200b/1\x07"
    problems = problems_of(doc)
    assert [p.path for p in problems] == ["content.messages[1].actions[0].link_uri"]
    assert "must be percent-encoded" in problems[0].message
