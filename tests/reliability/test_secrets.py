"""After a full run under a real executor, the channel access token appears in none of its artifacts.

The chaos run is the richest run there is: every task ran in a LocalExecutor subprocess, tasks were
killed and retried, LINE answered 500, 429, resets and lost answers. Its token is distinctive, so a
plain substring search is enough.
"""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

from .conftest import CHAOS_TOKEN

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def files_under(folder: pathlib.Path) -> list[pathlib.Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_task_logs_exist_for_every_task_and_attempt_and_never_hold_the_token(chaos_run):
    from airflow.configuration import conf

    logs = pathlib.Path(conf.get("logging", "base_log_folder")) / "dag_id=line_campaign__rel_chaos"
    files = files_under(logs)
    tasks = {part.split("=", 1)[1] for path in files for part in path.parts if part.startswith("task_id=")}
    assert tasks == {
        "kind_delivery", "kind_dry_run", "kind_test_send",
        "validate", "quiet_hours", "extract_segment", "chunk_profiles", "push", "summarize",
    }  # fmt: skip
    killed = [f"map_index={kill.map_index}/attempt={kill.try_number}.log" for kill in chaos_run.kills]
    assert all(any(str(path).endswith(name) for path in files) for name in killed), (
        "no log of a killed attempt"
    )
    text = "\n".join(path.read_text(errors="replace") for path in files)
    assert "delivery summary" in text, "the logs do not hold what the tasks logged"
    assert "chunk " in text
    assert CHAOS_TOKEN not in text


def test_the_console_of_the_run_never_shows_the_token(chaos_run):
    console = chaos_run.console.read_text(errors="replace")
    assert "push" in console, "nothing of the run reached the console"
    assert CHAOS_TOKEN not in console


def test_xcom_rendered_fields_and_the_whole_metadata_database_never_hold_the_token(chaos_run):
    from airflow.configuration import conf

    database = pathlib.Path(conf.get("database", "sql_alchemy_conn").removeprefix("sqlite:///"))
    with sqlite3.connect(database) as conn:
        xcoms = conn.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = 'line_campaign__rel_chaos'"
        ).fetchall()
        rendered = conn.execute(
            "SELECT task_id, rendered_fields FROM rendered_task_instance_fields WHERE dag_id = 'line_campaign__rel_chaos'"
        ).fetchall()
        docs = conn.execute(
            "SELECT data FROM serialized_dag WHERE dag_id = 'line_campaign__rel_chaos'"
        ).fetchall()
    assert {task for task, _ in xcoms} >= {
        "validate",
        "extract_segment",
        "chunk_profiles",
        "push",
        "summarize",
    }
    assert {task for task, _ in rendered} >= {"push"}, "no rendered template fields were recorded"
    assert docs, "the DAG was not serialized"
    for _, value in xcoms + rendered:
        assert CHAOS_TOKEN not in str(value)
    assert CHAOS_TOKEN not in str(docs)
    for path in database.parent.glob(database.name + "*"):  # the file and its journal, byte for byte
        assert CHAOS_TOKEN.encode() not in path.read_bytes(), path


def test_the_delivery_log_report_staging_files_and_doc_md_never_hold_the_token(chaos_run):
    data = chaos_run.env["base"] / "data"
    reports = list((data / "reports" / "rel_chaos").glob("*.html"))
    assert reports, "no HTML report was written"
    artifacts = files_under(data)
    assert any(path.name.startswith("delivery_log.db") for path in artifacts)
    for path in artifacts:  # delivery log (and its WAL), reports, segment and chunk files
        assert CHAOS_TOKEN.encode() not in path.read_bytes(), path
    dag = chaos_run.env["bag"].dags["line_campaign__rel_chaos"]
    assert "line_oa_chaos" in dag.doc_md, "doc_md names the sender account's connection"
    assert CHAOS_TOKEN not in dag.doc_md + str(dag.description) + str(dag.params)


def test_exception_messages_of_the_hook_never_carry_the_token(rel_env, rel_line, monkeypatch):
    """A refused token, a connection error and a missing token: what the error says, never the token."""
    import json
    import os

    from line_oa.errors import LineOAError
    from line_oa.integration.hooks import LineOAHook

    messages = []
    rel_line.admin.configure(channels=[{"name": "chaos", "token": "rotated-token"}])
    hook = LineOAHook(line_oa_conn_id="line_oa_chaos")
    for call in (
        hook.get_bot_info,
        hook.get_quota,
        lambda: hook.validate_push([{"type": "text", "text": "x"}]),
    ):
        with pytest.raises(LineOAError) as refused:
            call()
        messages.append(f"{refused.value!s} {refused.value!r}")
    messages.append(str(hook.test_connection()))
    hook.close()
    conn = json.loads(os.environ["AIRFLOW_CONN_LINE_OA_CHAOS"])
    assert conn["password"] == CHAOS_TOKEN
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_CHAOS", json.dumps({**conn, "host": "http://127.0.0.1:9"}))
    unreachable = LineOAHook(line_oa_conn_id="line_oa_chaos")
    with pytest.raises(LineOAError) as down:
        unreachable.get_quota()
    messages.append(f"{down.value!s} {down.value!r} {down.value.__cause__!r} {down.value.__context__!r}")
    assert all(CHAOS_TOKEN not in message for message in messages), messages
    assert "401" in messages[0]
