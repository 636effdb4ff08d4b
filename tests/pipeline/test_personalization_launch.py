"""Personalization against a real CDP (SQLite and PostgreSQL): the launch checks the columns and the
longest values, extraction stages each recipient's values in the chunk files (issue 18, req 1)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid

import pytest
import yaml

from line_oa.campaign.personalization import bundle_of
from line_oa.campaign.validation import validate_campaign_file
from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook
from line_oa.integration import pipeline
from line_oa.integration.chunks import read_chunk, read_chunk_values
from line_oa.integration.launch import check_personalization
from line_oa.integration.pipeline import LaunchRefused
from line_oa.integration.segment import extract_segment, stream_rows, wrap_segment_sql
from tests.unit.campaign_docs import valid_document

PEOPLE = [
    ("p1", "U" + "1" * 32, "Hanako", "gold"),
    ("p2", "U" + "2" * 32, None, "silver"),
    ("p3", "U" + "3" * 32, "  ", "gold"),
    ("p4", "U" + "4" * 32, "𠮷田", None),
]
# PostgreSQL folds the unquoted firstName to firstname; the placeholder's name matches it anyway.
SEGMENT = "SELECT profile_id, line_user_id, firstName, tier FROM profiles ORDER BY profile_id"
POSTGRES = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "test"}


@pytest.fixture(params=["sqlite", "postgres"])
def cdp(request, tmp_path, monkeypatch):
    """A CDP holding PEOPLE as the campaign's connection, and the segment file under a SQL root."""
    segment = tmp_path / "sql" / "segments" / "customers" / "gold_members.sql"
    segment.parent.mkdir(parents=True)
    segment.write_text(SEGMENT)
    monkeypatch.setenv("AIRFLOW__LINE_OA__SQL_ROOT", str(tmp_path / "sql"))
    monkeypatch.setenv("AIRFLOW__LINE_OA__DATA_DIR", str(tmp_path))
    create = "CREATE TABLE profiles (profile_id TEXT, line_user_id TEXT, firstName TEXT, tier TEXT)"
    if request.param == "sqlite":
        # named, not the default file: an end-to-end session may have set the CDP connection already
        cdp_file = {"conn_type": "sqlite", "host": str(tmp_path / "cdp.db")}
        monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_CDP", json.dumps(cdp_file))
        with sqlite3.connect(tmp_path / "cdp.db") as conn:
            conn.execute(create)
            conn.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?)", PEOPLE)
        conn.close()
        yield request.param
        return
    schema = f"cdp_{uuid.uuid4().hex[:8]}"
    extra = {"options": f"-c search_path={schema}"}
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_CDP", json.dumps({**POSTGRES, "extra": extra}))
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
        cursor.execute(f"SET search_path TO {schema}")
        cursor.execute(create)
        cursor.executemany("INSERT INTO profiles VALUES (%s, %s, %s, %s)", PEOPLE)
    conn.commit()
    yield request.param
    with conn.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.commit()
    conn.close()


def campaign_with(tmp_path, text: str, link: str = "https://shop.example.com/sale"):
    document = valid_document()
    document["content"]["messages"][0] = {"type": "text", "text": text}
    document["content"]["messages"][1]["actions"][0]["link_uri"] = link
    path = tmp_path / "test_campaign.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    report = validate_campaign_file(path, sql_root=tmp_path / "sql")
    assert report.ok, [str(p) for p in report.problems]
    return report.campaign


def test_the_launch_maps_each_placeholder_to_the_column_the_segment_returns(tmp_path, cdp):
    campaign = campaign_with(
        tmp_path, "Hi {{ profile.firstName }}", "https://shop.example.com/?t={{ profile.tier }}"
    )
    facts = check_personalization(campaign, bundle_of(campaign))
    expected = "firstname" if cdp == "postgres" else "firstName"
    assert facts == {"columns": {"firstName": expected, "tier": "tier"}, "mode": "push"}


def test_a_column_the_segment_does_not_return_refuses_the_launch_naming_file_field_and_column(tmp_path, cdp):
    campaign = campaign_with(tmp_path, "Hi {{ profile.nickname | default('you') }}")
    with pytest.raises(LaunchRefused) as refused:
        check_personalization(campaign, bundle_of(campaign))
    message = str(refused.value)
    assert f"{tmp_path / 'test_campaign.yaml'}: [content] content.messages[0].text:" in message
    assert "returns no column 'nickname'" in message
    assert "gold_members.sql" in message


def test_values_too_long_for_line_refuse_the_launch(tmp_path, cdp):
    campaign = campaign_with(tmp_path, "x" * 4997 + "{{ profile.firstName }}")
    with pytest.raises(LaunchRefused, match=r"up to 5,003 characters \(UTF-16\).*firstName: 6 characters"):
        check_personalization(campaign, bundle_of(campaign))  # Hanako: 6 units (𠮷田: 3 units)


def test_each_recipients_values_reach_its_chunk_file(tmp_path, cdp):
    from line_oa.integration.pipeline import chunk_profiles

    campaign = campaign_with(tmp_path, 'Hi {{ profile.firstName | default("there") }}')
    facts = check_personalization(campaign, bundle_of(campaign))
    columns = facts["columns"]
    sql = wrap_segment_sql(pipeline.segment_sql(campaign), (), list(columns.values()))
    ledger = DeliveryLog(sqlite_file_hook(tmp_path / "log.db"), campaign_id=campaign.id, run_id="r1")
    with contextlib.closing(ledger):
        segment = extract_segment(
            rows=stream_rows(pipeline.cdp_hook(campaign), sql),
            ledger=ledger,
            staging_dir=tmp_path / "stage",
            value_columns=list(columns),
        )
        chunks = chunk_profiles(segment.to_dict(), campaign=campaign, ledger=ledger)
    staged = {}
    for chunk in chunks:
        values = read_chunk_values(chunk)
        assert set(values) == {profile for profile, _user in read_chunk(chunk)}
        staged.update(values)
    bundle = bundle_of(campaign)
    greetings = {profile: bundle.render(json.loads(text))[0]["text"] for profile, text in staged.items()}
    assert greetings == {"p1": "Hi Hanako", "p2": "Hi there", "p3": "Hi there", "p4": "Hi 𠮷田"}
