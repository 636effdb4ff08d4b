"""``python -m line_oa``: what a data engineer sees in the terminal and what CI gets as exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from line_oa.cli import commands as cli

from .campaign_docs import EXAMPLES, FIXTURES, ROOT, SQL_ROOT

INVALID = FIXTURES / "invalid"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_validate_without_files_checks_every_shipped_campaign(capsys):
    code, out, _ = run(capsys, "validate", "--campaigns-dir", str(EXAMPLES))
    assert code == 0
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in out.splitlines()[:3]] == [
        "spring_sale.yaml",
        "summer_preview.yaml",
        "welcome_back.yaml",
    ]
    assert "3 file(s) checked: 3 OK, 0 with problems" in out


def test_validate_prints_problems_under_their_tab_and_exits_1(capsys):
    code, out, _ = run(
        capsys, "validate", str(INVALID / "missing_essentials.yaml"), str(EXAMPLES / "welcome_back.yaml")
    )
    assert code == 1
    assert (
        "missing_essentials.yaml: 3 problems\n  target_audience\n    line 5: target_audience.segment: no segment"
        in out
    )
    assert "  content\n    line 7: content.line_config: no LINE sender account selected" in out
    assert "welcome_back.yaml: OK (welcome_back, launched, DAG line_campaign__welcome_back)" in out
    assert "2 file(s) checked: 1 OK, 1 with problems (3 problems)" in out


def test_validate_json_is_machine_readable(capsys):
    code, out, _ = run(capsys, "validate", "--format", "json", str(INVALID / "bad_schedule.yaml"))
    document = json.loads(out)
    assert code == 1
    assert document["ok"] is False
    assert [p["path"] for p in document["files"][0]["problems"]] == [
        "delivery_schedule.cron",
        "delivery_schedule.timezone",
        "activation.retry.max_backoff_seconds",
    ]


def test_validate_in_an_empty_folder_says_so(capsys, tmp_path):
    code, _, err = run(capsys, "validate", "--campaigns-dir", str(tmp_path))
    assert code == 1
    assert "no campaign files" in err


def test_render_prints_the_exact_line_messages_json(capsys):
    code, out, _ = run(capsys, "render", str(EXAMPLES / "welcome_back.yaml"))
    assert code == 0
    assert out.startswith('[\n  {\n    "type": "text",\n    "text": "お帰りなさい! We missed you."\n  },')
    messages = json.loads(out)
    assert messages[1]["text"].endswith("utm_campaign=welcome_back (free shipping this week).")


def test_render_of_an_invalid_campaign_prints_the_report_and_exits_1(capsys):
    code, out, err = run(capsys, "render", str(INVALID / "line_limits.yaml"))
    assert (code, out) == (1, "")
    assert "line_limits.yaml: 4 problems" in err
    assert "content.messages[1].base_url: ends with a file extension" in err


def test_build_parser_lists_every_registered_command():
    parser = cli.build_parser()
    assert parser.parse_args(["render", "x.yaml"]).run is cli.run_render
    assert parser.parse_args(["preview", "x.yaml", "-o", "x.html"]).run is cli.run_preview
    assert set(cli.COMMANDS) == {"validate", "render", "preview", "status", "insights"}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["validate", "missing.yaml"], "file not found"),
        (["render", "missing.yaml"], "file not found"),
        (["render", str(INVALID / "billion_laughs.yaml")], "aliases"),
        (["preview", str(INVALID / "broken_yaml.yaml"), "-o", "-"], "cannot be previewed"),
    ],
    ids=[
        "validating a missing file",
        "rendering a missing file",
        "rendering a YAML bomb",
        "previewing broken YAML",
    ],
)
def test_user_mistakes_end_with_a_message_and_exit_1(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert words in out + err
    assert "Traceback" not in err


# The same as a user meets it, as a process: `python -m line_oa`. A command that reads a setting imports
# Airflow for its config (about 3 s of CPU a process): such cases run in the test's process above, and
# the one here only in `make test`.
@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        pytest.param(
            ["validate", str(INVALID / "broken_yaml.yaml")], 1, "YAML syntax error", marks=pytest.mark.slow
        ),
        (["launch"], 2, "invalid choice"),
    ],
    ids=["validating broken YAML", "an unknown command"],
)
def test_user_mistakes_end_with_a_message_and_no_traceback(argv, code, words):
    result = subprocess.run(
        [sys.executable, "-m", "line_oa", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == code
    assert words in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_preview_writes_the_page_to_the_given_file(capsys, tmp_path):
    target = tmp_path / "spring.html"
    code, out, err = run(
        capsys, "preview", str(EXAMPLES / "spring_sale.yaml"), "-o", str(target), "--sql-root", str(SQL_ROOT)
    )
    assert (code, err) == (0, "")
    assert out.startswith(f"{target}: preview of {EXAMPLES / 'spring_sale.yaml'}, 2 message(s), ")
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert 'data-action="uri"' in page
    assert 'data-action="message"' in page


def test_preview_without_output_writes_next_to_where_it_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "preview", str(EXAMPLES / "welcome_back.yaml"), "--sql-root", str(SQL_ROOT))
    assert code == 0
    assert out.startswith("welcome_back.preview.html: preview of ")
    assert "お帰りなさい! We missed you." in (tmp_path / "welcome_back.preview.html").read_text(
        encoding="utf-8"
    )


def test_preview_to_stdout_with_a_dash(capsys):
    code, out, _ = run(
        capsys, "preview", str(EXAMPLES / "welcome_back.yaml"), "-o", "-", "--sql-root", str(SQL_ROOT)
    )
    assert code == 0
    assert out.startswith("<!DOCTYPE html>")
    assert out.endswith("</html>\n")


def test_preview_of_a_campaign_with_problems_writes_them_into_the_page_and_exits_0(capsys, tmp_path):
    target = tmp_path / "limits.html"
    code, out, _ = run(capsys, "preview", str(INVALID / "line_limits.yaml"), "-o", str(target))
    assert code == 0
    assert out.endswith(", 4 problems\n")
    assert "ends with a file extension" in target.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("broken_yaml.yaml", ":9: cannot be previewed: YAML syntax error: found unexpected end of stream"),
        ("not_a_mapping.yaml", ":1: cannot be previewed: the top level must be a mapping of keys"),
        ("no_such_file.yaml", ": cannot be previewed: file not found"),
    ],
    ids=["broken YAML", "a list instead of a mapping", "a missing file"],
)
def test_preview_refuses_a_file_it_cannot_parse_with_one_line_naming_it(capsys, tmp_path, name, reason):
    target = tmp_path / "out.html"
    code, out, err = run(capsys, "preview", str(INVALID / name), "-o", str(target))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith(f"error: {INVALID / name}{reason}")
    assert "Traceback" not in err
    assert not target.exists()


def test_preview_says_when_it_cannot_write_the_page(capsys, tmp_path):
    code, _, err = run(
        capsys, "preview", str(EXAMPLES / "welcome_back.yaml"), "-o", str(tmp_path / "no" / "x.html")
    )
    assert code == 1
    assert err.startswith(f"error: {tmp_path / 'no' / 'x.html'}: cannot write the preview: ")
