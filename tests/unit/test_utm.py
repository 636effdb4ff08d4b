"""UTM tagging: how links in messages change, as a table a marketer can read."""

from __future__ import annotations

import pytest

from line_oa.campaign.utm import find_urls, sent_link, tag_text, tag_url, utm_parameters

LINE_SOCIAL = {"utm_source": "line", "utm_medium": "social"}
WITH_CAMPAIGN = {"utm_source": "line", "utm_medium": "social", "utm_campaign": "spring_sale"}

URL_CASES = [
    # (id, link as written, parameters, link as sent)
    (
        "a bare link gets every parameter in order",
        "https://shop.example.com/sale",
        WITH_CAMPAIGN,
        "https://shop.example.com/sale?utm_source=line&utm_medium=social&utm_campaign=spring_sale",
    ),
    (
        "the link's own parameters stay first and in order",
        "https://shop.example.com/sale?b=2&a=1",
        LINE_SOCIAL,
        "https://shop.example.com/sale?b=2&a=1&utm_source=line&utm_medium=social",
    ),
    (
        "a parameter already in the link keeps the link's value",
        "https://shop.example.com/?utm_source=newsletter",
        LINE_SOCIAL,
        "https://shop.example.com/?utm_source=newsletter&utm_medium=social",
    ),
    (
        "a link that already has every parameter is unchanged",
        "https://shop.example.com/?utm_medium=x&utm_source=y",
        LINE_SOCIAL,
        "https://shop.example.com/?utm_medium=x&utm_source=y",
    ),
    (
        "empty values are not added",
        "https://shop.example.com/",
        {"utm_source": "line", "utm_campaign": ""},
        "https://shop.example.com/?utm_source=line",
    ),
    (
        "the fragment stays at the end",
        "https://shop.example.com/sale?a=1#top",
        LINE_SOCIAL,
        "https://shop.example.com/sale?a=1&utm_source=line&utm_medium=social#top",
    ),
    (
        "a fragment without a query gets the query before it",
        "https://shop.example.com/sale#top",
        LINE_SOCIAL,
        "https://shop.example.com/sale?utm_source=line&utm_medium=social#top",
    ),
    (
        "percent-encoding already in the link is kept as written",
        "https://shop.example.com/%E6%98%A5?q=a%20b&x=%2F",
        LINE_SOCIAL,
        "https://shop.example.com/%E6%98%A5?q=a%20b&x=%2F&utm_source=line&utm_medium=social",
    ),
    (
        "values with spaces and Japanese are percent-encoded",
        "https://shop.example.com/",
        {"utm_campaign": "春 sale"},
        "https://shop.example.com/?utm_campaign=%E6%98%A5%20sale",
    ),
    (
        "an encoded parameter name in the link counts as present",
        "https://shop.example.com/?utm%5Fsource=mail",
        LINE_SOCIAL,
        "https://shop.example.com/?utm%5Fsource=mail&utm_medium=social",
    ),
    (
        "a dangling question mark gets no extra ampersand",
        "https://shop.example.com/?",
        LINE_SOCIAL,
        "https://shop.example.com/?utm_source=line&utm_medium=social",
    ),
    (
        "a trailing ampersand gets no extra ampersand",
        "https://shop.example.com/?a=1&",
        LINE_SOCIAL,
        "https://shop.example.com/?a=1&utm_source=line&utm_medium=social",
    ),
    (
        "an http link is tagged like https",
        "http://shop.example.com/",
        LINE_SOCIAL,
        "http://shop.example.com/?utm_source=line&utm_medium=social",
    ),
    (
        "an upper-case scheme is still a web link",
        "HTTPS://shop.example.com/",
        LINE_SOCIAL,
        "HTTPS://shop.example.com/?utm_source=line&utm_medium=social",
    ),
    (
        "a non-ASCII path is tagged after the whole path and sent percent-encoded",
        "https://shop.example.com/商品/123",
        LINE_SOCIAL,
        "https://shop.example.com/%E5%95%86%E5%93%81/123?utm_source=line&utm_medium=social",
    ),
    (
        "an IDN host is tagged and sent in punycode",
        "https://例え.jp/セール",
        LINE_SOCIAL,
        "https://xn--r8jz45g.jp/%E3%82%BB%E3%83%BC%E3%83%AB?utm_source=line&utm_medium=social",
    ),
    (
        "a non-ASCII query and fragment are percent-encoded, the tags before the fragment",
        "https://shop.example.com/s?q=春#上",
        LINE_SOCIAL,
        "https://shop.example.com/s?q=%E6%98%A5&utm_source=line&utm_medium=social#%E4%B8%8A",
    ),
    (
        "an IDN host with a port keeps its port",
        "https://例え.jp:8443/",
        {},
        "https://xn--r8jz45g.jp:8443/",
    ),
    ("a line link is untouched", "line://app/1234-abcd?x=1", LINE_SOCIAL, "line://app/1234-abcd?x=1"),
    ("a tel link is untouched", "tel:+81312345678", LINE_SOCIAL, "tel:+81312345678"),
    ("no parameters leave the link untouched", "https://shop.example.com/", {}, "https://shop.example.com/"),
]


@pytest.mark.parametrize(
    ("link", "params", "sent"), [c[1:] for c in URL_CASES], ids=[c[0] for c in URL_CASES]
)
def test_tag_url(link, params, sent):
    assert tag_url(link, params) == sent


TAGS = "utm_source=line&utm_medium=social"
TEXT_CASES = [
    # (id, text as written, text as sent)
    (
        "a full stop after a link stays outside it",
        "Shop now: https://shop.example.com/sale.",
        f"Shop now: https://shop.example.com/sale?{TAGS}.",
    ),
    (
        "a comma after a link stays outside it",
        "See https://a.example.com/x, then rest",
        f"See https://a.example.com/x?{TAGS}, then rest",
    ),
    (
        "a closing parenthesis around a link stays outside it",
        "(details: https://a.example.com/x)",
        f"(details: https://a.example.com/x?{TAGS})",
    ),
    (
        "balanced parentheses inside a link are kept",
        "https://en.example.org/wiki/Sale_(event) now",
        f"https://en.example.org/wiki/Sale_(event)?{TAGS} now",
    ),
    (
        "a Japanese closing bracket ends the link",
        "「https://shop.example.com/sale」をご覧ください",
        f"「https://shop.example.com/sale?{TAGS}」をご覧ください",
    ),
    (
        "a Japanese full stop ends the link",
        "詳細はhttps://shop.example.com/sale。",
        f"詳細はhttps://shop.example.com/sale?{TAGS}。",
    ),
    (
        "a full-width space ends the link",
        "https://shop.example.com/a\u3000次へ",
        f"https://shop.example.com/a?{TAGS}\u3000次へ",
    ),
    (
        "every link in a text is tagged",
        "https://a.example.com and https://b.example.com/?x=1",
        f"https://a.example.com?{TAGS} and https://b.example.com/?x=1&{TAGS}",
    ),
    (
        "a LINE emoji placeholder right after a link is not part of it",
        "Go https://a.example.com/x$ now",
        f"Go https://a.example.com/x?{TAGS}$ now",
    ),
    (
        "a link with a non-ASCII path is one link, sent as one ASCII link",
        "新作 https://shop.example.com/商品/123 をチェック",
        f"新作 https://shop.example.com/%E5%95%86%E5%93%81/123?{TAGS} をチェック",
    ),
    (
        "a link ending in a non-ASCII segment keeps it",
        "見る: https://shop.example.com/商品。",
        f"見る: https://shop.example.com/%E5%95%86%E5%93%81?{TAGS}。",
    ),
    (
        "an IDN host is a link and is tagged",
        "「https://例え.jp/」へ",
        f"「https://xn--r8jz45g.jp/?{TAGS}」へ",
    ),
    (
        "Japanese written right after an ASCII link is not taken into it",
        "https://shop.example.com/saleをご覧ください",
        f"https://shop.example.com/sale?{TAGS}をご覧ください",
    ),
    ("a line link in text is untouched", "Add us: line://ti/p/@shop.", "Add us: line://ti/p/@shop."),
    ("a scheme with nothing after it is not a link", "type https:// in the bar", "type https:// in the bar"),
    ("text without links is unchanged", "Hello 🌸 world", "Hello 🌸 world"),
]


@pytest.mark.parametrize(("text", "sent"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_tag_text(text, sent):
    assert tag_text(text, LINE_SOCIAL) == sent


PARAMETER_CASES = [
    # (id, overrides, parameters)
    (
        "the defaults are line and social, without a campaign",
        {},
        {"utm_source": "line", "utm_medium": "social"},
    ),
    (
        "campaign id placeholder fills utm_campaign",
        {"utm_campaign": "{{campaign.id}}"},
        {"utm_source": "line", "utm_medium": "social", "utm_campaign": "spring_sale"},
    ),
    (
        "placeholders may have spaces inside the braces",
        {"utm_campaign": "{{ campaign.name }}"},
        {"utm_source": "line", "utm_medium": "social", "utm_campaign": "Spring Sale"},
    ),
    (
        "an override replaces a default in place",
        {"utm_content": "banner", "utm_source": "line_oa"},
        {"utm_source": "line_oa", "utm_medium": "social", "utm_content": "banner"},
    ),
    ("an empty override removes a default", {"utm_medium": ""}, {"utm_source": "line"}),
    (
        "placeholders mix with text",
        {"utm_term": "{{campaign.id}}-2027"},
        {"utm_source": "line", "utm_medium": "social", "utm_term": "spring_sale-2027"},
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"), [c[1:] for c in PARAMETER_CASES], ids=[c[0] for c in PARAMETER_CASES]
)
def test_utm_parameters(overrides, expected):
    params = utm_parameters("spring_sale", "Spring Sale", overrides)
    assert list(params.items()) == list(expected.items())


def test_find_urls_reports_spans_without_punctuation():
    text = "A https://a.example.com/x. B"
    assert [text[start:end] for start, end in find_urls(text)] == ["https://a.example.com/x"]


# What a uri action sends: LINE's reference example (#url-encoding) and international links.
ACTION_CASES = [
    (
        "LINE's own example: spaces in query and fragment are percent-encoded",
        "https://example.com/path?q=Good morning#Good afternoon",
        {},
        "https://example.com/path?q=Good%20morning#Good%20afternoon",
    ),
    (
        "an IDN host is percent-encoded as LINE's reference asks of domain names",
        "https://例え.jp/商品",
        LINE_SOCIAL,
        "https://%E4%BE%8B%E3%81%88.jp/%E5%95%86%E5%93%81?utm_source=line&utm_medium=social",
    ),
    (
        "a line link with Japanese text is percent-encoded and not tagged",
        "line://msg/text/こんにちは",
        LINE_SOCIAL,
        "line://msg/text/%E3%81%93%E3%82%93%E3%81%AB%E3%81%A1%E3%81%AF",
    ),
    (
        "an ASCII link is sent as written, tags added",
        "https://shop.example.com/a%20b",
        LINE_SOCIAL,
        "https://shop.example.com/a%20b?utm_source=line&utm_medium=social",
    ),
]


@pytest.mark.parametrize(
    ("link", "params", "sent"), [c[1:] for c in ACTION_CASES], ids=[c[0] for c in ACTION_CASES]
)
def test_sent_link(link, params, sent):
    assert sent_link(link, params) == sent
