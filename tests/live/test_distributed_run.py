"""Campaigns delivered by a distributed Airflow: CeleryExecutor with two workers, PostgreSQL, Redis.

One stack serves every test of this module (starting it is most of the time): the API server,
scheduler, DAG processor and two Celery workers run as separate processes on this machine, with
Airflow's metadata and the delivery log on PostgreSQL, Redis as the broker, chunk files on a shared
staging directory and the LINE simulator as LINE. Four campaigns are triggered at once through the
REST API:

- ``live_welcome``: 10,000 profiles in chunks of 2,000 (five push tasks) on channel ``default``;
- ``live_shared_a`` and ``live_shared_b``: 1,000 recipients each, in push mode, on channel ``shared``
  whose LINE push limit is 200 requests/s; both go through the pool ``line_oa__line_oa_shared``
  (2 slots, ``concurrent_senders: 2``), so each sender gets half of the limit;
- ``live_other_workspace``: workspace ``retail_th``, which the sender account is not assigned to.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg2
import pytest
import sqlalchemy
import yaml

from line_oa.delivery_log.store import schema_sql
from tests.live.airflow_stack import (
    POSTGRES,
    REPO_ROOT,
    AirflowApi,
    AirflowStack,
    drop_database,
    postgres_available,
    recreate_database,
)

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.timeout(900)]

LIVE_TOKEN = "sim-live-token-xyz123"
SHARED_TOKEN = "sim-live-shared-token-abc789"
PROFILES = 10_000
MAIN, SHARED_A, SHARED_B, OTHER_WORKSPACE = (
    "live_welcome", "live_shared_a", "live_shared_b", "live_other_workspace",
)  # fmt: skip
SHARED_RECIPIENTS = 1_000
SHARED_PUSH_LIMIT = 200
RUN_TIMEOUT = 420.0


def dag_id(campaign_id: str) -> str:
    return f"line_campaign__{campaign_id}"


@dataclass
class LiveRuns:
    """What the module's tests read: the stack, the simulator and each campaign's run."""

    stack: AirflowStack
    api: AirflowApi
    simulator: Any
    ledger_db: str
    cdp_path: pathlib.Path
    run_ids: dict[str, str]
    states: dict[str, str]
    task_instances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ledger(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = psycopg2.connect(dbname=self.ledger_db, **POSTGRES)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            conn.close()

    def tis(self, campaign_id: str, task_id: str) -> list[dict[str, Any]]:
        return [ti for ti in self.task_instances[campaign_id] if ti["task_id"] == task_id]

    def task_log(self, campaign_id: str, task_id: str) -> str:
        """Return the text of every attempt's log file of the task (all map indexes)."""
        folder = (
            self.stack.logs_folder / f"dag_id={dag_id(campaign_id)}" / f"run_id={self.run_ids[campaign_id]}"
        )
        files = sorted((folder / f"task_id={task_id}").rglob("attempt=*.log"))
        return "\n".join(path.read_text(errors="replace") for path in files)


def write_campaigns(directory: pathlib.Path) -> None:
    """Write the four campaign files, each a copy of include/campaigns/welcome_back.yaml."""
    template = yaml.safe_load((REPO_ROOT / "include" / "campaigns" / "welcome_back.yaml").read_text())
    directory.mkdir(parents=True)

    def write(campaign_id: str, **changes: Any) -> None:
        document = json.loads(json.dumps(template))
        document["id"] = campaign_id
        document["name"] = f"Live test: {campaign_id}"
        for path, value in changes.items():
            section, _, key = path.partition("__")
            if key:
                document.setdefault(section, {})[key] = value
            else:
                document[section] = value
        (directory / f"{campaign_id}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))

    write(MAIN, activation__chunk_size=2000)
    for campaign_id in (SHARED_A, SHARED_B):
        write(
            campaign_id,
            content__line_config="line_oa_shared",
            content__delivery_mode="push",
            activation__chunk_size=250,
        )
    write(OTHER_WORKSPACE, workspace="retail_th")


def connection(host: str, token: str, **extra: Any) -> str:
    return json.dumps({"conn_type": "line_oa", "host": host, "password": token, "extra": extra})


def create_ledger_schema(database: str) -> None:
    """Create the delivery log's tables, as a deployment does once before its first campaign.

    Left to the tasks, several validate tasks starting at once on an empty database race in
    ``DeliveryLog.ensure_schema()``: PostgreSQL's ``CREATE TABLE IF NOT EXISTS`` is not safe
    against a concurrent twin and one of them fails with ``UniqueViolation ... pg_type_typname_nsp_index``.
    """
    ddl = schema_sql("postgres")
    conn = psycopg2.connect(dbname=database, **POSTGRES)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(ddl)
    finally:
        conn.close()


def live_environment(root: pathlib.Path, simulator_url: str, cdp_path: pathlib.Path, ledger_db: str) -> dict:
    """Return the campaign settings and connections of every Airflow component."""
    return {
        "AIRFLOW__LINE_OA__DATA_DIR": str(root / "data"),
        "AIRFLOW__LINE_OA__CAMPAIGNS_DIR": str(root / "campaigns"),
        "AIRFLOW__LINE_OA__STAGING_URI": str(root / "staging"),
        "AIRFLOW__LINE_OA__CHANNEL_POOLS": "1",
        "AIRFLOW__LINE_OA__STRICT_DAGS": "1",
        "AIRFLOW_CONN_LINE_OA_DEFAULT": connection(
            simulator_url, LIVE_TOKEN, workspaces="retail_jp", push_rate_limit=2000
        ),
        "AIRFLOW_CONN_LINE_OA_SHARED": connection(
            simulator_url,
            SHARED_TOKEN,
            workspaces="retail_jp",
            push_rate_limit=SHARED_PUSH_LIMIT,
            concurrent_senders=2,
        ),
        "AIRFLOW_CONN_LINE_OA_CDP": json.dumps({"conn_type": "sqlite", "host": str(cdp_path)}),
        "AIRFLOW_CONN_LINE_OA_LEDGER": json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": ledger_db,
            }
        ),
    }


def trigger_campaigns(api: AirflowApi) -> tuple[dict[str, str], dict[str, str]]:
    """Unpause and trigger every campaign at once; wait for the runs; return their ids and states."""
    campaigns = (MAIN, SHARED_A, SHARED_B, OTHER_WORKSPACE)
    api.wait_for_dags([dag_id(c) for c in campaigns])
    conf = {c: {"max_recipients": SHARED_RECIPIENTS} for c in (SHARED_A, SHARED_B)}
    for campaign_id in campaigns:
        api.unpause(dag_id(campaign_id))
    run_ids = {c: api.trigger(dag_id(c), conf.get(c, {"dry_run": False})) for c in campaigns}
    states = api.wait_for_runs({dag_id(c): r for c, r in run_ids.items()}, timeout=RUN_TIMEOUT)
    return run_ids, {c: states[dag_id(c)] for c in campaigns}


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveRuns]:
    """Start the stack and the simulator, run the four campaigns; stop every process afterwards."""
    if not postgres_available():
        pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (.ci/run starts it)")
    from line_oa.cli.sample_cdp import generate_sample_cdp
    from line_simulator.testing import SimulatorProcess

    root = tmp_path_factory.mktemp("live")
    cdp = generate_sample_cdp(root / "cdp.db", profiles=PROFILES)
    write_campaigns(root / "campaigns")
    simulator_config = {
        "channels": [
            {"name": "default", "token": LIVE_TOKEN},
            {"name": "shared", "token": SHARED_TOKEN, "rate_limits": {"push": SHARED_PUSH_LIMIT}},
        ],
        "recipients": {"blocked": cdp.blocked_user_ids, "unknown": cdp.unknown_user_ids},
    }
    ledger_db = f"line_oa_live_ledger_{secrets.token_hex(4)}"
    with SimulatorProcess(simulator_config) as simulator:
        stack = AirflowStack(
            root,
            env=live_environment(root, simulator.base_url, cdp.path, ledger_db),
            pools={"line_oa__line_oa_default": 1, "line_oa__line_oa_shared": 2},
        )
        try:
            recreate_database(ledger_db)
            create_ledger_schema(ledger_db)
            stack.start()
            api = stack.api()
            run_ids, states = trigger_campaigns(api)
            yield LiveRuns(
                stack=stack,
                api=api,
                simulator=simulator,
                ledger_db=ledger_db,
                cdp_path=cdp.path,
                run_ids=run_ids,
                states=states,
                task_instances={c: api.task_instances(dag_id(c), r) for c, r in run_ids.items()},
            )
        finally:
            stack.stop()
            drop_database(ledger_db)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_campaign_runs_succeed_with_their_tasks_spread_over_both_celery_workers(live):
    """The four runs start together: about 16 tasks are queued at once and each worker holds at most
    two (concurrency 2, Airflow's prefetch multiplier 1), so both workers must take some. Which worker
    takes each of the main campaign's push tasks is not: they run one after another, and under load one
    worker took all of them (seen once with six test workers), so they are only required to run on
    the stack's workers."""
    assert live.states[MAIN] == "success", live.task_instances[MAIN]
    pushes = live.tis(MAIN, "push")
    assert len(pushes) >= 5, "the campaign should have been split into several chunks"
    assert {ti["state"] for ti in pushes} == {"success"}
    assert {ti["hostname"] for ti in pushes} <= {"worker1", "worker2"}
    ran_on = {ti["hostname"] for runs in live.task_instances.values() for ti in runs if ti.get("hostname")}
    assert ran_on == {"worker1", "worker2"}
    (summary,) = live.ledger(
        "SELECT state, sent, not_sent FROM line_campaign_summary WHERE campaign_id = %s AND run_id = %s",
        (MAIN, live.run_ids[MAIN]),
    )
    assert summary[0] == "Finished"
    assert summary[1] > 0
    assert summary[2] == 0


def test_delivery_log_matches_what_line_recorded_row_for_row(live):
    rows = live.ledger(
        "SELECT profile_id, line_user_id, status, reason, accepted_request_id FROM line_delivery_log "
        "WHERE campaign_id = %s AND run_id = %s",
        (MAIN, live.run_ids[MAIN]),
    )
    with sqlite3.connect(live.cdp_path) as cdp:
        (opted_in,) = cdp.execute("SELECT COUNT(*) FROM profiles WHERE opted_in = 1").fetchone()
    assert len(rows) == opted_in, "every profile of the segment has exactly one row"
    assert {status for _, _, status, _, _ in rows} <= {"sent", "excluded", "failed"}
    recorded: dict[str, list[str]] = defaultdict(list)
    for delivery in live.simulator.admin.iter_deliveries(channel="default"):
        recorded[delivery["to"]].append(delivery["request_id"])
    sent = {line_user_id: accepted for _, line_user_id, status, _, accepted in rows if status == "sent"}
    assert sent, "nothing was sent"
    mismatched = {
        uid: (accepted, recorded.get(uid))
        for uid, accepted in sent.items()
        if recorded.get(uid) != [accepted]
    }
    assert mismatched == {}, f"{len(mismatched)} sent rows disagree with LINE's record"
    assert set(recorded) == set(sent), "LINE recorded deliveries the log does not show as sent"
    assert live.simulator.admin.delivery_counts(min_count=2, channel="default") == {}


def test_task_logs_hold_the_summary_block_and_never_the_channel_token(live):
    summary_log = live.task_log(MAIN, "summarize")
    assert f"LINE campaign {MAIN} (" in summary_log
    assert "chunk 0 done" in live.task_log(MAIN, "push")
    log_files = [path for path in live.stack.logs_folder.rglob("*") if path.is_file()]
    assert len(log_files) > 20
    leaking = [
        str(path)
        for path in [*log_files, *live.stack.output_dir.glob("*.log")]
        if any(token in path.read_text(errors="replace") for token in (LIVE_TOKEN, SHARED_TOKEN))
    ]
    assert leaking == [], "a channel access token appears unmasked in these logs"


def test_two_campaigns_on_one_channel_stay_under_its_rate_limit_together(live):
    assert live.states[SHARED_A] == "success", live.task_instances[SHARED_A]
    assert live.states[SHARED_B] == "success", live.task_instances[SHARED_B]
    spans = {
        campaign_id: [
            (_time(ti["start_date"]), _time(ti["end_date"])) for ti in live.tis(campaign_id, "push")
        ]
        for campaign_id in (SHARED_A, SHARED_B)
    }
    overlapping = any(a0 < b1 and b0 < a1 for a0, a1 in spans[SHARED_A] for b0, b1 in spans[SHARED_B])
    assert overlapping, f"the two campaigns never sent at the same time: {spans}"
    stats = live.simulator.admin.stats()
    # one push per recipient (unknown recipients are answered 400 and not retried)
    assert stats["rate_limited"] <= 0.01 * 2 * SHARED_RECIPIENTS, stats
    sent_total = 0
    for campaign_id in (SHARED_A, SHARED_B):
        outcomes = dict(
            live.ledger(
                "SELECT COALESCE(reason, status), COUNT(*) FROM line_delivery_log WHERE campaign_id = %s "
                "AND run_id = %s AND status IN ('sent', 'failed') GROUP BY COALESCE(reason, status)",
                (campaign_id, live.run_ids[campaign_id]),
            )
        )
        # max_recipients caps the eligible recipients; malformed ids never reach LINE
        assert set(outcomes) <= {"sent", "unknown_recipient", "invalid_recipient_id"}, outcomes
        assert outcomes["sent"] + outcomes.get("unknown_recipient", 0) == SHARED_RECIPIENTS, outcomes
        sent_total += outcomes["sent"]
    assert sum(1 for _ in live.simulator.admin.iter_deliveries(channel="shared")) == sent_total
    # both campaigns target the same first recipients: each got each campaign once
    assert live.simulator.admin.delivery_counts(min_count=3, channel="shared") == {}


def test_campaign_of_a_workspace_not_assigned_to_the_sender_account_is_refused_at_validate(live):
    assert live.states[OTHER_WORKSPACE] == "failed"
    (validate,) = live.tis(OTHER_WORKSPACE, "validate")
    assert validate["state"] == "failed"
    assert {ti["state"] for ti in live.tis(OTHER_WORKSPACE, "extract_segment")} == {"upstream_failed"}
    assert live.tis(OTHER_WORKSPACE, "push")[0]["state"] == "upstream_failed"
    assert "not assigned to workspace 'retail_th'" in live.task_log(OTHER_WORKSPACE, "validate")
    rows = live.ledger("SELECT COUNT(*) FROM line_delivery_log WHERE campaign_id = %s", (OTHER_WORKSPACE,))
    assert rows == [(0,)]


def test_ready_made_queries_answer_on_the_delivery_log_of_the_live_runs(live):
    queries = REPO_ROOT / "include" / "sql" / "queries"
    engine = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{live.ledger_db}")
    try:
        with engine.connect() as conn:

            def run(name: str, **params: Any) -> list[tuple]:
                text = sqlalchemy.text((queries / f"{name}.sql").read_text())
                return [tuple(row) for row in conn.execute(text, params)]

            scope = {"campaign_id": MAIN, "run_id": live.run_ids[MAIN]}
            outcomes = run("run_outcomes", **scope)
            summaries = {row[0]: row for row in run("runs_summary", campaign_id=None)}
            unfinished = run("unfinished_recipients", **scope)
            excluded = run("excluded_profiles", **scope)
    finally:
        engine.dispose()
    (rows,) = live.ledger("SELECT COUNT(*) FROM line_delivery_log WHERE campaign_id = %s", (MAIN,))
    assert sum(n for *_, n in outcomes) == rows[0]
    sent = sum(n for status, _, _, n in outcomes if status == "sent")
    state, sent_in_summary = summaries[MAIN][2], summaries[MAIN][6]
    assert (state, sent_in_summary) == ("Finished", sent)
    assert {campaign: row[2] for campaign, row in summaries.items()} == {
        MAIN: "Finished", SHARED_A: "Finished", SHARED_B: "Finished", OTHER_WORKSPACE: "Suspended",
    }  # fmt: skip
    assert unfinished == []
    assert {reason for reason, *_ in excluded} == {"missing_recipient_id", "duplicate_recipient"}
