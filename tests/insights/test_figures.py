"""What the report and the terminal show from stored rows: privacy nulls, links without UTM, the series."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from line_oa.insights.figures import Count, campaign_figures, summed, without_utm
from line_oa.insights.section import insights_html, insights_text

FETCH = {"unit": "spring_sale", "date_from": "20261203", "date_to": "20261205", "campaign_id": "spring_sale"}


def row(kind: str, day: str = "2026-12-05", seq: int = 0, url: str = "", **values) -> dict:
    base = dict.fromkeys(("unique_impression", "unique_click", "unique_media_played", "impression", "click"))
    return {**FETCH, "as_of_day": day, "kind": kind, "seq": seq, "url": url, "fetched_at": f"{day}T01:00:00",
            **base, **values}  # fmt: skip


@pytest.mark.parametrize(
    ("url", "page"),
    [
        ("https://shop.example.com/sale?utm_source=line&utm_medium=social", "https://shop.example.com/sale"),
        ("https://shop.example.com/?ref=qr&utm_campaign=x#top", "https://shop.example.com/?ref=qr#top"),
        ("https://shop.example.com/sale?UTM_Source=line", "https://shop.example.com/sale"),
        ("https://shop.example.com/sale?ref=line", "https://shop.example.com/sale?ref=line"),
    ],
    ids=["utm parameters removed", "other parameters and the fragment kept", "any case of utm_",
         "a link without utm parameters unchanged"],
)  # fmt: skip
def test_links_are_grouped_without_their_utm_parameters(url, page):
    assert without_utm(url) == page


def test_a_sum_with_withheld_values_is_a_lower_bound_and_all_withheld_stays_fewer_than_20():
    assert summed([None, None]).shown == "fewer than 20"
    assert summed([25, None]).shown == "at least 25"
    assert summed([25, 30]).shown == "55"
    assert Count(None).share_of(1000) == "under 20 users"
    assert Count(0).shown == "0"  # a real zero stays a zero


def test_the_same_page_in_two_messages_is_one_link_and_the_latest_day_is_shown():
    rows = [
        row("overview", "2026-12-04", unique_impression=100, unique_click=None),
        row("overview", unique_impression=400, unique_click=90),
        row("message", seq=1, impression=500, unique_impression=400),
        row("click", seq=1, url="https://shop.example.com/sale?utm_content=text", click=60, unique_click=50),
        row(
            "click",
            seq=2,
            url="https://shop.example.com/sale?utm_content=banner",
            click=None,
            unique_click=None,
        ),
        row("click", seq=2, url="https://shop.example.com/faq", click=30, unique_click=25),
    ]
    figures = campaign_figures(rows, delivered=1000)
    assert figures.as_of_day == "2026-12-05"
    assert figures.open_rate == "40.0%"
    assert [(link.url, link.unique_clicks.shown) for link in figures.links] == [
        ("https://shop.example.com/sale", "at least 50"),
        ("https://shop.example.com/faq", "25"),
    ]
    assert [(p.days_since_sending, p.unique_impressions, p.unique_clicks) for p in figures.series] == [
        (1, 100, None),
        (2, 400, 90),
    ]
    page = insights_html(figures)
    ET.fromstring(f"<div>{page}</div>")  # well-formed
    assert "40.0%" in page
    assert "at least 50" in page
    text = insights_text(figures, "spring_sale")
    assert "unique impressions: 400 (open rate 40.0%)" in text
    assert "  1 (2026-12-04): 100, fewer than 20" in text


def test_a_campaign_without_collected_figures_says_so():
    assert campaign_figures([], delivered=10) is None
    assert "not been collected yet" in insights_html(None)
    assert "not been collected yet" in insights_text(None, "spring_sale")


def test_values_from_line_are_escaped_in_the_report():
    rows = [row("overview", unique_impression=30), row("click", seq=1, url="https://x.example/<b>?a=1&b=2",
                                                         click=20, unique_click=20)]  # fmt: skip
    page = insights_html(campaign_figures(rows, delivered=100))
    assert "<b>" not in page
    assert "https://x.example/&lt;b&gt;?a=1&amp;b=2" in page
