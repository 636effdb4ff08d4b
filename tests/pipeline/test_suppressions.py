"""Suppression lists: profiles or LINE user ids that no campaign may message, applied at extract time."""

from __future__ import annotations

import pathlib
import sqlite3
from collections import Counter

import pytest
import yaml

from line_oa.integration.segment import classify, count_sql, wrap_segment_sql
from line_oa.vocabulary import Reason

SEGMENT = "SELECT profile_id, line_user_id FROM profiles"
BY_USER = "SELECT NULL AS profile_id, line_user_id FROM optouts"
BY_PROFILE = "SELECT profile_id, NULL AS line_user_id FROM legal_hold"


def uid(n: int) -> str:
    return "U" + f"{n:032x}"


@pytest.fixture
def cdp():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE profiles (profile_id TEXT, line_user_id TEXT)")
    conn.execute("CREATE TABLE optouts (line_user_id TEXT)")
    conn.execute("CREATE TABLE legal_hold (profile_id TEXT)")
    conn.executemany(
        "INSERT INTO profiles VALUES (?, ?)",
        [(f"p{n}", uid(n)) for n in range(10)] + [("p10", uid(3)), ("p11", None), ("p12", uid(12))],
    )
    conn.executemany("INSERT INTO optouts VALUES (?)", [(" " + uid(1) + " ",), (uid(99),)])
    conn.executemany("INSERT INTO legal_hold VALUES (?)", [("p2",), ("p10",), ("p11",)])
    yield conn
    conn.close()


def outcomes(conn, suppressions) -> dict[str, str | None]:
    rows = conn.execute(wrap_segment_sql(SEGMENT, suppressions)).fetchall()
    return {profile: reason for profile, _user, _status, reason, _msg in classify(rows)}


def test_listed_user_ids_and_profile_ids_are_excluded_as_suppressed(cdp):
    found = outcomes(cdp, [BY_USER, BY_PROFILE])
    assert found["p1"] == Reason.SUPPRESSED, "LINE user id on an opt-out list (spaces trimmed)"
    assert found["p2"] == Reason.SUPPRESSED, "profile id on a legal hold"
    assert found["p3"] == found["p10"] == Reason.SUPPRESSED, (
        "p10 is on hold and shares its LINE user with p3: that person gets nothing, by either profile"
    )
    assert found["p11"] == Reason.MISSING_RECIPIENT_ID
    assert found["p0"] is None
    assert Counter(found.values())[None] == 8, "every other profile is still eligible"


def test_without_lists_nobody_is_suppressed_and_every_row_still_has_an_outcome(cdp):
    found = outcomes(cdp, [])
    assert Reason.SUPPRESSED not in found.values()
    assert len(found) == 13


def test_the_quota_pre_flight_does_not_count_suppressed_users(cdp):
    everyone = cdp.execute(count_sql(SEGMENT)).fetchone()[0]
    kept = cdp.execute(count_sql(SEGMENT, [BY_USER, BY_PROFILE])).fetchone()[0]
    assert everyone == 11
    assert kept == everyone - 3, (
        "uid 1 (opt-out), uid 2 (p2 on hold) and uid 3 (p10, its other profile, on hold)"
    )


def test_a_list_with_two_statements_is_refused():
    from line_oa.errors import LineOAError

    with pytest.raises(LineOAError, match="suppression list must be a single SELECT"):
        wrap_segment_sql(SEGMENT, ["SELECT 1 AS profile_id, 2 AS line_user_id; DROP TABLE profiles"])


def test_validation_names_a_missing_list_and_a_list_without_the_columns(tmp_path):
    import shutil

    from line_oa.campaign.validation import validate_campaign_file

    root = pathlib.Path(__file__).resolve().parents[2]
    sql_root = tmp_path / "sql"
    shutil.copytree(root / "include" / "sql" / "segments", sql_root / "segments")
    (sql_root / "suppressions").mkdir()
    (sql_root / "suppressions" / "optouts.sql").write_text("SELECT line_user_id FROM optouts\n")
    document = yaml.safe_load((root / "include" / "campaigns" / "welcome_back.yaml").read_text())
    document["target_audience"]["suppression_lists"] = ["vip_hold"]
    path = tmp_path / "welcome_back.yaml"
    path.write_text(yaml.safe_dump(document))
    problems = [str(p) for p in validate_campaign_file(path, sql_root=sql_root).problems]
    assert any("suppression_lists[0]" in p and "vip_hold.sql not found" in p for p in problems), problems
    assert any("optouts.sql does not return the column profile_id" in p for p in problems), problems


def test_the_pre_flight_count_equals_what_extraction_finds_eligible(cdp):
    """A user with one listed profile and one unlisted one is suppressed in both (one person)."""
    suppressions = [BY_USER, BY_PROFILE]
    counted = cdp.execute(count_sql(SEGMENT, suppressions)).fetchone()[0]
    rows = cdp.execute(wrap_segment_sql(SEGMENT, suppressions)).fetchall()
    eligible = {user for _profile, user, status, _reason, _msg in classify(rows) if status is None}
    assert counted == len(eligible) == 8
