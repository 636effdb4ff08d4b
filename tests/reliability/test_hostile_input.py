"""Hostile and broken input: a clear error or a recorded outcome, never a traceback, a hang or SQL injection.

``tests/unit/test_properties.py`` fuzzes campaign *documents*; this module adds raw bytes, hostile
identifiers, YAML features (aliases, tags, nesting), files that are not regular files, hostile CDP rows
and run ids, and checks what SQL actually runs.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from line_oa.campaign.loading import load_campaign
from line_oa.campaign.validation import MAX_FILE_BYTES, campaign_from_text, validate_campaign_file
from line_oa.errors import CampaignFileError
from tests.dags.conftest import ledger_of, run_dag, task_states
from tests.fast_loop import examples
from tests.unit.campaign_docs import SQL_ROOT, problems_of, valid_document

from .conftest import HOSTILE_NAME, HOSTILE_TEXT, assert_every_profile_accounted_for, assert_log_equals_record

if TYPE_CHECKING:
    import pathlib

FUZZ = settings(
    max_examples=examples(60),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
HOSTILE_STRINGS = [
    "x; DROP TABLE profiles",
    "x'; DROP TABLE profiles; --",
    'gold" OR 1=1 --',
    "../../../etc/passwd",
    "..",
    "gold/../../secrets",
    "gold\x00members",
    "gold members",
    "GOLD",
    "ｇｏｌｄ",  # full-width letters
    "gold\u202emembers",  # right-to-left override
    "a" * 64,
    "",
    "-gold",
    "gold;",
    "$(rm -rf /)",
    "{{ conn.line_oa_default.password }}",
]
IDENTIFIERS = [
    ("target_audience", "segment"),
    ("target_audience", "parent_segment"),
    ("target_audience", "cdp_conn_id"),
    ("content", "line_config"),
    ("id",),
    ("workspace",),
]
SAFE_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.-]+$")


def write(tmp_path: pathlib.Path, data: bytes | str, name: str = "test_campaign.yaml") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def assert_clear_refusal(path: pathlib.Path) -> list[str]:
    """Assert the file is refused with problems naming it, by validation and by the loader alike."""
    report = validate_campaign_file(path, sql_root=SQL_ROOT)
    assert not report.ok
    assert report.problems
    assert all(problem.file == str(path) and problem.message for problem in report.problems)
    with pytest.raises(CampaignFileError):
        load_campaign(path)
    return [str(problem) for problem in report.problems]


# -- fuzzing ----------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_with_a_problem_or_parse_never_a_traceback(tmp_path, data):
    path = write(tmp_path, data)
    report = validate_campaign_file(path, sql_root=SQL_ROOT)
    assert report.ok == (report.campaign is not None)
    assert all(problem.message for problem in report.problems)


@FUZZ
@given(st.sampled_from(IDENTIFIERS), st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=70)))
def test_identifiers_are_validated_before_they_reach_a_path_or_a_query(location, value):
    document = valid_document()
    target = document
    for key in location[:-1]:
        target = target[key]
    target[location[-1]] = value
    if location == ("id",):
        value_file = f"{value}.yaml" if SAFE_IDENTIFIER.match(value or "-") else "test_campaign.yaml"
    else:
        value_file = "test_campaign.yaml"
    text = yaml.safe_dump(document, allow_unicode=True)
    campaign, problems = campaign_from_text(text, value_file)
    if campaign is None:
        assert any(problem.path == ".".join(location) for problem in problems), problems
        return
    assert SAFE_IDENTIFIER.match(value), f"{value!r} was accepted as {'.'.join(location)}"
    segments = (SQL_ROOT / "segments").resolve()
    assert segments in campaign.segment_sql_path(SQL_ROOT).resolve().parents


@settings(
    max_examples=examples(20),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=300))
def test_one_hostile_file_never_hides_the_other_campaigns_from_the_dag_folder(tmp_path_factory, data):
    from line_oa.integration.dag_factory import build_campaign_dags

    folder = tmp_path_factory.mktemp("campaigns")
    document = valid_document()
    document["target_audience"]["segment"] = "all_line_friends"
    write(folder, yaml.safe_dump(document), "test_campaign.yaml")
    write(folder, data, "zz_hostile.yaml")
    dags, errors = build_campaign_dags(folder, strict=False)
    assert "line_campaign__test_campaign" in dags
    assert set(errors) <= {"zz_hostile.yaml"}


# -- YAML features, sizes, encodings, file types -------------------------------------------------
def test_a_billion_laughs_yaml_bomb_is_refused_at_once(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    started = time.monotonic()
    problems = assert_clear_refusal(write(tmp_path, "\n".join(lines) + "\n"))
    assert time.monotonic() - started < 5
    assert any("aliases" in problem for problem in problems)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "a:\n" + "".join(" " * n + "b:\n" for n in range(1, 3000)),
        "!!python/object/apply:os.system ['touch {marker}']",
        "id: !!python/name:os.system\n",
        "%YAML 9.9\n---\nid: x\n",
        "id: x\n---\nid: y\n",
    ],
    ids=[
        "deeply nested flow",
        "deeply nested block",
        "python object tag",
        "python name tag",
        "bad directive",
        "two documents",
    ],
)
def test_yaml_that_is_not_a_plain_document_is_refused_with_a_sentence(tmp_path, text):
    marker = tmp_path / "executed"
    problems = assert_clear_refusal(write(tmp_path, text.format(marker=marker)))
    assert not marker.exists(), "a YAML tag ran code"
    assert all("Traceback" not in problem for problem in problems)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"id: test_campaign\n" + b"#" * (MAX_FILE_BYTES + 1), "limited to 1 MB"),
        (b"id: test_campaign\nname: \xff\xfe caf\xe9\n", "byte 0xff cannot be decoded"),
        (b"id: test_campaign\nname: \x00\x01\n", "control character"),
        (b"\xef\xbb\xbf" + b"\xc3\x28", "cannot be decoded"),
    ],
    ids=["over 1 MB", "Latin-1 bytes", "NUL and control characters", "BOM then broken UTF-8"],
)
def test_huge_files_and_bytes_that_are_not_utf8_text_are_refused(tmp_path, data, expected):
    started = time.monotonic()
    problems = assert_clear_refusal(write(tmp_path, data))
    assert time.monotonic() - started < 5
    assert any(expected in problem for problem in problems), problems


def test_a_huge_text_message_is_refused_by_the_text_parser_as_well(tmp_path):
    document = valid_document()
    document["content"]["messages"][0]["text"] = "x" * (MAX_FILE_BYTES + 10)
    _, problems = campaign_from_text(yaml.safe_dump(document), "test_campaign.yaml")
    assert [problem.message for problem in problems] == [
        f"campaign text is larger than 1 MB ({MAX_FILE_BYTES} bytes)"
    ]


def test_a_campaign_file_that_is_not_a_regular_file_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "test_campaign.yaml"
    os.mkfifo(fifo)
    outcome = {}
    reader = threading.Thread(
        target=lambda: outcome.setdefault("report", validate_campaign_file(fifo)), daemon=True
    )
    reader.start()
    reader.join(timeout=5)
    hung = reader.is_alive()
    if hung:  # release the reader: a writer that closes at once gives it an end of file
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
    assert not hung, "validating a named pipe hung"
    assert any(
        "regular file" in problem.message or "not a file" in problem.message
        for problem in outcome["report"].problems
    )


# -- hostile message content ----------------------------------------------------------------------
def test_javascript_links_are_refused_whatever_the_case(tmp_path):
    for link in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>"):
        document = valid_document()
        document["content"]["messages"][1]["actions"][0]["link_uri"] = link
        problems = problems_of(document)
        assert [p.path for p in problems] == ["content.messages[1].actions[0].link_uri"], link
        assert "is not allowed" in problems[0].message


@pytest.mark.parametrize(
    "where",
    ["text", "link_uri", "base_url"],
    ids=["in a text message", "in an imagemap link", "as the imagemap base URL"],
)
def test_links_carrying_credentials_are_refused(where):
    document = valid_document()
    text_message, imagemap = document["content"]["messages"]
    if where == "text":
        text_message["text"] = "Sale! https://admin:s3cret@shop.example.com/sale"
    elif where == "link_uri":
        imagemap["actions"][0]["link_uri"] = "https://admin:s3cret@shop.example.com/sale"
    else:
        imagemap["base_url"] = "https://admin:s3cret@cdn.example.com/imagemaps/sale"
    assert problems_of(document), "a link with user:password@ was accepted"


# -- hostile values in the delivery log and the staging area ------------------------------------------
def test_hostile_campaign_and_run_ids_are_bound_as_values_never_spliced_into_sql(tmp_path):
    from line_oa.delivery_log.store import DeliveryLog, LedgerRow, sqlite_file_hook
    from line_oa.integration.pipeline import run_staging_uri

    run_id = "manual__x'); DROP TABLE line_delivery_log; --"
    ledger = DeliveryLog(
        sqlite_file_hook(tmp_path / "log.db"), campaign_id="c'; DELETE FROM x; --", run_id=run_id
    )
    profile = "P'); DROP TABLE line_campaign_summary; --"
    ledger.add([LedgerRow(profile, "U" + "a" * 32, "pending", chunk_index=0)])
    ledger.upsert([LedgerRow(profile, "U" + "a" * 32, "sent", chunk_index=0, line_message='it\'s "quoted"')])
    ledger.write_summary({"state": "Finished", "targeted": 1, "sent": 1, "not_sent": 0, "test_sends": 0,
                          "messages_billed": 1, "requests": 1, "retries": 0})  # fmt: skip
    assert ledger.enter_delivery(one_off=True, redeliver=False) is None
    other = DeliveryLog(sqlite_file_hook(tmp_path / "log.db"), campaign_id=ledger.campaign_id, run_id="r2")
    assert other.enter_delivery(one_off=True, redeliver=False) == run_id, "the hostile run id was not kept"
    other.close()
    assert [(row.profile_id, row.status) for row in ledger.rows()] == [(profile, "sent")]
    assert ledger.counts() == {("sent", None, False): 1}
    ledger.close()
    with sqlite3.connect(tmp_path / "log.db") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"line_delivery_log", "line_campaign_summary"} <= tables
    staging = run_staging_uri("c", "../../../etc/x")
    assert "/../" not in staging
    assert staging.endswith("/c/.._.._.._etc_x")


class TracingHook:
    """Wrap a common.sql hook and record every SQL statement run through it."""

    def __init__(self, hook, statements: list[str]):
        self.hook, self.statements = hook, statements

    def get_first(self, sql, *args, **kwargs):
        self.statements.append(sql)
        return self.hook.get_first(sql, *args, **kwargs)

    def get_conn(self):
        hook = self

        class Cursor:
            def __init__(self, cursor):
                self.cursor = cursor

            def execute(self, sql, *args):
                hook.statements.append(sql)
                return self.cursor.execute(sql, *args)

            def __getattr__(self, name):
                return getattr(self.cursor, name)

        class Conn:
            def __init__(self, conn):
                self.conn = conn

            def cursor(self):
                return Cursor(self.conn.cursor())

            def __getattr__(self, name):
                return getattr(self.conn, name)

        return Conn(self.hook.get_conn())


def hostile_cdp(path: pathlib.Path) -> dict[str, str]:
    """Write a small CDP with hostile rows; return the hostile profile ids by kind."""
    from line_oa.cli.sample_cdp import generate_sample_cdp

    generate_sample_cdp(path, profiles=300, seed=31, blocked_fraction=0, unknown_fraction=0)
    ten_mb = 10 * 1024 * 1024
    rows = {
        "sql_profile": ("P'); DROP TABLE line_delivery_log; --", "U" + "1" * 32),
        "huge_profile": ("P" + "9" * ten_mb, "U" + "2" * 32),
        "huge_line_id": ("P-huge-line-id", "U" + "a" * ten_mb),
        "sql_line_id": ("P-sql-line-id", "U'); DROP TABLE profiles; --"),
        "nul_line_id": ("P-nul", "U" + "3" * 16 + "\x00" + "3" * 15),
    }
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO profiles (profile_id, line_user_id, email, country, loyalty_tier, opted_in) "
            "VALUES (?, ?, NULL, 'JP', 'gold', 1)",
            list(rows.values()),
        )
    return {kind: profile for kind, (profile, _) in rows.items()}


@pytest.mark.slow
def test_hostile_cdp_rows_and_campaign_text_end_in_recorded_outcomes_and_only_file_sql_runs(
    rel_env, rel_line, monkeypatch
):
    from line_oa.integration import pipeline
    from line_oa.integration.segment import count_sql, wrap_segment_sql

    hostile = hostile_cdp(rel_env["base"] / "hostile_cdp.db")
    statements: list[str] = []
    real_cdp_hook = pipeline.cdp_hook
    monkeypatch.setattr(
        pipeline, "cdp_hook", lambda campaign: TracingHook(real_cdp_hook(campaign), statements)
    )
    started = time.monotonic()
    dag_run = run_dag(rel_env, "rel_hostile_cdp")
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert time.monotonic() - started < 120

    segment_file = SQL_ROOT / "segments" / "customers" / "all_line_friends.sql"
    from_file = segment_file.read_text(encoding="utf-8")
    assert set(statements) == {count_sql(from_file), wrap_segment_sql(from_file)}, (
        "SQL not from the segment file"
    )
    ledger = ledger_of("rel_hostile_cdp", dag_run.run_id)
    rows = {row.profile_id: row for row in ledger.rows()}
    assert rows[hostile["sql_profile"]].status == "sent"
    # a 10 MB profile id cannot key the log: it is recorded under a digest, with a bounded excerpt
    huge = rows.pop(next(pid for pid in rows if pid.startswith("(invalid profile id) sha256:")))
    assert (huge.status, huge.reason, huge.line_user_id) == ("failed", "invalid_profile_id", "U" + "2" * 32)
    assert len(huge.line_message) < 200
    rows[hostile["huge_profile"]] = huge
    for kind in ("huge_line_id", "sql_line_id", "nul_line_id"):
        row = rows[hostile[kind]]
        assert (row.status, row.reason) == ("failed", "invalid_recipient_id"), kind
        assert len(row.line_user_id) <= 100, "a 10 MB id was copied into the log"
    with sqlite3.connect(rel_env["base"] / "hostile_cdp.db") as conn:
        profiles = {pid for (pid,) in conn.execute("SELECT profile_id FROM profiles WHERE opted_in = 1")}
    profiles = {pid if len(pid) <= 256 else huge.profile_id for pid in profiles}
    assert_every_profile_accounted_for(ledger, profiles)
    assert_log_equals_record(ledger, rel_line.admin.deliveries())
    bundle = rel_line.admin.messages(rel_line.admin.deliveries()[0]["messages_hash"])
    assert bundle[0]["text"].startswith(HOSTILE_TEXT.split(" https://")[0]), (
        "the text was altered, not just tagged"
    )

    report = next((rel_env["base"] / "data" / "reports" / "rel_hostile_cdp").glob("*.html")).read_text()
    for raw in ("<script>", "<img src=x", 'q=1">'):
        assert raw not in report, f"unescaped {raw!r} in the HTML report"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report, (
        "the campaign name is not in the report, escaped"
    )
    assert 'href="javascript:' not in report.lower()
    assert HOSTILE_NAME not in statements
