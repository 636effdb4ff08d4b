"""The LINE aggregation unit of a campaign: LINE's rule, determinism, no collisions, the file's field."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml

from line_oa.campaign.loading import parse_campaign
from line_oa.campaign.units import unit_for_campaign, unit_problem
from line_oa.delivery.client import send_body

from .campaign_docs import only_problem, problems_of, valid_document

LINE_RULE = re.compile(r"[a-zA-Z0-9_]{1,30}")


@pytest.mark.parametrize(
    "campaign_id",
    ["spring_sale", "a", "x" * 30, "x" * 31, "spring-sale", "black-friday-2026-members-only-early-access",
     "0" * 63, "a-" * 31 + "a"],
    ids=["a fitting id", "one character", "30 characters", "31 characters", "a hyphen", "a long id",
         "63 digits", "63 characters with hyphens"],
)  # fmt: skip
def test_every_campaign_id_gets_a_unit_within_lines_rule(campaign_id):
    unit = unit_for_campaign(campaign_id)
    assert LINE_RULE.fullmatch(unit)
    assert unit == unit_for_campaign(campaign_id)  # deterministic
    assert unit_problem(unit) is None


def test_an_id_that_fits_is_its_own_unit_and_a_shortened_one_stays_readable():
    assert unit_for_campaign("spring_sale") == "spring_sale"
    assert unit_for_campaign("x" * 30) == "x" * 30
    shortened = unit_for_campaign("black-friday-2026-members-only-early-access")
    assert shortened.startswith("black_friday_2026_m")
    assert len(shortened) == 30


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("spring-sale", "spring_sale"),
        ("a" * 30 + "-x", "a" * 30 + "-y"),
        ("a" * 31, "a" * 30),
        ("summer-2026", "summer_2026"),
    ],
    ids=["a hyphen against an underscore", "ids sharing 30 characters", "31 against 30 characters",
         "the same words"],
)  # fmt: skip
def test_ids_that_shorten_alike_get_different_units(first, second):
    assert unit_for_campaign(first) != unit_for_campaign(second)


def test_no_two_of_many_similar_ids_share_a_unit():
    ids = [f"{a}-{b}-campaign-{n:03d}-{'x' * 20}" for a, b, n in itertools.product("ab", "cd", range(250))]
    ids += [campaign_id.replace("-", "_")[:63] for campaign_id in ids]
    units = {unit_for_campaign(campaign_id) for campaign_id in ids}
    assert len(units) == len(set(ids))


@pytest.mark.parametrize(
    ("unit", "message"),
    [
        ("", "is empty; LINE requires 1 to 30 characters of letters, digits and '_'"),
        ("u" * 31, "31 characters, LINE allows 30 (letters, digits and '_')"),
        ("spring-sale", "contains '-'; LINE allows only letters, digits and '_'"),
    ],
    ids=["empty", "31 characters", "a hyphen"],
)
def test_a_unit_in_the_campaign_file_must_follow_lines_rule(unit, message):
    document = valid_document()
    document["aggregation_unit"] = unit
    problem = only_problem(document)
    assert problem.path == "aggregation_unit"
    assert message in str(problem)
    assert "test_campaign.yaml" in str(problem)


def test_a_unit_in_the_campaign_file_replaces_the_derived_one():
    document = valid_document()
    document["aggregation_unit"] = "Spring_2026"
    assert problems_of(document) == []
    campaign = parse_campaign(yaml.safe_dump(document), "test_campaign.yaml")
    assert campaign.insight_unit == "Spring_2026"
    del document["aggregation_unit"]
    assert parse_campaign(yaml.safe_dump(document), "test_campaign.yaml").insight_unit == unit_for_campaign(
        document["id"]
    )


def test_a_send_body_carries_the_unit_only_when_there_is_one():
    with_unit = send_body("U" + "0" * 32, [{"type": "text", "text": "hi"}], False, "spring_sale")
    assert with_unit["customAggregationUnits"] == ["spring_sale"]
    assert "customAggregationUnits" not in send_body(["U" + "0" * 32], [], False, None)
