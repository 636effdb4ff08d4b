"""Helpers of the campaign-file tests: a valid campaign to mutate and a one-call checker."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import yaml

from line_oa.campaign.validation import Problem, campaign_from_text

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "campaigns"
EXAMPLES = ROOT / "include" / "campaigns"
SQL_ROOT = ROOT / "include" / "sql"

_VALID: dict[str, Any] = {
    "id": "test_campaign",
    "name": "Test campaign",
    "workspace": "retail_jp",
    "status": "launched",
    "target_audience": {"parent_segment": "customers", "segment": "gold_members"},
    "content": {
        "line_config": "line_oa_default",
        "messages": [
            {"type": "text", "text": "Hello https://shop.example.com/sale"},
            {
                "type": "imagemap",
                "base_url": "https://cdn.example.com/imagemaps/sale",
                "alt_text": "Sale",
                "base_size": {"width": 1040, "height": 1040},
                "actions": [
                    {
                        "type": "uri",
                        "link_uri": "https://shop.example.com/sale",
                        "area": {"x": 0, "y": 0, "width": 1040, "height": 520},
                    },
                    {
                        "type": "message",
                        "text": "More please",
                        "area": {"x": 0, "y": 520, "width": 1040, "height": 520},
                    },
                ],
            },
        ],
    },
    "delivery_schedule": {"type": "immediate"},
}


def valid_document() -> dict[str, Any]:
    """Return a fresh copy of a campaign document that has no problem."""
    return copy.deepcopy(_VALID)


def problems_of(document: Any, file: str = "test_campaign.yaml") -> list[Problem]:
    """Dump ``document`` as YAML and return the problems the parser finds in it."""
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    return campaign_from_text(text, file)[1]


def only_problem(document: Any) -> Problem:
    """Return the single problem of ``document``, failing when there is none or several."""
    problems = problems_of(document)
    assert len(problems) == 1, "\n".join(map(str, problems)) or "no problem found"
    return problems[0]
