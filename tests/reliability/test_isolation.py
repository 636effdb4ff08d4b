"""Isolation: trigger parameters cannot change the sender account; a test send reaches only its list."""

from __future__ import annotations

import pytest

from tests.dags.conftest import ledger_of, run_dag, task_states

pytestmark = pytest.mark.slow

SEND_ENDPOINTS = {"push", "multicast"}


@pytest.mark.parametrize(
    "conf",
    [
        {},
        {"line_config": "line_oa_default", "line_oa_conn_id": "line_oa_default"},
        {"workspace": "retail_kr", "content": {"line_config": "line_oa_default"}, "redeliver": True},
    ],
    ids=[
        "as written",
        "conf names the workspace's own sender",
        "conf moves the campaign to the sender's workspace",
    ],
)
def test_a_sender_account_not_assigned_to_the_workspace_never_sends_whatever_the_conf_says(
    rel_env, rel_line, conf
):
    dag_run = run_dag(rel_env, "rel_wrong_sender", run_conf=conf)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["validate"] == "failed"
    assert not SEND_ENDPOINTS & set(rel_line.admin.stats()["requests"]), "something was sent"
    assert rel_line.admin.deliveries() == []
    from line_oa.integration.dag_factory import _ledger, _line_hook
    from line_oa.integration.launch import validate_for_launch
    from line_oa.integration.pipeline import LaunchRefused, TriggerOptions

    with pytest.raises(LaunchRefused, match="'line_oa_other' is not assigned to workspace 'retail_jp'"):
        validate_for_launch(
            str(rel_env["campaigns"] / "rel_wrong_sender.yaml"),
            run_id="isolation-check",
            options=TriggerOptions.from_params(conf),
            hook_factory=_line_hook,
            ledger_factory=_ledger,
        )


def test_conf_cannot_move_a_campaign_onto_another_workspaces_sender(rel_env, rel_line):
    conf = {"line_config": "line_oa_other", "line_oa_conn_id": "line_oa_other", "workspace": "retail_kr"}
    dag_run = run_dag(rel_env, "rel_right_sender", run_conf=conf)
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert rel_line.admin.deliveries(channel="other") == [], "the other workspace's account sent"
    assert len(rel_line.admin.deliveries(channel="default")) > 0
    ledger = ledger_of("rel_right_sender", dag_run.run_id)
    assert sum(1 for _ in ledger.rows("sent")) == len(rel_line.admin.deliveries())


def test_a_test_send_on_a_big_segment_goes_only_to_the_listed_recipients(rel_env, rel_line):
    from line_oa.cli.sample_cdp import generate_sample_cdp

    from .conftest import eligible_ids

    cdp = generate_sample_cdp(rel_env["base"] / "big_cdp.db", profiles=20_000, seed=23)
    in_segment = sorted(eligible_ids(cdp.path))[:2]
    outsider = "U" + "0123456789abcdef" * 2
    listed = [*in_segment, outsider, in_segment[0]]  # one listed twice
    dag_run = run_dag(rel_env, "rel_big_test_send", run_conf={"test_recipients": listed, "max_recipients": 5})
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert sorted(d["to"] for d in rel_line.admin.deliveries()) == sorted({*in_segment, outsider})
    ledger = ledger_of("rel_big_test_send", dag_run.run_id)
    rows = list(ledger.rows())
    assert len(rows) == 3
    assert all(row.is_test and row.status == "sent" for row in rows)
    assert {row.profile_id for row in rows} == {f"test:{uid}" for uid in {*in_segment, outsider}}
