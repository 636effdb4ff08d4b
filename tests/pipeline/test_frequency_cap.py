"""Frequency capping: at most N real campaign deliveries per LINE user in a rolling window, counted from
the delivery log over the workspace or the sender account, applied at extract time."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from line_oa.campaign.loading import parse_campaign
from line_oa.delivery_log.rows import LedgerRow
from line_oa.integration.frequency_cap import FrequencyCheck
from line_oa.integration.segment import extract_segment, read_segment
from line_oa.vocabulary import Reason, Status
from tests.delivery.conftest import POSTGRES_CONN

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def uid(n: int) -> str:
    return "U" + f"{n:032x}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_log(request, tmp_path, monkeypatch):
    """Return ``open_log(campaign_id, run_id, now=NOW)``: a delivery log on SQLite or PostgreSQL."""
    from line_oa.delivery_log.store import DeliveryLog, ledger_hook, sqlite_file_hook

    if request.param == "postgres":
        monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_LEDGER_PG", json.dumps(POSTGRES_CONN))
        hook_factory = lambda: ledger_hook("line_oa_ledger_pg")  # noqa: E731
    else:
        hook_factory = lambda: sqlite_file_hook(tmp_path / "delivery_log.db")  # noqa: E731
    opened = []

    def make(campaign_id: str, run_id: str, now: datetime = NOW):
        ledger = DeliveryLog(hook_factory(), campaign_id=campaign_id, run_id=run_id, clock=lambda: now)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        with contextlib.suppress(Exception):
            ledger.close()


@pytest.fixture
def workspace() -> str:
    """A workspace of its own: the PostgreSQL log is shared with other tests."""
    return f"ws-{uuid.uuid4().hex[:10]}"


def campaign(cid: str, workspace: str, cap: dict | None, line_config: str = "line_oa_default"):
    document = {
        "id": cid,
        "name": cid,
        "workspace": workspace,
        "status": "launched",
        "target_audience": {"parent_segment": "all", "segment": "everyone"},
        "content": {"line_config": line_config, "messages": [{"type": "text", "text": "hi"}]},
        "delivery_schedule": {"type": "immediate"},
    }
    if cap is not None:
        document["target_audience"]["frequency_cap"] = cap
    return parse_campaign(yaml.safe_dump(document), f"{cid}.yaml")


def delivered(
    open_log, workspace, users, *, at=NOW, status=Status.SENT, is_test=False, sender="line_oa_default"
):
    """Record a real run of another campaign that sent (or is sending) to ``users`` at ``at``."""
    cid, run = f"earlier-{uuid.uuid4().hex[:8]}", f"run-{uuid.uuid4().hex[:8]}"
    ledger = open_log(cid, run, now=at)
    if not is_test:
        ledger.enter_delivery(one_off=False, redeliver=False, workspace=workspace, sender_account=sender)
    ledger.add(
        LedgerRow(
            f"p{user}",
            user,
            status,
            None,
            chunk_index=0,
            is_test=is_test,
            sent_at=at.isoformat() if status == Status.SENT else None,
        )  # fmt: skip
        for user in users
    )
    return ledger


def extract(open_log, tmp_path, camp, users, *, run_id=None, now=NOW, real=True):
    """Run the extraction of ``camp`` over ``users`` (one profile each); return (result, outcomes)."""
    run_id = run_id or f"run-{uuid.uuid4().hex[:8]}"
    ledger = open_log(camp.id, run_id, now=now)
    if real:
        ledger.enter_delivery(
            one_off=False, redeliver=False, workspace=camp.workspace, sender_account=camp.content.line_config
        )
    result = extract_segment(
        rows=sorted(((f"p{u}", u) for u in users), key=lambda r: r[1]),
        ledger=ledger,
        staging_dir=tmp_path / run_id,
        frequency=FrequencyCheck.for_run(camp, ledger, real=real),
    )
    outcomes = {row.line_user_id: row.reason for row in ledger.rows(Status.EXCLUDED)}
    outcomes.update({user: None for _p, user in read_segment(result.segment_uri)})
    return result, outcomes


@pytest.mark.parametrize(
    ("hours_ago", "capped"),
    [
        pytest.param(23.9, True, id="a send 23.9 h ago is inside a 24 h window"),
        pytest.param(24.1, False, id="a send 24.1 h ago has left a 24 h window"),
    ],
)
def test_window_edges(open_log, tmp_path, workspace, hours_ago, capped):
    delivered(open_log, workspace, [uid(1)], at=NOW - timedelta(hours=hours_ago))
    camp = campaign("second", workspace, {"max_deliveries": 1, "window_hours": 24})
    result, outcomes = extract(open_log, tmp_path, camp, [uid(1), uid(2)])
    assert outcomes[uid(1)] == (Reason.FREQUENCY_CAPPED if capped else None)
    assert outcomes[uid(2)] is None
    assert result.eligible == (1 if capped else 2)


def test_max_deliveries_counts_each_other_run(open_log, tmp_path, workspace):
    delivered(open_log, workspace, [uid(1), uid(2)])
    delivered(open_log, workspace, [uid(1)])
    camp = campaign("third", workspace, {"max_deliveries": 2, "window_hours": 24})
    _result, outcomes = extract(open_log, tmp_path, camp, [uid(1), uid(2), uid(3)])
    assert outcomes == {uid(1): Reason.FREQUENCY_CAPPED, uid(2): None, uid(3): None}


def test_deliveries_in_progress_count_and_failures_do_not(open_log, tmp_path, workspace):
    delivered(open_log, workspace, [uid(1)], status=Status.PENDING)
    delivered(open_log, workspace, [uid(2)], status=Status.SENDING)
    delivered(open_log, workspace, [uid(3)], status=Status.FAILED)
    camp = campaign("next", workspace, {"max_deliveries": 1, "window_hours": 1})
    _result, outcomes = extract(open_log, tmp_path, camp, [uid(1), uid(2), uid(3)])
    assert outcomes == {uid(1): Reason.FREQUENCY_CAPPED, uid(2): Reason.FREQUENCY_CAPPED, uid(3): None}


def test_test_sends_are_never_counted(open_log, tmp_path, workspace):
    delivered(open_log, workspace, [uid(1)], is_test=True)
    camp = campaign("after_test", workspace, {"max_deliveries": 1, "window_hours": 24})
    result, outcomes = extract(open_log, tmp_path, camp, [uid(1)])
    assert outcomes == {uid(1): None}
    assert result.excluded == Counter()


@pytest.mark.parametrize(
    ("scope", "other_workspace", "other_sender", "capped"),
    [
        pytest.param("workspace", False, True, True, id="workspace scope counts the workspace's sends"),
        pytest.param("workspace", True, False, False, id="workspace scope ignores another workspace"),
        pytest.param(
            "sender_account", True, False, True, id="sender scope counts the account in any workspace"
        ),
        pytest.param("sender_account", False, True, False, id="sender scope ignores another account"),
    ],
)
def test_scope_workspace_or_sender_account(
    open_log, tmp_path, workspace, scope, other_workspace, other_sender, capped
):
    earlier_workspace = f"{workspace}-other" if other_workspace else workspace
    delivered(
        open_log, earlier_workspace, [uid(1)], sender="line_oa_other" if other_sender else f"acct-{workspace}"
    )
    camp = campaign(
        "scoped",
        workspace,
        {"max_deliveries": 1, "window_hours": 24, "scope": scope},
        line_config=f"acct-{workspace}",
    )
    _result, outcomes = extract(open_log, tmp_path, camp, [uid(1)])
    assert outcomes[uid(1)] == (Reason.FREQUENCY_CAPPED if capped else None)


def test_a_resumed_run_does_not_cap_its_own_recipients_and_keeps_earlier_outcomes(
    open_log, tmp_path, workspace
):
    delivered(open_log, workspace, [uid(1)])
    camp = campaign("resumed", workspace, {"max_deliveries": 1, "window_hours": 24})
    first, outcomes = extract(open_log, tmp_path, camp, [uid(1), uid(2)], run_id="run-resumed")
    assert outcomes == {uid(1): Reason.FREQUENCY_CAPPED, uid(2): None}
    ledger = open_log(camp.id, "run-resumed")
    ledger.add([LedgerRow(f"p{uid(2)}", uid(2), Status.SENT, None, chunk_index=0, sent_at=NOW.isoformat())])
    # Later: the earlier delivery has left the window, and another campaign has sent to uid(2).
    delivered(open_log, workspace, [uid(2)], at=NOW + timedelta(hours=30))
    again, outcomes = extract(
        open_log, tmp_path, camp, [uid(1), uid(2)], run_id="run-resumed", now=NOW + timedelta(hours=30)
    )
    assert outcomes == {uid(1): Reason.FREQUENCY_CAPPED, uid(2): None}, "the run's outcomes did not change"
    assert (again.eligible, again.excluded) == (first.eligible, first.excluded)
    assert ledger.row_count() == 2


def test_a_dry_run_applies_the_cap_and_claims_nobody(open_log, tmp_path, workspace):
    delivered(open_log, workspace, [uid(1)])
    camp = campaign("dry", workspace, {"max_deliveries": 1, "window_hours": 24})
    _result, outcomes = extract(open_log, tmp_path, camp, [uid(1), uid(2)], real=False)
    assert outcomes == {uid(1): Reason.FREQUENCY_CAPPED, uid(2): None}
    other = campaign("other", workspace, {"max_deliveries": 1, "window_hours": 24})
    _result, outcomes = extract(open_log, tmp_path, other, [uid(2)])
    assert outcomes == {uid(2): None}, "the dry run's recipients were counted as deliveries"


def test_an_extracted_run_counts_before_its_rows_are_registered(open_log, tmp_path, workspace):
    """The claim: a run that extracted (no pending rows yet) already counts for the next campaign."""
    first = campaign("first", workspace, None)
    _result, outcomes = extract(open_log, tmp_path, first, [uid(1), uid(2)])
    assert outcomes == {uid(1): None, uid(2): None}, "a campaign without a cap caps nobody"
    second = campaign("second", workspace, {"max_deliveries": 1, "window_hours": 24})
    _result, outcomes = extract(open_log, tmp_path, second, [uid(2), uid(3)])
    assert outcomes == {uid(2): Reason.FREQUENCY_CAPPED, uid(3): None}


def test_two_campaigns_extracting_at_once_never_both_take_the_last_slot(open_log, tmp_path, workspace):
    """Race: many capped campaigns of one workspace extract the same users at the same time, each from
    its own connection and thread; with a cap of 1, every user is eligible in exactly one of them."""
    users = [uid(n) for n in range(200)]
    camps = [campaign(f"racer{i}", workspace, {"max_deliveries": 1, "window_hours": 24}) for i in range(4)]
    start = threading.Barrier(len(camps))
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def run(camp):
        try:
            start.wait()
            results[camp.id] = extract(open_log, tmp_path, camp, users)[1]
        except BaseException as err:  # reported below: a thread's error must fail the test
            errors.append(err)

    threads = [threading.Thread(target=run, args=(camp,)) for camp in camps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    eligible = Counter(
        user for outcomes in results.values() for user, reason in outcomes.items() if reason is None
    )
    assert len(results) == len(camps)
    assert all(set(outcomes) == set(users) for outcomes in results.values()), "a user without an outcome"
    assert eligible == Counter(users), (
        "a user was eligible in more (or fewer) than one of the racing campaigns"
    )


def test_validation_names_the_file_the_key_and_the_rule(tmp_path):
    import pathlib

    from line_oa.campaign.validation import validate_campaign_file

    root = pathlib.Path(__file__).resolve().parents[2]
    document = yaml.safe_load((root / "include" / "campaigns" / "welcome_back.yaml").read_text())
    document["target_audience"]["frequency_cap"] = {
        "max_deliveries": 0,
        "window_hours": 24,
        "scope": "channel",
    }
    document["target_audience"]["frequency_cap"]["per_day"] = 3
    path = tmp_path / "welcome_back.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    problems = [str(p) for p in validate_campaign_file(path).problems]
    cap = "target_audience.frequency_cap"
    assert any(f"{cap}.max_deliveries: " in p and "greater than or equal to 1" in p for p in problems), (
        problems
    )
    assert any(f"{cap}.scope: " in p and "'workspace' or 'sender_account'" in p for p in problems), problems
    assert any(f"{cap}.per_day: " in p for p in problems), problems
    assert all(p.startswith(f"{path}:") for p in problems), "each problem names the file and line"


def test_the_sender_account_default_applies_when_the_campaign_file_has_no_cap(workspace):
    from line_oa.delivery.client import ChannelSettings
    from line_oa.integration.launch import decide_frequency_cap
    from line_oa.integration.pipeline import LaunchRefused

    default = '{"max_deliveries": 3, "window_hours": 12, "scope": "sender_account"}'
    channel = ChannelSettings(conn_id="line_oa_default", base_url="http://x", frequency_cap=default)
    uncapped = campaign("uncapped", workspace, None)
    decided = decide_frequency_cap(uncapped, channel)
    assert decided == {"max_deliveries": 3, "window_hours": 12, "scope": "sender_account"}
    capped = campaign("capped", workspace, {"max_deliveries": 1, "window_hours": 24})
    assert decide_frequency_cap(capped, channel)["max_deliveries"] == 1, "the campaign file's cap wins"
    assert decide_frequency_cap(uncapped, ChannelSettings(conn_id="c", base_url="http://x")) is None
    check = FrequencyCheck.for_run(uncapped, ledger=None, real=True, validation={"frequency_cap": decided})
    assert (check.cap.max_deliveries, check.cap.scope) == (3, "sender_account")
    broken = ChannelSettings(
        conn_id="line_oa_default", base_url="http://x", frequency_cap={"window_hours": 0}
    )
    with pytest.raises(
        LaunchRefused, match=r"'line_oa_default': extra frequency_cap\.(max_deliveries|window_hours)"
    ):
        decide_frequency_cap(uncapped, broken)


def _older_log_ddl(dialect: str) -> str:
    """The DDL of a release before frequency caps: no scope columns, no claim table."""
    import re

    from line_oa.delivery_log.store import schema_sql

    ddl = re.sub(r"    workspace      TEXT,\n    sender_account TEXT,\n", "", schema_sql(dialect))
    return re.sub(r"CREATE TABLE IF NOT EXISTS line_frequency_claim \(.*?\);\n", "", ddl, flags=re.DOTALL)


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_log_of_an_earlier_release_gets_the_scope_columns_and_the_claim_table(
    dialect, tmp_path, monkeypatch
):
    from line_oa.delivery_log.store import DeliveryLog, ledger_hook, sqlite_file_hook

    ddl = _older_log_ddl(dialect)
    assert "sender_account" not in ddl
    assert "line_frequency_claim" not in ddl
    database = f"ledger_cap_{uuid.uuid4().hex[:8]}"
    if dialect == "sqlite":
        import sqlite3

        with sqlite3.connect(tmp_path / "old.db") as conn:
            conn.executescript(ddl)
        hook = lambda: sqlite_file_hook(tmp_path / "old.db")  # noqa: E731
    else:
        from tests.delivery.test_ledger_schema import admin_in

        admin = admin_in("test")
        admin.execute(f"CREATE DATABASE {database}")
        admin_in(database).execute(ddl)
        monkeypatch.setenv("AIRFLOW_CONN_LEDGER_OLD", json.dumps({**POSTGRES_CONN, "schema": database}))
        hook = lambda: ledger_hook("ledger_old")  # noqa: E731
    try:
        first = DeliveryLog(hook(), campaign_id="old", run_id="r1", clock=lambda: NOW)
        first.enter_delivery(one_off=False, redeliver=False, workspace="ws", sender_account="acct")
        first.add([LedgerRow("p1", uid(1), Status.SENT, None, chunk_index=0, sent_at=NOW.isoformat())])
        first.close()
        later = DeliveryLog(hook(), campaign_id="new", run_id="r2", clock=lambda: NOW)
        assert later.over_frequency_cap(
            scope="workspace", value="ws", since=NOW.isoformat(), max_deliveries=1
        ) == {uid(1)}
        assert later.claim_recipients([uid(2)]) == 1
        later.close()
    finally:
        if dialect == "postgres":
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.connection.close()


def test_the_dag_docs_state_the_cap(workspace):
    from line_oa.integration.dag_docs import describe

    capped = campaign(
        "capped", workspace, {"max_deliveries": 2, "window_hours": 48, "scope": "sender_account"}
    )
    assert (
        "at most 2 campaign deliveries per LINE user in 48 h, counted over sender account `line_oa_default`"
        in describe(capped)
    )
    assert "**Frequency cap**: none in the file" in describe(campaign("free", workspace, None))
