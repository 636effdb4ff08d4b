"""Personalized messages: the placeholder grammar, rendering per recipient, and the checks that refuse
what cannot be filled safely (issue 18, requirement 1)."""

from __future__ import annotations

import json
from urllib.parse import quote, unquote

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from line_oa.campaign.messages import TEXT_MAX, utf16_len
from line_oa.campaign.personalization import (
    Longest,
    bundle_of,
    column_problems,
    length_problems,
)
from line_oa.campaign.validation import campaign_from_text
from tests.fast_loop import examples

from .campaign_docs import problems_of, valid_document

GREETING = '{{ profile.first_name | default("there") }}さん、こんにちは $ 🌸'
EMOJI = {"product_id": "5ac1bfd5040ab15980c9b435", "emoji_id": "001"}


def personalized(**content) -> dict:
    document = valid_document()
    text = {"type": "text", "text": GREETING, "emojis": [{"index": GREETING.index("$"), **EMOJI}]}
    document["content"]["messages"][0] = text
    imagemap = document["content"]["messages"][1]
    imagemap["alt_text"] = "Sale for {{ profile.first_name }}"
    imagemap["actions"][0]["link_uri"] = "https://shop.example.com/sale?tier={{ profile.loyalty_tier }}&x=1"
    document["content"].update(content)
    return document


def campaign_of(document: dict):
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    campaign, problems = campaign_from_text(text, "test_campaign.yaml")
    assert problems == [], [str(p) for p in problems]
    return campaign


def test_each_recipient_gets_its_values_and_the_default_when_a_value_is_empty():
    bundle = bundle_of(campaign_of(personalized()))
    assert bundle.columns == ["first_name", "loyalty_tier"]
    hanako = bundle.render({"first_name": "花子", "loyalty_tier": "gold"})
    assert hanako[0]["text"] == "花子さん、こんにちは $ 🌸"
    assert hanako[1]["altText"] == "Sale for 花子"
    assert hanako[1]["actions"][0]["linkUri"].startswith("https://shop.example.com/sale?tier=gold&x=1&utm_")
    for empty in (None, "", "   "):
        assert bundle.render({"first_name": empty})[0]["text"] == "thereさん、こんにちは $ 🌸"
    assert bundle.render(None)[1]["altText"] == "Sale for ", "no default: the empty value"


def test_an_emoji_stays_on_its_dollar_whatever_the_length_of_the_value():
    bundle = bundle_of(campaign_of(personalized()))
    for name in ("A", "𠮷野家の長い名前", "$$", ""):
        text = bundle.render({"first_name": name})[0]
        index = text["emojis"][0]["index"]
        utf16 = text["text"].encode("utf-16-le")
        assert utf16[2 * index : 2 * index + 2].decode("utf-16-le") == "$", name


def test_a_campaign_without_placeholders_sends_exactly_what_it_sent_before():
    campaign = campaign_of(valid_document())
    bundle = bundle_of(campaign)
    assert not bundle.personalized
    assert bundle.render({"first_name": "x"}) == campaign.wire_messages()


@settings(max_examples=examples(300), deadline=None)
@given(value=st.text(max_size=40), tier=st.text(max_size=20))
def test_values_are_inserted_as_written_never_read_as_markup_or_placeholders(value, tier):
    """Whatever a value holds ({{ }}, tags, '$', a token's shape), it is inserted once, as text."""
    bundle = bundle_of(campaign_of(personalized()))
    body = bundle.render({"first_name": value, "loyalty_tier": tier})
    shown = value if value.strip() else "there"
    assert body[0]["text"] == f"{shown}さん、こんにちは $ 🌸"
    assert body[1]["altText"] == f"Sale for {value if value.strip() else ''}"
    link = body[1]["actions"][0]["linkUri"]
    query_value = link.split("tier=", 1)[1].split("&", 1)[0]
    assert unquote(query_value) == (tier if tier.strip() else ""), "a link carries the value percent-encoded"
    assert query_value == quote(tier if tier.strip() else "", safe="")
    assert bundle.render({"first_name": value, "loyalty_tier": tier}) == body, (
        "the same values, the same body"
    )


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (
            lambda d: d["content"]["messages"][0].update(text="Hi {{ profile.name.upper() }}", emojis=None),
            "content.messages[0].text",
            "is not a placeholder",
        ),
        (
            lambda d: d["content"]["messages"][0].update(text="Hi {{ name }}", emojis=None),
            "content.messages[0].text",
            "is not a placeholder",
        ),
        (
            lambda d: d["content"]["messages"][0].update(text="Hi {{ profile.x | upper }}", emojis=None),
            "content.messages[0].text",
            "is not a placeholder",
        ),
        (
            lambda d: d["content"]["messages"][1]["actions"][1].update(text="{{ profile.first_name }}"),
            "content.messages[1].actions[1].text",
            "placeholders are filled only in",
        ),
        (
            lambda d: d["content"]["messages"][1]["actions"][0].update(
                link_uri="https://shop.example.com/{{ profile.first_name }}/sale"
            ),
            "content.messages[1].actions[0].link_uri",
            "may only stand in a query value",
        ),
        (
            lambda d: d["content"]["messages"][0].update(
                text="Go https://shop.example.com/{{ profile.first_name }}", emojis=None
            ),
            "content.messages[0].text",
            "may only stand in a query value",
        ),
        (
            lambda d: d["content"].update(delivery_mode="multicast"),
            "content.delivery_mode",
            "multicast sends one body to every recipient",
        ),
        (
            lambda d: d["content"]["messages"][0].update(text="PLHq0qZ {{ profile.a }}", emojis=None),
            "content.messages[0].text",
            "is reserved",
        ),
        (
            lambda d: d["content"]["messages"][0].update(
                text='{{ profile.a | default("$") }}', emojis=[{"index": 24, **EMOJI}]
            ),
            "content.messages[0].emojis[0].index",
            "points inside a placeholder",
        ),
    ],
    ids=[
        "an expression is refused",
        "a name outside profile is refused",
        "a filter other than default is refused",
        "a placeholder in a message action's text is refused",
        "a placeholder in a link's path is refused",
        "a placeholder in the path of a link inside a text is refused",
        "multicast with a personalized bundle is refused",
        "text that looks like the internal token is refused",
        "an emoji on a '$' inside a default is refused",
    ],
)
def test_what_cannot_be_filled_safely_is_a_problem_naming_the_field(change, path, words):
    document = personalized()
    change(document)
    problems = problems_of(document)
    assert any(p.path == path and words in p.message for p in problems), [str(p) for p in problems]
    assert all(p.file == "test_campaign.yaml" for p in problems)


def test_a_placeholder_in_a_link_query_value_passes_the_link_rules():
    assert problems_of(personalized()) == []


def test_a_column_the_segment_does_not_return_is_named_with_the_ones_it_does():
    bundle = bundle_of(campaign_of(personalized()))
    problems = column_problems(bundle, ["profile_id", "line_user_id", "FIRST_NAME"], "segments/x.sql")
    assert problems == [
        (
            ("content", "messages", 1, "actions", 0, "link_uri"),
            "{{ profile.loyalty_tier }}: the segment query segments/x.sql returns no column 'loyalty_tier' "
            "(it returns profile_id, line_user_id, FIRST_NAME)",
        )
    ], "column names match whatever their case (PostgreSQL folds unquoted names)"


def test_the_longest_values_are_checked_against_lines_limits():
    document = personalized()
    document["content"]["messages"][0] = {"type": "text", "text": "x" * 4990 + " {{ profile.first_name }}"}
    bundle = bundle_of(campaign_of(document))
    short, long = Longest(), Longest()
    short.add("Hanako")
    for value in ("Hanako", "𠮷" * 5):  # 10 UTF-16 units: 4991 + 10 > 5000
        long.add(value)
    tier = Longest()
    tier.add("gold")
    assert length_problems(bundle, {"first_name": short, "loyalty_tier": tier}) == []
    problems = length_problems(bundle, {"first_name": long, "loyalty_tier": tier})
    assert problems == [
        (
            ("content", "messages", 0, "text"),
            f"up to 5,001 characters (UTF-16) with the segment's longest values (first_name: 10 characters), "
            f"LINE allows {TEXT_MAX:,}",
        )
    ]
    assert utf16_len(bundle.render({"first_name": "𠮷" * 5})[0]["text"]) == 5001


def test_a_long_encoded_value_in_a_link_is_checked_encoded():
    bundle = bundle_of(campaign_of(personalized()))
    tier = Longest()
    tier.add("ゴールド" * 80)  # 320 characters, 2,880 percent-encoded
    first = Longest()
    first.add("A")
    problems = length_problems(bundle, {"first_name": first, "loyalty_tier": tier})
    assert [loc for loc, _ in problems] == [("content", "messages", 1, "actions", 0, "link_uri")]
    assert "LINE allows 1,000" in problems[0][1]


def test_the_docs_form_shows_the_placeholders_as_written():
    bundle = bundle_of(campaign_of(personalized()))
    shown = bundle.as_written()
    assert shown[0]["text"] == '{{ profile.first_name | default("there") }}さん、こんにちは $ 🌸'
    assert "tier={{ profile.loyalty_tier }}&x=1&utm_" in json.dumps(shown[1], ensure_ascii=False)


def test_the_preview_says_it_is_sent_by_push_and_shows_sample_renderings():
    from line_oa.campaign.preview import render_preview

    html = render_preview(campaign_of(personalized()))
    assert "<h3>Personalized</h3>" in html
    assert "Sent by push, one message per recipient" in html
    assert "‹first_name›さん、こんにちは" in html, "where each value goes"
    assert "thereさん、こんにちは" in html, "what an empty value gives"
    assert "tier={{ profile.loyalty_tier }}&amp;x=1&amp;utm_" in html, "the link as written, tagged"
    assert "<h3>Personalized</h3>" not in render_preview(campaign_of(valid_document()))


def test_the_dag_docs_name_the_columns_and_the_push_delivery():
    from line_oa.integration.dag_docs import describe

    docs = describe(campaign_of(personalized(delivery_mode="auto")))
    assert "(personalized: sent by push)" in docs
    assert "- **Personalization**: `profile.first_name`, `profile.loyalty_tier` from the segment" in docs
    assert '1. text: {{ profile.first_name | default("there") }}さん、こんにちは $ 🌸' in docs
    plain = describe(campaign_of(valid_document()))
    assert "- **Personalization**: none (every recipient gets the same messages)" in plain


def test_a_personalized_auto_campaign_gets_the_push_tasks_timeout_of_push():
    from line_oa.campaign.personalization import is_personalized
    from line_oa.integration.dag_factory import push_task_timeout

    auto = campaign_of(personalized(delivery_mode="auto"))
    push = campaign_of(personalized(delivery_mode="push"))
    shared = campaign_of(valid_document())
    assert is_personalized(auto.content)
    assert not is_personalized(shared.content)
    assert push_task_timeout(auto) == push_task_timeout(push) > push_task_timeout(shared)
