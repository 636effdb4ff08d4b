"""Pre-launch validation of whole files: every problem at once, with its tab, YAML path and line."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import yaml

from line_oa.campaign.validation import MAX_FILE_BYTES, Problem, ValidationReport, validate_campaign_file

from .campaign_docs import EXAMPLES, FIXTURES, SQL_ROOT, problems_of, valid_document

if TYPE_CHECKING:
    import pathlib

NOW = datetime(2026, 11, 1, tzinfo=UTC)
INVALID = FIXTURES / "invalid"


def validate(path: pathlib.Path | str) -> ValidationReport:
    return validate_campaign_file(path, now=NOW, sql_root=SQL_ROOT)


def found(report: ValidationReport) -> list[tuple[str, str, int | None]]:
    return [(p.tab, p.path, p.line) for p in report.problems]


@pytest.mark.parametrize("name", ["spring_sale", "welcome_back", "summer_preview"])
def test_shipped_example_validates_clean(name):
    report = validate_campaign_file(EXAMPLES / f"{name}.yaml")
    assert report.problems == []
    assert report.ok
    assert report.campaign.dag_id == f"line_campaign__{name}"


def test_full_featured_fixture_validates_clean():
    report = validate(FIXTURES / "valid" / "full_featured.yaml")
    assert report.problems == []


INVALID_FILES = [
    (
        "missing_essentials",
        [
            ("target_audience", "target_audience.segment", 5, "no segment specified"),
            ("content", "content.line_config", 7, "no LINE sender account selected"),
            ("content", "content.messages", 8, "at least one message"),
        ],
    ),
    (
        "wrong_types",
        [
            ("campaign", "status", 4, "YAML reads yes/no/on/off as true/false"),
            ("target_audience", "target_audience.segment", 5, "no segment specified"),
            ("target_audience", "target_audience.segmnt", 7, "did you mean 'segment'?"),
            ("content", "content.line_config", 8, "no LINE sender account selected"),
            ("content", "content.lineConfig", 9, "write 'line_config'"),
            ("content", "content.notification_disabled", 10, "expected true or false"),
            ("content", "content.messages[0].text", 13, "expected text, got the number 42"),
            (
                "content",
                "content.messages[1]",
                14,
                "type 'sticker' is not supported here; use text or imagemap",
            ),
            ("delivery_schedule", "delivery_schedule.send_at", 18, "unknown key 'send_at'"),
            ("activation", "activation.chunk_size", 20, "expected a whole number"),
            ("utm_tracking", "utm_tracking.parameters.utm_content", 23, "put the value in quotes"),
        ],
    ),
    (
        "line_limits",
        [
            ("content", "content.messages[0].emojis[0].index", 14, "does not point at a '$'"),
            ("content", "content.messages[1].base_url", 16, "file extension"),
            ("content", "content.messages[1].base_size.width", 18, "exactly 1040"),
            ("content", "content.messages[1].actions[0].link_uri", 21, "scheme 'ftp:' is not allowed"),
        ],
    ),
    (
        "bad_schedule",
        [
            (
                "delivery_schedule",
                "delivery_schedule.cron",
                15,
                "'0 25 * * MON' is not a valid cron expression",
            ),
            ("delivery_schedule", "delivery_schedule.timezone", 16, "'Tokyo' is not an IANA timezone"),
            ("activation", "activation.retry.max_backoff_seconds", 20, "less than initial_backoff_seconds"),
        ],
    ),
    ("naive_send_at", [("delivery_schedule", "delivery_schedule.send_at", 15, "has no timezone")]),
    (
        "past_send_at",
        [
            ("target_audience", "target_audience.segment", 7, "customers/no_such_segment.sql not found"),
            ("delivery_schedule", "delivery_schedule.send_at", 15, "is in the past"),
        ],
    ),
    ("broken_yaml", [("campaign", "", 9, "quoted scalar that starts at line 6")]),
    ("billion_laughs", [("campaign", "", 2, "aliases (*name) are not allowed")]),
    ("not_a_mapping", [("campaign", "", 1, "top level must be a mapping")]),
    ("empty", [("campaign", "", None, "file is empty")]),
    ("duplicate_key", [("campaign", "status", 15, "written twice (lines 4 and 15)")]),
    ("id_mismatch", [("campaign", "id", 1, "must match the file name 'id_mismatch'")]),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    INVALID_FILES,
    ids=[f"{name.replace('_', ' ')} is reported where it is" for name, _ in INVALID_FILES],
)
def test_invalid_fixture_reports_every_problem_where_it_is(name, expected):
    report = validate(INVALID / f"{name}.yaml")
    assert found(report) == [(tab, path, line) for tab, path, line, _ in expected], "\n".join(
        map(str, report.problems)
    )
    for problem, (*_, words) in zip(report.problems, expected, strict=True):
        assert words in problem.message
        assert problem.file == str(INVALID / f"{name}.yaml")
    assert report.campaign is None or name == "past_send_at"
    assert not report.ok


def test_report_groups_problems_by_tab_in_product_order():
    report = validate(INVALID / "wrong_types.yaml")
    groups = report.by_tab()
    assert list(groups) == [
        "campaign",
        "target_audience",
        "content",
        "delivery_schedule",
        "activation",
        "utm_tracking",
    ]
    assert len(groups["content"]) == 5


def test_report_converts_to_json():
    data = json.loads(json.dumps(validate(INVALID / "past_send_at.yaml").to_dict()))
    assert data["ok"] is False
    assert data["campaign"]["dag_id"] == "line_campaign__past_send_at"
    assert data["problems"][1] == {
        "file": str(INVALID / "past_send_at.yaml"),
        "tab": "delivery_schedule",
        "path": "delivery_schedule.send_at",
        "line": 15,
        "message": data["problems"][1]["message"],
    }
    assert list(data["by_tab"]) == ["target_audience", "delivery_schedule"]


def test_problem_reads_as_file_line_tab_path_message():
    problem = Problem("c.yaml", "content", "content.messages[0].text", 12, "is empty")
    assert str(problem) == "c.yaml:12: [content] content.messages[0].text: is empty"
    assert (
        str(Problem("c.yaml", "campaign", "", None, "file not found")) == "c.yaml: [campaign] file not found"
    )


def write(tmp_path: pathlib.Path, document: dict, name: str = "test_campaign") -> pathlib.Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("status", "send_at", "problem"),
    [
        ("launched", "2026-11-01T08:59:59+09:00", "is in the past"),
        ("launched", "2026-11-01T09:00:00+09:00", "is in the past"),
        ("launched", "2026-11-01T09:00:01+00:00", None),
        ("draft", "2020-01-01T00:00:00+00:00", None),
    ],
    ids=[
        "a launched campaign due one second before now is refused",
        "a launched campaign due exactly now is refused",
        "a launched campaign due one second after now is accepted",
        "a draft may keep a past send time",
    ],
)
def test_send_at_must_be_in_the_future_for_a_launched_campaign(tmp_path, status, send_at, problem):
    document = valid_document()
    document["status"] = status
    document["delivery_schedule"] = {"type": "scheduled", "send_at": send_at}
    report = validate_campaign_file(
        write(tmp_path, document), now=datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC), sql_root=SQL_ROOT
    )
    messages = [p.message for p in report.problems]
    if problem is None:
        assert messages == []
    else:
        assert len(messages) == 1
        assert problem in messages[0]


def test_recurring_campaign_whose_end_has_passed_is_refused(tmp_path):
    document = valid_document()
    document["delivery_schedule"] = {"type": "recurring", "cron": "@daily", "end_at": "2026-01-01T00:00:00Z"}
    report = validate(write(tmp_path, document))
    assert found(report) == [("delivery_schedule", "delivery_schedule.end_at", 37)]


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("SELECT profile_id, line_user_id FROM profiles", None),
        ("-- gold\nWITH g AS (SELECT * FROM profiles) SELECT profile_id, line_user_id FROM g;", None),
        ("DELETE FROM profiles", "must hold one SELECT query"),
        ("SELECT profile_id FROM profiles", "does not return the column line_user_id"),
        ("SELECT profile_id, line_user_id FROM a; DROP TABLE a", "more than one statement"),
    ],
    ids=[
        "a plain select is accepted",
        "a commented query with a CTE and a final semicolon is accepted",
        "a statement that is not a query is refused",
        "a query without line_user_id is refused",
        "two statements are refused",
    ],
)
def test_segment_sql_must_be_one_query_returning_both_ids(tmp_path, sql, words):
    sql_file = tmp_path / "sql" / "segments" / "customers" / "gold_members.sql"
    sql_file.parent.mkdir(parents=True)
    sql_file.write_text(sql, encoding="utf-8")
    report = validate_campaign_file(write(tmp_path, valid_document()), now=NOW, sql_root=tmp_path / "sql")
    assert [p.message for p in report.problems if words is None or words in p.message] == (
        [] if words is None else [report.problems[0].message]
    )
    assert (words is None) == report.ok


def test_missing_file_is_a_problem_not_an_exception(tmp_path):
    report = validate(tmp_path / "nowhere.yaml")
    assert [(p.tab, p.message) for p in report.problems] == [("campaign", "file not found")]


def test_directory_is_a_problem(tmp_path):
    assert "is a directory" in validate(tmp_path).problems[0].message


def test_bytes_that_are_not_utf8_are_reported_with_their_line(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"id: latin\nname: Caf\xe9\n")
    problem = validate(path).problems[0]
    assert (problem.line, problem.tab) == (2, "campaign")
    assert "is not UTF-8 text: byte 0xe9" in problem.message


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = write(tmp_path, valid_document())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert validate(path).problems == []


def test_file_over_one_megabyte_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    problem = validate(path).problems[0]
    assert "campaign files are limited to 1 MB" in problem.message


def test_billion_laughs_is_refused_quickly():
    started = time.monotonic()
    report = validate(INVALID / "billion_laughs.yaml")
    assert time.monotonic() - started < 1
    assert not report.ok


@pytest.mark.parametrize(
    ("text", "words", "line"),
    [
        ("id: a\n\tname: b\n", "indent with spaces, not tabs", 2),
        ("id: a\n---\nid: b\n", "expected a single document", 2),
        ("id: !!python/object:os.system x\n", "could not determine a constructor", 1),
        ("id: a\nsend: 2027-13-01\n", "'2027-13-01' is not a valid date or time", 2),
        ("[" * 2000 + "]" * 2000, "nested too deeply", None),
        ("# only a comment\n", "file is empty", None),
        ("just words", "top level must be a mapping", 1),
    ],
    ids=[
        "a tab in the indentation",
        "two YAML documents",
        "a python object tag",
        "a thirteenth month",
        "lists nested two thousand deep",
        "a file with only a comment",
        "a plain sentence",
    ],
)
def test_yaml_mistakes_are_one_clear_problem(text, words, line):
    problems = problems_of_text(text)
    assert len(problems) == 1
    assert words in problems[0].message
    assert problems[0].line == line


def problems_of_text(text: str) -> list[Problem]:
    from line_oa.campaign.validation import campaign_from_text

    return campaign_from_text(text, "a.yaml")[1]


def test_unknown_placeholder_in_utm_parameters_is_reported():
    document = valid_document()
    document["utm_tracking"] = {"parameters": {"utm_campaign": "{{campaign.title}}", "bad name": "x"}}
    problems = problems_of(document)
    assert [(p.tab, p.path) for p in problems] == [
        ("utm_tracking", "utm_tracking.parameters.utm_campaign"),
        ("utm_tracking", "utm_tracking.parameters.bad name"),
    ]
    assert "unknown placeholder {{campaign.title}}" in problems[0].message


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ("content", "line_config", "no LINE sender account selected"),
        ("target_audience", "segment", "no segment specified"),
    ],
    ids=["an empty sender account counts as not selected", "an empty segment counts as not specified"],
)
def test_empty_launch_essentials_read_like_missing_ones(section, key, words):
    document = valid_document()
    document[section][key] = ""
    problems = problems_of(document)
    assert [(p.path, words in p.message) for p in problems] == [(f"{section}.{key}", True)]


def test_message_without_type_names_the_allowed_types():
    document = valid_document()
    document["content"]["messages"].append({"text": "no type"})
    problems = problems_of(document)
    assert [(p.path, p.message) for p in problems] == [
        ("content.messages[2]", "'type' is missing; use text or imagemap")
    ]


def test_every_problem_of_every_tab_is_reported_in_one_pass(tmp_path):
    """Six messages, an over-long imagemap URL, a past send_at, a missing segment and a bad chunk size:
    each tab's problem shows at once, so one round of fixes is enough."""
    document = valid_document()
    messages = document["content"]["messages"]
    messages[1]["base_url"] = "https://cdn.example.com/" + "a" * 1990
    messages += [{"type": "text", "text": f"more {n}"} for n in range(4)]
    document["delivery_schedule"] = {"type": "scheduled", "send_at": "2020-01-01T10:00:00+09:00"}
    document["target_audience"]["segment"] = "no_such_segment"
    document["activation"] = {"chunk_size": -5}
    path = tmp_path / "test_campaign.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    report = validate_campaign_file(path, now=datetime(2026, 1, 1, tzinfo=UTC), sql_root=SQL_ROOT)
    found = {(p.path, p.message.split(":")[0].split(",")[0]) for p in report.problems}
    assert {path for path, _ in found} == {
        "content.messages",
        "content.messages[1].base_url",
        "delivery_schedule.send_at",
        "target_audience.segment",
        "activation.chunk_size",
    }, "\n".join(map(str, report.problems))
    assert len(report.problems) == 5
    assert {p.tab for p in report.problems} >= {
        "content",
        "delivery_schedule",
        "target_audience",
        "activation",
    }
