"""The demo's sample CDP: what the file holds is what the summary says, the same for a seed, fast."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest

from line_oa.cli.sample_cdp import PROFILES_DDL, generate_sample_cdp, profile_rows

VALID_LINE_USER_ID = re.compile(r"U[0-9a-f]{32}")


@pytest.fixture(scope="module")
def cdp(tmp_path_factory):
    return generate_sample_cdp(tmp_path_factory.mktemp("cdp") / "cdp.db", profiles=50_000, seed=7)


def query(cdp, sql: str, *params):
    connection = sqlite3.connect(cdp.path)
    connection.create_function(
        "is_valid", 1, lambda value: int(bool(VALID_LINE_USER_ID.fullmatch(value or "")))
    )
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def counts_in_file(cdp) -> dict[str, int]:
    """Count, with SQL over the file, what the summary claims."""
    ((profiles, missing, malformed, valid_rows, distinct_valid),) = query(
        cdp,
        "SELECT count(*), "
        " sum(line_user_id IS NULL), "
        " sum(line_user_id IS NOT NULL AND NOT is_valid(line_user_id)), "
        " sum(is_valid(line_user_id)), "
        " count(DISTINCT CASE WHEN is_valid(line_user_id) THEN line_user_id END) "
        "FROM profiles",
    )
    return {
        "profiles": profiles,
        "missing_line_id": missing or 0,
        "malformed_line_id": malformed or 0,
        "duplicate_line_id": (valid_rows or 0) - distinct_valid,
        "eligible_unique_line_ids": distinct_valid,
    }


def claimed_counts(cdp) -> dict[str, int]:
    return {
        "profiles": cdp.profiles,
        "missing_line_id": cdp.missing_line_id,
        "malformed_line_id": cdp.malformed_line_id,
        "duplicate_line_id": cdp.duplicate_line_id,
        "eligible_unique_line_ids": cdp.eligible_unique_line_ids,
    }


def test_the_counts_of_the_summary_match_the_file(cdp):
    assert counts_in_file(cdp) == claimed_counts(cdp)
    assert cdp.profiles == 50_000
    parts = cdp.missing_line_id + cdp.malformed_line_id + cdp.duplicate_line_id + cdp.eligible_unique_line_ids
    assert parts == cdp.profiles


@pytest.mark.parametrize(
    ("attribute", "fraction"),
    [
        pytest.param("missing_line_id", 0.06, id="about 6 percent of profiles have no LINE user ID"),
        pytest.param("duplicate_line_id", 0.02, id="about 2 percent of profiles reuse another profile's ID"),
        pytest.param("malformed_line_id", 0.01, id="about 1 percent of profiles have a malformed ID"),
    ],
)
def test_the_gaps_follow_the_requested_fractions(cdp, attribute, fraction):
    assert getattr(cdp, attribute) == pytest.approx(cdp.profiles * fraction, rel=0.15)


def test_a_shared_line_id_is_held_by_two_or_three_profiles(cdp):
    sizes = dict(
        query(
            cdp,
            "SELECT holders, count(*) FROM (SELECT count(*) AS holders FROM profiles "
            "WHERE line_user_id IS NOT NULL GROUP BY line_user_id HAVING count(*) > 1) GROUP BY holders",
        )
    )
    assert set(sizes) == {2, 3}
    assert sum((holders - 1) * ids for holders, ids in sizes.items()) == cdp.duplicate_line_id


def test_malformed_ids_take_the_shapes_found_in_real_cdps(cdp):
    malformed = [
        value
        for (value,) in query(
            cdp,
            "SELECT line_user_id FROM profiles WHERE line_user_id IS NOT NULL AND NOT is_valid(line_user_id)",
        )
    ]
    shapes = {
        "a LINE display ID": r"@shop\d+",
        "a phone number": r"\+81\d+",
        "upper-case hexadecimal": r"U[0-9A-F]{32}",
        "too short": r"U[0-9a-f]{16}",
    }
    found = {name for name, pattern in shapes.items() for value in malformed if re.fullmatch(pattern, value)}
    assert found == set(shapes)
    assert len(set(malformed)) == len(malformed), "a malformed ID must not also count as a duplicate"


def test_blocked_and_unknown_users_are_distinct_eligible_ids_in_the_file(cdp):
    blocked, unknown = set(cdp.blocked_user_ids), set(cdp.unknown_user_ids)
    assert len(blocked) == len(cdp.blocked_user_ids)
    assert len(unknown) == len(cdp.unknown_user_ids)
    assert not blocked & unknown
    assert all(VALID_LINE_USER_ID.fullmatch(user_id) for user_id in blocked | unknown)
    in_file = {value for (value,) in query(cdp, "SELECT DISTINCT line_user_id FROM profiles")}
    assert blocked | unknown <= in_file
    assert len(blocked) == pytest.approx(cdp.eligible_unique_line_ids * 0.02, rel=0.15)
    assert len(unknown) == pytest.approx(cdp.eligible_unique_line_ids * 0.01, rel=0.2)


def test_profile_attributes_look_like_a_japanese_loyalty_programme(cdp):
    tiers = dict(query(cdp, "SELECT loyalty_tier, count(*) FROM profiles GROUP BY 1"))
    assert set(tiers) == {"bronze", "silver", "gold"}
    assert tiers["bronze"] > tiers["silver"] > tiers["gold"]
    ((japan, opted_in, distinct_ids),) = query(
        cdp, "SELECT sum(country = 'JP'), sum(opted_in = 1), count(DISTINCT profile_id) FROM profiles"
    )
    assert japan > 0.85 * cdp.profiles
    assert opted_in > 0.9 * cdp.profiles
    assert distinct_ids == cdp.profiles


def test_profile_rows_yield_exactly_the_rows_in_the_file(cdp):
    in_file = query(cdp, "SELECT * FROM profiles ORDER BY profile_id")
    assert list(profile_rows(profiles=50_000, seed=7)) == in_file


def test_the_same_seed_gives_the_same_file_and_another_seed_another(tmp_path, cdp):
    again = generate_sample_cdp(tmp_path / "again.db", profiles=50_000, seed=7)
    assert claimed_counts(again) == claimed_counts(cdp)
    assert (again.blocked_user_ids, again.unknown_user_ids) == (cdp.blocked_user_ids, cdp.unknown_user_ids)
    other = list(profile_rows(profiles=1_000, seed=8))
    assert other != list(profile_rows(profiles=1_000, seed=7))


def test_generating_again_replaces_the_previous_file(tmp_path):
    path = tmp_path / "cdp.db"
    generate_sample_cdp(path, profiles=2_000)
    smaller = generate_sample_cdp(path, profiles=300)
    assert counts_in_file(smaller) == claimed_counts(smaller)


def test_zero_profiles_gives_an_empty_table(tmp_path):
    empty = generate_sample_cdp(tmp_path / "nested" / "empty.db", profiles=0)
    assert query(empty, "SELECT count(*) FROM profiles") == [(0,)]
    assert claimed_counts(empty) == dict.fromkeys(claimed_counts(empty), 0)
    assert empty.blocked_user_ids == empty.unknown_user_ids == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"missing_fraction": 1.5}, "missing_fraction", id="a fraction above one is refused"),
        pytest.param({"blocked_fraction": -0.1}, "blocked_fraction", id="a negative fraction is refused"),
        pytest.param(
            {"missing_fraction": 0.5, "duplicate_fraction": 0.3, "malformed_fraction": 0.3},
            "must not exceed 1",
            id="gaps adding up to more than every profile are refused",
        ),
        pytest.param({"profiles": -1}, "profiles", id="a negative number of profiles is refused"),
    ],
)
def test_impossible_parameters_are_refused_by_name(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_sample_cdp(tmp_path / "cdp.db", **arguments)


def test_the_ddl_is_plain_portable_sql():
    connection = sqlite3.connect(":memory:")
    connection.execute(PROFILES_DDL)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(profiles)")]
    assert columns == [
        "profile_id",
        "line_user_id",
        "email",
        "country",
        "loyalty_tier",
        "opted_in",
        "first_name",
    ]


def test_the_sample_cdp_module_imports_no_airflow():
    code = "import sys, line_oa.cli.sample_cdp; print(any(m.split('.')[0] == 'airflow' for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
