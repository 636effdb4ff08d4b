"""The delivery report: a self-contained page that shows the run's counts, charts, reasons and messages."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from line_oa.integration.report import MAX_CHART_POINTS, downsample, render_report_html
from line_oa.vocabulary import Reason

SVG = "{http://www.w3.org/2000/svg}"

TEXT_MESSAGE = {"type": "text", "text": "Spring sale! See https://shop.example.com/sale?utm_source=line."}
IMAGEMAP_MESSAGE = {
    "type": "imagemap",
    "baseUrl": "https://cdn.example.com/imagemap/spring",
    "altText": "Spring collection",
    "baseSize": {"width": 1040, "height": 1040},
    "actions": [
        {
            "type": "uri",
            "linkUri": "https://shop.example.com/a",
            "area": {"x": 0, "y": 0, "width": 520, "height": 1040},
        },
        {"type": "message", "text": "Tell me more", "area": {"x": 520, "y": 0, "width": 520, "height": 1040}},
    ],
}


def make_summary(**changes):
    summary = {
        "campaign_id": "spring_sale",
        "campaign_name": "Spring sale",
        "dag_id": "line_campaign__spring_sale",
        "run_id": "manual__2025-03-01T09:00:00+00:00",
        "state": "Finished",
        "dry_run": False,
        "targeted": 50_000,
        "excluded": {"missing_recipient_id": 2_949, "duplicate_recipient": 1_029},
        "sent": 44_987,
        "failed": {"invalid_recipient_id": 499, "unknown_recipient": 443, "rejected_by_line": 0},
        "not_sent": 93,
        "test_sends": 2,
        "messages_billed": 89_974,
        "requests": 45_931,
        "retries": 17,
        "started_at": "2025-03-01T09:00:03+00:00",
        "finished_at": "2025-03-01T09:01:10+00:00",
        "duration_seconds": 67.2,
        "throughput_per_second": 669.4,
    }
    summary.update(changes)
    return summary


ZERO_SUMMARY = make_summary(
    targeted=0,
    excluded={},
    sent=0,
    failed={},
    not_sent=0,
    test_sends=0,
    messages_billed=0,
    requests=0,
    retries=0,
    duration_seconds=0.0,
    throughput_per_second=0.0,
    started_at=None,
    finished_at=None,
)


def render(
    summary=None, *, send_rate=(("2025-03-01T09:00", 30_000), ("2025-03-01T09:01", 14_987)), messages=None
):
    return render_report_html(
        summary or make_summary(),
        send_rate=list(send_rate),
        messages_preview=[TEXT_MESSAGE, IMAGEMAP_MESSAGE] if messages is None else messages,
    )


def parse(page: str) -> ET.Element:
    """Parse the page as XML: a page that does not parse is not well-formed."""
    return ET.fromstring(page.replace("<!DOCTYPE html>", "", 1))


def text_of(element: ET.Element, separator: str = " ") -> str:
    """Return the text a reader sees; ``separator`` goes between elements (cells, tiles)."""
    return " ".join(separator.join(element.itertext()).split())


def tile(page: str, name: str) -> str:
    root = parse(page)
    (found,) = [element for element in root.iter() if element.get("id") == f"tile-{name}"]
    return text_of(found)


def test_the_page_is_one_well_formed_document_without_scripts_or_remote_assets():
    page = render()
    root = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert not [element for element in root.iter() if element.tag in {"script", "link", "img", "iframe"}]
    assert "src=" not in page
    assert "url(" not in page


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("targeted", "50,000 targeted", id="targeted profiles are shown"),
        pytest.param("excluded", "3,978 excluded", id="exclusions are added up over reasons"),
        pytest.param("sent", "44,987 sent", id="sent recipients are shown"),
        pytest.param("failed", "942 failed", id="failures are added up over reasons"),
        pytest.param("not-sent", "93 not sent", id="recipients not yet sent are shown"),
        pytest.param("messages-billed", "89,974 messages billed", id="billed messages are shown"),
    ],
)
def test_count_tiles_show_the_run_counts(name, expected):
    assert tile(render(), name) == expected


def test_the_header_names_the_campaign_the_run_and_the_state():
    header = text_of(parse(render()).find(".//header"))
    for expected in (
        "Spring sale",
        "spring_sale",
        "line_campaign__spring_sale",
        "manual__2025-03-01",
        "Finished",
    ):
        assert expected in header
    assert "45,931 requests" in header
    assert "17 retries" in header
    assert "dry run" not in header


def test_a_dry_run_says_nothing_was_sent_to_line():
    assert "dry run: nothing was sent to LINE" in text_of(
        parse(render(make_summary(dry_run=True))).find(".//header")
    )


@pytest.mark.parametrize(
    "field",
    ["campaign_name", "campaign_id", "run_id", "state", "started_at"],
    ids=lambda field: f"markup in {field} is escaped",
)
def test_markup_from_the_campaign_or_run_is_shown_as_text_never_run(field):
    hostile = '<script>alert("x")</script>'
    page = render(make_summary(**{field: hostile}))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert hostile in text_of(parse(page))


def test_markup_in_messages_and_reasons_is_escaped():
    page = render(
        make_summary(failed={"<b>odd</b>": 3}),
        messages=[
            {"type": "text", "text": "<img src=x onerror=alert(1)> hi"},
            {**IMAGEMAP_MESSAGE, "altText": "<svg onload=alert(1)>"},
        ],
    )
    parse(page)
    assert "<img" not in page
    assert "<b>odd" not in page
    assert "<svg onload" not in page


def test_only_web_links_become_clickable():
    page = render(
        messages=[
            {
                **IMAGEMAP_MESSAGE,
                "actions": [
                    {
                        "type": "uri",
                        "linkUri": "javascript:alert(1)",
                        "area": {"x": 0, "y": 0, "width": 1, "height": 1},
                    }
                ],
            }
        ]
    )
    hrefs = [element.get("href") for element in parse(page).iter() if element.get("href")]
    assert hrefs == ["https://cdn.example.com/imagemap/spring/1040"]
    assert "javascript:alert(1)" in page


def test_the_text_preview_links_its_urls_without_trailing_punctuation():
    root = parse(render(messages=[TEXT_MESSAGE]))
    (bubble,) = [element for element in root.iter() if element.get("class") == "bubble"]
    assert text_of(bubble, separator="") == TEXT_MESSAGE["text"]
    assert [link.get("href") for link in bubble.iter() if link.get("href")] == [
        "https://shop.example.com/sale?utm_source=line"
    ]


def test_the_imagemap_preview_shows_alt_text_image_and_action_areas():
    root = parse(render(messages=[IMAGEMAP_MESSAGE]))
    (box,) = [element for element in root.iter() if element.get("class") == "imagemap"]
    shown = text_of(box)
    assert "Spring collection" in shown
    assert "1040×1040" in shown
    assert "uri at 0,0 520×1040: https://shop.example.com/a" in shown
    assert "message at 520,0 520×1040: sends “Tell me more”" in shown
    hrefs = [link.get("href") for link in box.iter() if link.get("href")]
    assert hrefs == ["https://cdn.example.com/imagemap/spring/1040", "https://shop.example.com/a"]


def test_failures_and_exclusions_are_listed_by_reason_with_what_to_do():
    rows = [[text_of(cell) for cell in row.iter("td")] for row in parse(render()).iter("tr")][1:]
    assert rows[0] == [
        "excluded",
        "missing_recipient_id",
        "2,949",
        "5.9%",
        Reason.MISSING_RECIPIENT_ID.meaning,
        Reason.MISSING_RECIPIENT_ID.what_to_do,
    ]
    assert [(row[0], row[1]) for row in rows] == [
        ("excluded", "missing_recipient_id"),
        ("excluded", "duplicate_recipient"),
        ("failed", "invalid_recipient_id"),
        ("failed", "unknown_recipient"),
        ("not sent", "not_sent"),
    ], "largest first, reasons with no recipient left out, recipients not yet sent last"


def test_a_reason_the_report_does_not_know_is_still_listed():
    rows = [
        [text_of(cell) for cell in row.iter("td")]
        for row in parse(render(make_summary(failed={"new_reason": 4}))).iter("tr")
    ]
    assert ["failed", "new_reason", "4", "0.0%"] in [row[:4] for row in rows]


def test_every_reason_of_the_delivery_log_is_explained():
    """Each reason's row shows its meaning and what to do, `quoted` names as code (texts: vocabulary)."""
    summary = make_summary(excluded={}, failed={reason.value: 1 for reason in Reason}, not_sent=0)
    table = parse(render(summary)).find(".//table")
    shown = {}
    for row in table.iter("tr"):
        cells = list(row.iter("td"))
        if cells:
            shown[text_of(cells[1])] = (text_of(cells[4], ""), text_of(cells[5], ""))

    def plain(text):
        return " ".join(text.replace("`", "").split())

    assert shown == {reason.value: (plain(reason.meaning), plain(reason.what_to_do)) for reason in Reason}
    code = [text_of(element) for element in table.iter("code")]
    assert "max_recipients" in code
    assert "activation.retry" in code


def test_a_run_with_nothing_at_all_still_renders():
    page = render(ZERO_SUMMARY, send_rate=[], messages=[])
    root = parse(page)
    assert tile(page, "targeted") == "0 targeted"
    assert "Nothing was sent in this run" in text_of(root)
    assert "No recipient failed or was excluded" in text_of(root)
    assert "nan" not in text_of(root).lower()


def test_the_send_rate_chart_draws_one_bar_per_bucket():
    root = parse(render(send_rate=[(f"09:00:{second:02d}", 100 + second) for second in range(40)]))
    bars = [rect for rect in root.iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]
    assert len(bars) == 40
    assert text_of(bars[-1]) == "09:00:39: 139"


def test_a_10k_point_series_is_drawn_with_at_most_300_bars_and_the_same_total():
    series = [(f"t{second:05d}", 1) for second in range(10_000)]
    started = time.perf_counter()
    page = render(send_rate=series)
    assert time.perf_counter() - started < 2
    bars = [rect for rect in parse(page).iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]
    assert 0 < len(bars) <= MAX_CHART_POINTS
    assert sum(int(text_of(bar).rsplit(": ", 1)[1].replace(",", "")) for bar in bars) == 10_000
    assert "each bar sums 34 consecutive buckets" in page
    assert len(page) < 200_000


@pytest.mark.parametrize(
    ("length", "limit", "expected_points"),
    [
        pytest.param(300, 300, 300, id="a series at the limit is kept as is"),
        pytest.param(301, 300, 151, id="one point over the limit halves the series"),
        pytest.param(0, 300, 0, id="an empty series stays empty"),
        pytest.param(10_000, 300, 295, id="10k points become fewer than 300"),
    ],
)
def test_downsample_keeps_the_total_and_the_first_label(length, limit, expected_points):
    series = [(f"b{index}", index) for index in range(length)]
    points, _ = downsample(series, limit)
    assert len(points) == expected_points
    assert sum(count for _, count in points) == sum(count for _, count in series)
    if series:
        assert points[0][0] == "b0"


def test_the_report_module_imports_no_airflow():
    code = "import sys, line_oa.integration.report; print(any(m.split('.')[0] == 'airflow' for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_report_defines_its_durations_and_rates_so_they_add_up():
    page = render(
        make_summary(
            duration_seconds=66.8, sending_seconds=12.0, sent=43_307, throughput_per_second=43_307 / 12
        )
    )
    timing = re.search(r'<p class="meta" id="timing">(.*?)</p>', page, re.S).group(1)
    assert "Run time 66.8 s (from validation to this summary)" in timing
    assert "sent during 12 s" in timing
    assert "3,608.9 recipients/s;" in timing, "sent / sending time"
    assert "648.3 recipients/s over the whole run time" in timing, "sent / run time"


def test_the_report_explains_sent_against_billed():
    page = render(make_summary(sent=43_307, messages_billed=42_024))
    note = re.search(r'<p class="meta" id="billing">(.*?)</p>', page, re.S).group(1)
    assert "43,307 sent, 42,024 billed, difference 1,283" in note
    assert "blocked" in note


def test_a_dry_run_report_shows_who_would_be_sent():
    page = render(make_summary(dry_run=True, sent=0, would_send=44_987, messages_billed=0))
    assert 'id="tile-would-send"><div class="value">44,987</div>' in page
    assert 'id="tile-sent"' not in page
    assert 'id="billing"' not in page


def test_a_resumed_run_report_lists_its_suspensions_and_resumes():
    history = [
        {"at": "2025-03-01T09:00:03", "event": "started", "detail": ""},
        {"at": "2025-03-01T09:01:10", "event": "suspended", "detail": "1000 sent, 2000 not yet sent"},
        {"at": "2025-03-02T09:00:00", "event": "resumed", "detail": ""},
        {"at": "2025-03-02T09:00:30", "event": "finished", "detail": "3000 sent"},
    ]
    page = render(make_summary(history=history))
    assert "Suspended 1 time(s), resumed 1 time(s)." in page
    assert page.index("1000 sent, 2000 not yet sent") < page.index("2025-03-02T09:00:00")


def test_the_tiles_add_up_to_targeted_when_failures_wait_for_a_resume():
    page = render(
        make_summary(
            state="Suspended", targeted=1_000, excluded={"missing_recipient_id": 100}, sent=500,
            failed={"auth_failed": 300, "unknown_recipient": 50}, not_sent=50, to_resume=300,
        )
    )  # fmt: skip
    tiles = dict(re.findall(r'id="tile-([a-z-]+)"><div class="value">([\d,]+)</div>', page))
    assert tiles["failed"] == "50", "only the final failures"
    assert tiles["not-sent"] == "350", "pending and sending rows plus the failures a resume sends again"
    parts = ("excluded", "sent", "failed", "not-sent")
    assert sum(int(tiles[t].replace(",", "")) for t in parts) == 1_000
