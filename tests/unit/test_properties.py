"""Whatever a campaign file holds, parsing ends in a campaign or a CampaignFileError, never a crash."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from line_oa.campaign.loading import parse_campaign
from line_oa.campaign.model import Campaign
from line_oa.campaign.validation import ValidationReport, validate_campaign_file
from line_oa.errors import CampaignFileError
from tests.fast_loop import examples

from .campaign_docs import SQL_ROOT, valid_document

FIELD_NAMES = [
    "id", "name", "workspace", "status", "target_audience", "content", "delivery_schedule", "activation",
    "utm_tracking", "messages", "type", "text", "emojis", "index", "actions", "area", "base_size", "width",
    "height", "x", "y", "link_uri", "base_url", "alt_text", "video", "send_at", "cron", "timezone", "retry",
    "parameters", "line_config", "segment", "parent_segment",
]  # fmt: skip
TAGS = ["text", "imagemap", "uri", "message", "immediate", "scheduled", "recurring", "draft", "launched"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(TAGS + ["https://a.example.com/x", "tel:1", "$", "{{campaign.id}}", "0 9 * * *", "UTC"]),
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC))),
    st.dates(),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12), st.integers(0, 5))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)),
    max_leaves=40,
)
FAST = settings(
    max_examples=examples(150), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


TABS = {"campaign", "target_audience", "content", "delivery_schedule", "activation", "utm_tracking"}


def parse_or_problems(text: str) -> Campaign | CampaignFileError:
    """Parse ``text``; return the campaign or the error, checking that the error explains itself."""
    try:
        outcome: Campaign | CampaignFileError = parse_campaign(text, "test_campaign.yaml")
    except CampaignFileError as error:
        outcome = error
    if isinstance(outcome, CampaignFileError):
        assert outcome.problems, "a CampaignFileError always says what is wrong"
        assert all(problem.tab in TABS and problem.message for problem in outcome.problems)
    return outcome


@FAST
@given(documents)
def test_random_documents_parse_or_raise_campaign_file_error(document):
    parse_or_problems(yaml.safe_dump(document, allow_unicode=True))


@FAST
@given(st.text(max_size=200))
def test_random_text_parses_or_raises_campaign_file_error(text):
    parse_or_problems(text)


def paths_of(node: Any, prefix: tuple = ()) -> list[tuple]:
    """List the path of every value in a document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for number, value in enumerate(node):
            found += paths_of(value, (*prefix, number))
    return found


def mutate(document: dict, path: tuple, action: str, value: Any) -> dict:
    document = copy.deepcopy(document)
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif isinstance(parent, dict):
        parent[f"{last}_extra"] = value
    else:
        parent.append(value)
    return document


VALID = valid_document()
VALID["delivery_schedule"] = {"type": "scheduled", "send_at": "2027-03-20T10:00:00+09:00"}
VALID_PATHS = paths_of(VALID)


@FAST
@given(
    st.lists(
        st.tuples(st.sampled_from(VALID_PATHS), st.sampled_from(["delete", "replace", "add"]), documents),
        min_size=1,
        max_size=3,
    )
)
def test_mutations_of_a_valid_campaign_parse_or_raise_campaign_file_error(changes):
    document = VALID
    for path, action, value in changes:
        try:
            document = mutate(document, path, action, value)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue  # an earlier change removed this path or replaced a part of it by a scalar or None
    outcome = parse_or_problems(yaml.safe_dump(document, allow_unicode=True))
    if isinstance(outcome, Campaign):
        assert outcome.wire_messages(), "a valid campaign always renders its messages"


@settings(
    max_examples=examples(40),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.sampled_from(VALID_PATHS), st.sampled_from(["delete", "replace", "add"]), documents)
def test_validate_campaign_file_always_returns_a_report(tmp_path, path, action, value):
    file = tmp_path / "test_campaign.yaml"
    file.write_text(yaml.safe_dump(mutate(VALID, path, action, value), allow_unicode=True), encoding="utf-8")
    report = validate_campaign_file(file, now=datetime(2026, 11, 1, tzinfo=UTC), sql_root=SQL_ROOT)
    assert isinstance(report, ValidationReport)
    assert report.ok == (report.campaign is not None and not report.problems)
