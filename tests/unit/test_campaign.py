"""The campaign model other code relies on: loading, defaults, the DAG id and the LINE JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from yaml import safe_dump

from line_oa.campaign.loading import load_campaign, parse_campaign
from line_oa.campaign.model import Campaign
from line_oa.errors import CampaignFileError, LineOAError

from .campaign_docs import EXAMPLES, FIXTURES, SQL_ROOT, valid_document


def test_load_campaign_returns_the_campaign_with_its_source():
    campaign = load_campaign(EXAMPLES / "spring_sale.yaml")
    assert isinstance(campaign, Campaign)
    assert campaign.dag_id == "line_campaign__spring_sale"
    assert campaign.source_path == EXAMPLES / "spring_sale.yaml"
    assert campaign.segment_sql_path(SQL_ROOT) == SQL_ROOT / "segments" / "customers" / "gold_members.sql"
    assert campaign.delivery_schedule.send_at.isoformat() == "2027-03-20T10:00:00+09:00"


def test_load_campaign_raises_one_error_with_every_problem():
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(FIXTURES / "invalid" / "missing_essentials.yaml")
    assert isinstance(caught.value, LineOAError)
    assert [p.path for p in caught.value.problems] == [
        "target_audience.segment",
        "content.line_config",
        "content.messages",
    ]
    assert "missing_essentials.yaml:7: [content] content.line_config: no LINE sender account" in str(
        caught.value
    )


def test_load_campaign_of_a_missing_file_raises_campaign_file_error(tmp_path):
    with pytest.raises(CampaignFileError, match="file not found"):
        load_campaign(tmp_path / "gone.yaml")


def test_load_campaign_does_not_judge_the_clock_or_the_sql_files():
    campaign = load_campaign(FIXTURES / "invalid" / "past_send_at.yaml")
    assert campaign.target_audience.segment == "no_such_segment"


def test_parse_campaign_fills_the_documented_defaults():
    document = valid_document()
    campaign = parse_campaign(safe_dump(document), "test_campaign.yaml")
    assert campaign.owner == "marketing"
    assert campaign.description is None
    assert campaign.source_path is None
    assert campaign.target_audience.cdp_conn_id == "line_oa_cdp"
    assert (campaign.content.delivery_mode, campaign.content.notification_disabled) == ("auto", False)
    retry = campaign.activation.retry
    assert (retry.max_attempts, retry.initial_backoff_seconds, retry.max_backoff_seconds) == (8, 1.0, 60.0)
    assert (campaign.activation.rate_limit_per_second, campaign.activation.chunk_size) == (None, 5000)
    assert campaign.utm_tracking.enabled is True
    assert campaign.utm_parameters() == {"utm_source": "line", "utm_medium": "social"}


def test_wire_messages_are_lines_camel_case_json_with_utm_tags():
    campaign = load_campaign(FIXTURES / "valid" / "full_featured.yaml")
    text, imagemap = campaign.wire_messages()
    tags = "utm_source=line_oa&utm_medium=social&utm_campaign=full_featured&utm_content=Every%20field%20set"
    assert text["text"] == f"$ New in store: https://shop.example.com/new?ref=line&{tags} $"
    assert text["emojis"][0] == {"index": 0, "productId": "5ac1bfd5040ab15980c9b435", "emojiId": "001"}
    assert text["text"][text["emojis"][1]["index"]] == "$", "the emoji after the link moved with the tags"
    assert list(imagemap) == ["type", "baseUrl", "altText", "baseSize", "actions", "video"]
    assert imagemap["actions"][0] == {
        "type": "uri",
        "linkUri": f"https://shop.example.com/new?{tags}#top",
        "area": {"x": 0, "y": 585, "width": 520, "height": 455},
        "label": "Shop",
    }
    assert imagemap["actions"][1]["linkUri"] == "tel:+81312345678"
    assert "label" not in imagemap["actions"][1]
    assert imagemap["video"]["externalLink"] == {
        "linkUri": f"https://shop.example.com/new/video?{tags}",
        "label": "Watch more",
    }
    assert imagemap["baseUrl"] == "https://cdn.example.com/imagemaps/new_in", (
        "the image address is never tagged"
    )


def test_disabled_utm_tracking_sends_links_as_written():
    document = valid_document()
    document["utm_tracking"] = {"enabled": False, "parameters": {"utm_campaign": "x"}}
    campaign = parse_campaign(safe_dump(document), "test_campaign.yaml")
    assert campaign.wire_messages()[0]["text"] == "Hello https://shop.example.com/sale"


def test_wire_messages_serialise_to_json_without_loss():
    campaign = load_campaign(EXAMPLES / "welcome_back.yaml")
    messages = json.loads(json.dumps(campaign.wire_messages(), ensure_ascii=False))
    assert messages[0] == {"type": "text", "text": "お帰りなさい! We missed you."}


def test_campaign_modules_do_not_import_airflow():
    code = (
        "import sys, line_oa.campaign.model, line_oa.campaign.loading, line_oa.campaign.validation, "
        "line_oa.cli.commands, line_oa.campaign.utm, line_oa.campaign.messages; "
        "print(any(name == 'airflow' or name.startswith('airflow.') for name in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
