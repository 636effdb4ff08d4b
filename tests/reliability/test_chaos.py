"""The chaos run: every fault at once, the push task SIGKILLed mid-chunk, and still exactly once.

``make chaos`` runs it with 100,000 recipients (``LINE_OA_CHAOS_RECIPIENTS``); the default suite with
5,000. The figures are printed and written to ``chaos-<N>.json`` beside the run's data.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.dags.conftest import ledger_of

from .conftest import CHAOS_FAULTS, assert_every_profile_accounted_for, assert_log_equals_record

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(1800)]


def test_chaos_run_delivers_every_eligible_recipient_exactly_once(chaos_run, capsys):
    run = chaos_run
    assert run.killer_errors == []
    assert run.state == "success", run.task_tries
    assert run.stats["faults"], "no fault was injected"
    for kind in ("error_500", "rate_limit_429", "reset", "accepted_then_lost"):
        assert run.stats["faults"].get(kind, 0) > 0, f"no {kind} was injected: {run.stats['faults']}"

    record = Counter(d["to"] for d in run.deliveries)
    assert {to: n for to, n in record.items() if n > 1} == {}, "duplicates"
    assert set(record) == run.eligible, "an eligible recipient was missed (or a stranger was sent to)"

    ledger = ledger_of("rel_chaos", run.run_id)
    sent = assert_log_equals_record(ledger, run.deliveries)
    counts = assert_every_profile_accounted_for(ledger, run.profiles)
    assert sent == len(run.eligible) == counts[("sent", None)]
    settled_by_409 = sum(1 for row in ledger.rows("sent") if row.http_status == 409)
    attempts = ledger.totals()["attempts"]
    ledger.close()

    figures = {
        "recipients": len(run.eligible),
        "profiles": len(run.profiles),
        "seconds": round(run.seconds, 1),
        "faults_injected": run.stats["faults"],
        "faults_configured": CHAOS_FAULTS,
        "requests": run.stats["requests"].get("push", {}),
        "kills": [kill.__dict__ for kill in run.kills],
        "kills_after_the_chunk_ended": [kill.__dict__ for kill in run.late_kills],
        "push_tries": {task: n for task, n in run.task_tries.items() if task.startswith("push")},
        "sent": sent,
        "settled_by_409": settled_by_409,
        "attempts_logged": attempts,
        "duplicates": 0,
        "missed": 0,
        "log_rows": dict(Counter({f"{s}/{r}": n for (s, r), n in counts.items()})),
    }
    (run.env["base"] / f"chaos-{len(run.eligible)}.json").write_text(
        json.dumps(figures, indent=2, default=str)
    )
    with capsys.disabled():
        print(f"\nchaos run: {json.dumps(figures, default=str)}")


def test_the_push_task_was_killed_mid_chunk_and_retried_by_airflow(chaos_run):
    run = chaos_run
    assert len(run.kills) >= 1, "the push task was never killed"
    for kill in run.kills:
        assert kill.chunk_sent > 0, f"the kill came before the chunk sent anything: {kill}"
        assert kill.chunk_not_final > 0, f"the kill came after the chunk was done: {kill}"
        assert run.task_tries[f"push[{kill.map_index}]"] > kill.try_number, "Airflow did not retry the chunk"
    assert run.dag_run.get_task_instance("summarize").state == "success"
