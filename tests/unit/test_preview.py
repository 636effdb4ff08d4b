"""The smartphone preview: what a reviewer sees of a campaign before it is sent.

The pages are parsed as XML (they are well-formed by design), so each test reads the elements a
person would look at: bubbles in order, imagemap areas with their labels and links, emoji chips,
the tagged links list and the problems under their tab.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
import yaml

from line_oa.campaign.model import Campaign
from line_oa.campaign.preview import (
    TAB_TITLES,
    PreviewContent,
    preview_file,
    preview_page,
    render_preview,
)
from line_oa.campaign.preview_style import IMAGEMAP_WIDTH
from line_oa.campaign.validation import validate_campaign_file

from .campaign_docs import EXAMPLES, FIXTURES, SQL_ROOT, valid_document

BEFORE_SPRING_SALE = datetime(2027, 1, 1, tzinfo=UTC)


def parse(document: str) -> ET.Element:
    """Parse a preview page or fragment; fails when it is not well-formed."""
    return ET.fromstring(document.split("\n", 1)[1] if document.startswith("<!DOCTYPE") else document)


def text_of(element: ET.Element) -> str:
    return "".join(element.itertext())


def spring_sale() -> Campaign:
    report = validate_campaign_file(EXAMPLES / "spring_sale.yaml", now=BEFORE_SPRING_SALE, sql_root=SQL_ROOT)
    assert report.ok, report.problems
    return report.campaign


def campaign_of(document: dict) -> Campaign:
    return Campaign.model_validate(document)


def test_spring_sale_shows_both_imagemap_areas_labelled_with_their_actions():
    campaign = spring_sale()
    tagged_uri = campaign.wire_messages()[1]["actions"][0]["linkUri"]
    page = parse(preview_page(campaign))
    areas = page.findall(".//*[@data-area]")
    assert [area.get("data-action") for area in areas] == ["uri", "message"]
    shop, more = areas
    assert shop.tag == "a"
    assert shop.get("href") == tagged_uri
    assert tagged_uri.endswith("utm_campaign=spring_sale&utm_content=spring_banner")
    assert "Shop the sale" in text_of(shop)
    assert f"opens {tagged_uri}" in text_of(shop)
    assert "More" in text_of(more)
    assert "sends \u201cTell me more about the spring sale\u201d" in text_of(more)


def test_spring_sale_areas_cover_the_image_where_base_size_puts_them():
    page = parse(render_preview(spring_sale()))
    styles = [area.get("style") for area in page.findall(".//*[@data-area]")]
    assert styles == [
        "left: 0%; top: 0%; width: 100%; height: 67.31%",
        "left: 0%; top: 67.31%; width: 100%; height: 32.69%",
    ]


def _imagemap_document(height: int) -> dict:
    document = valid_document()
    imagemap = document["content"]["messages"][1]
    imagemap["base_size"] = {"width": 1040, "height": height}
    imagemap["actions"] = [
        {
            "type": "uri",
            "link_uri": "https://shop.example.com/a",
            "area": {"x": 0, "y": 0, "width": 1040, "height": height},
        }
    ]
    return document


@pytest.mark.parametrize(
    "height",
    [1040, 520, 1560, 701, 2080],
    ids=["square", "half as high as wide", "taller than wide", "odd height", "twice as high"],
)
def test_imagemap_is_drawn_at_the_aspect_ratio_of_its_base_size(height):
    page = parse(render_preview(campaign_of(_imagemap_document(height))))
    (imagemap,) = page.findall(".//*[@data-base-height]")
    width, drawn = map(
        float, re.fullmatch(r"width: ([\d.]+)px; height: ([\d.]+)px", imagemap.get("style")).groups()
    )
    assert width == IMAGEMAP_WIDTH
    assert drawn / width == pytest.approx(height / 1040, abs=0.0001)
    assert (imagemap.get("data-base-width"), imagemap.get("data-base-height")) == ("1040", str(height))


def test_imagemap_keeps_its_layout_when_the_image_does_not_load():
    page = parse(render_preview(spring_sale()))
    (imagemap,) = page.findall(".//*[@data-base-height]")
    placeholder, image = list(imagemap)[:2]
    assert placeholder.get("class") == "lo-placeholder"
    assert text_of(placeholder) == "image 1040 \u00d7 1040"
    caption = page.find(".//*[@class='lo-caption']")
    assert "image https://cdn.example.com/imagemaps/spring_sale_2027/1040" in text_of(caption)
    assert (
        image.get("style")
        == 'background-image: url("https://cdn.example.com/imagemaps/spring_sale_2027/1040")'
    )
    assert not page.findall(".//img")  # a broken <img> would draw its own icon over the layout


def test_image_url_cannot_break_out_of_the_css_url():
    document = valid_document()
    document["content"]["messages"][1]["base_url"] = "https://cdn.example.com/a\"b')c"
    page = parse(render_preview(campaign_of(document)))
    (image,) = page.findall(".//*[@class='lo-image']")
    assert image.get("style") == 'background-image: url("https://cdn.example.com/a%22b%27%29c/1040")'


def test_video_area_is_marked_with_what_plays_and_its_tagged_link():
    campaign = Campaign.model_validate(
        yaml.safe_load((FIXTURES / "valid" / "full_featured.yaml").read_text())
    )
    page = parse(render_preview(campaign))
    (video,) = page.findall(".//*[@data-action='video']")
    assert "https://cdn.example.com/videos/new_in.mp4" in text_of(video)
    assert "Watch more: https://shop.example.com/new/video?utm_source=line_oa" in text_of(video)
    assert video.get("style") == "left: 0%; top: 0%; width: 100%; height: 56.25%"


def test_bubbles_are_drawn_in_the_order_of_the_bundle():
    document = valid_document()
    messages = document["content"]["messages"]
    document["content"]["messages"] = [messages[1], {"type": "text", "text": "second"}, messages[0]]
    page = parse(render_preview(campaign_of(document)))
    rows = page.findall(".//*[@class='lo-row']")
    assert [(row.get("data-message"), row.get("data-type")) for row in rows] == [
        ("1", "imagemap"),
        ("2", "text"),
        ("3", "text"),
    ]
    assert text_of(rows[1]).endswith("second")
    assert "Hello https://shop.example.com/sale?utm_source=line" in text_of(rows[2])


def test_chat_header_names_the_sender_account():
    page = parse(render_preview(spring_sale()))
    assert text_of(page.find(".//*[@class='lo-chat-title']")) == "line_oa_default"
    page = parse(render_preview(spring_sale(), sender_name="Example Shop"))
    assert text_of(page.find(".//*[@class='lo-chat-title']")) == "Example Shop"


def test_line_emoji_placeholders_are_drawn_as_chips_naming_the_emoji():
    document = valid_document()
    document["content"]["messages"][0] = {
        "type": "text",
        "text": "🌸$ Sale https://shop.example.com/s $!",
        "emojis": [
            {"index": 2, "product_id": "5ac1bfd5040ab15980c9b435", "emoji_id": "001"},
            {"index": 36, "product_id": "5ac21a8c040ab15980c9b43f", "emoji_id": "007"},
        ],
    }
    page = parse(render_preview(campaign_of(document)))
    bubble = page.find(".//*[@data-type='text']/*/*[@class='lo-bubble lo-text']")
    chips = bubble.findall("*[@class='lo-emoji']")
    assert [(chip.get("data-product-id"), chip.get("data-emoji-id")) for chip in chips] == [
        ("5ac1bfd5040ab15980c9b435", "001"),
        ("5ac21a8c040ab15980c9b43f", "007"),
    ]
    assert chips[0].get("title") == "LINE emoji 5ac1bfd5040ab15980c9b435/001"
    assert "$" not in text_of(bubble)
    (link,) = bubble.findall("a")
    assert link.get("href") == "https://shop.example.com/s?utm_source=line&utm_medium=social"
    assert text_of(bubble).startswith("🌸\u263a 5ac1bf\u2026/001 Sale https://shop.example.com/s?utm_source")


def test_every_link_is_listed_as_written_and_as_tagged():
    page = parse(render_preview(spring_sale()))
    items = page.findall(".//*[@class='lo-links']/li")
    assert [item.get("data-where") for item in items] == [
        "message 1 (text)",
        "message 2 (imagemap), area 1",
    ]
    assert items[0].find("code").text == "https://shop.example.com/sale/spring?ref=line"
    assert items[0].find("a").get("href") == (
        "https://shop.example.com/sale/spring?ref=line&utm_source=line&utm_medium=social"
        "&utm_campaign=spring_sale&utm_content=spring_banner"
    )


def test_an_international_link_of_an_area_is_listed_as_lines_receives_it():
    document = valid_document()
    document["content"]["messages"][1]["actions"][0]["link_uri"] = "https://例え.jp/商品"
    campaign = campaign_of(document)
    page = parse(render_preview(campaign))
    area = next(i for i in page.findall(".//*[@class='lo-links']/li") if "area 1" in i.get("data-where"))
    sent = campaign.wire_messages()[1]["actions"][0]["linkUri"]
    assert sent.startswith("https://%E4%BE%8B%E3%81%88.jp/%E5%95%86%E5%93%81?utm_source=line")
    assert area.find("a").get("href") == sent, "the preview shows the link in the form sent"


SCRIPT = "<script>alert('x')</script>"


def test_every_text_from_the_file_is_escaped():
    document = valid_document()
    document["name"] = f"Sale {SCRIPT}"
    document["content"]["messages"][0]["text"] = f'{SCRIPT} & "quotes" https://shop.example.com/?q=<b>'
    imagemap = document["content"]["messages"][1]
    imagemap["alt_text"] = SCRIPT
    imagemap["actions"][0]["label"] = '"><script>'
    imagemap["actions"][1]["text"] = SCRIPT
    campaign = campaign_of(document)
    page = preview_page(campaign, sender_name=SCRIPT)
    assert "<script" not in page
    assert page.count("&lt;script&gt;") >= 5
    parsed = parse(page)
    assert parsed.find(".//script") is None
    assert SCRIPT in text_of(parsed.find(".//*[@data-type='text']"))
    assert parsed.find(".//title").text == f"Preview: Sale {SCRIPT}"


def test_page_allows_no_script_and_images_only_over_https():
    page = parse(preview_page(spring_sale()))
    (policy,) = [meta for meta in page.iter("meta") if meta.get("http-equiv") == "Content-Security-Policy"]
    assert policy.get("content") == "default-src 'none'; img-src https:; style-src 'unsafe-inline'"


def _tab_groups(page: ET.Element) -> dict[str, str]:
    return {group.get("data-tab"): text_of(group) for group in page.findall(".//*[@class='lo-tab-group']")}


def test_problems_are_listed_under_their_tab_and_clean_tabs_are_ticked(tmp_path):
    document = valid_document()
    document["id"] = "late"
    document["target_audience"]["segment"] = "nobody"
    document["delivery_schedule"] = {"type": "scheduled", "send_at": datetime(2020, 1, 1, tzinfo=UTC)}
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = preview_file(path, sql_root=SQL_ROOT)
    groups = _tab_groups(parse(result.page()))
    assert list(groups) == list(TAB_TITLES)
    assert "1 problem" in groups["target_audience"]
    assert "target_audience.segment: segment SQL file" in groups["target_audience"]
    assert (
        "delivery_schedule.send_at: 2020-01-01T00:00:00+00:00 is in the past" in groups["delivery_schedule"]
    )
    for tab in ("campaign", "content", "activation", "utm_tracking"):
        assert groups[tab].endswith("no problems")


def test_a_file_with_schema_problems_still_shows_the_messages_that_are_valid():
    result = preview_file(FIXTURES / "invalid" / "line_limits.yaml", sql_root=SQL_ROOT)
    assert result.report.campaign is None
    page = parse(result.page())
    shown = [row.get("data-type") for row in page.findall(".//*[@class='lo-row']")]
    broken = [text_of(box) for box in page.findall(".//*[@class='lo-broken']")]
    assert len(shown) == len(result.content.messages)
    assert broken
    assert all("see its problems under Campaign Content" in text for text in broken)
    assert "content.messages[1].base_url: ends with a file extension" in _tab_groups(page)["content"]


def test_a_file_that_cannot_be_parsed_has_no_content_and_shows_its_problem():
    result = preview_file(FIXTURES / "invalid" / "broken_yaml.yaml")
    assert result.content is None
    page = parse(result.page())
    assert "cannot be parsed" in text_of(page.find(".//*[@class='lo-broken']"))
    assert "YAML syntax error" in _tab_groups(page)["campaign"]


def test_a_draft_says_it_will_not_deliver():
    content = PreviewContent.of(
        validate_campaign_file(EXAMPLES / "summer_preview.yaml", sql_root=SQL_ROOT).campaign
    )
    assert content.status == "draft"
    page = parse(render_preview(content))
    assert page.find(".//*[@class='lo-badge lo-draft']").text == "draft: will not deliver"
    assert page.find(".//p[@class='lo-ok']").text == "No problems: a draft; set status: launched to deliver."
    launched = parse(render_preview(spring_sale()))
    assert launched.find(".//p[@class='lo-ok']").text == "No problems: ready to launch."


@pytest.mark.parametrize("name", ["spring_sale", "summer_preview", "welcome_back"])
def test_every_shipped_example_renders_with_its_day_label(name):
    result = preview_file(EXAMPLES / f"{name}.yaml", now=BEFORE_SPRING_SALE, sql_root=SQL_ROOT)
    assert result.report.ok
    page = parse(result.page())
    day = text_of(page.find(".//*[@class='lo-day']"))
    assert (
        day
        == {
            "spring_sale": "Sat 20 Mar 2027 10:00 +09:00",
            "summer_preview": "Tue 01 Jun 2027 10:00 +09:00",
            "welcome_back": "when the campaign is triggered",
        }[name]
    )


def test_a_broken_message_keeps_the_numbers_of_the_messages_after_it(tmp_path):
    document = valid_document()
    document["content"]["messages"][0]["text"] = "x" * 5001
    path = tmp_path / "test_campaign.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = preview_file(path, sql_root=SQL_ROOT)
    assert result.report.campaign is None
    page = parse(result.page())
    assert [row.get("data-type") for row in page.findall(".//*[@class='lo-row']")] == ["invalid", "imagemap"]
    assert [item.get("data-where") for item in page.findall(".//*[@class='lo-links']/li")] == [
        "message 2 (imagemap), area 1"
    ]
    assert "content.messages[0].text: 5001 characters" in _tab_groups(page)["content"]


@pytest.mark.parametrize("broken", [False, True], ids=["a valid file", "a file with a broken message"])
def test_the_heading_says_when_the_campaign_does_not_send(tmp_path, broken):
    document = valid_document()
    document["delivery_schedule"]["quiet_hours"] = {
        "start": "21:00",
        "end": "09:00",
        "timezone": "Asia/Tokyo",
    }
    if broken:
        document["content"]["messages"][0]["text"] = "x" * 5001
    path = tmp_path / "test_campaign.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    page = parse(preview_file(path, sql_root=SQL_ROOT).page())
    meta = [text_of(p) for p in page.iter("p") if p.get("class") == "lo-meta"]
    assert any("· not in quiet hours 21:00–09:00 Asia/Tokyo ·" in line for line in meta), meta
