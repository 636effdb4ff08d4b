"""An Airflow metadata DB, campaign files, a sample CDP and connections for end-to-end DAG runs."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from line_simulator import DEFAULT_TOKEN

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "include" / "campaigns"
PROFILES = 3000


def _campaign(source: str, campaign_id: str, **changes) -> dict:
    document = yaml.safe_load((SHIPPED / f"{source}.yaml").read_text(encoding="utf-8"))
    document["id"] = campaign_id
    for dotted, value in changes.items():
        target = document
        *parents, last = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return document


PERSONAL_MESSAGES = [
    {
        "type": "text",
        "text": '{{ profile.first_name | default("there") }}さん、お帰りなさい $',
        "emojis": [{"index": 53, "product_id": "5ac1bfd5040ab15980c9b435", "emoji_id": "001"}],
    },
    {"type": "text", "text": "Your page: https://shop.example.com/for-you?name={{ profile.first_name }}"},
]


def e2e_campaigns() -> dict[str, dict]:
    """Return the campaign files of the end-to-end tests, by id."""
    soon = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    files = {
        "e2e_immediate": _campaign("welcome_back", "e2e_immediate"),
        "e2e_push": _campaign("welcome_back", "e2e_push", **{"content.delivery_mode": "push"}),
        "e2e_pages": _campaign("welcome_back", "e2e_pages"),
        "e2e_suppressed": _campaign(
            "welcome_back", "e2e_suppressed", **{"target_audience.suppression_lists": ["e2e_optouts"]}
        ),
        # Their own workspace and sender account: other tests' deliveries in the session do not count.
        "e2e_cap_first": _campaign(
            "welcome_back", "e2e_cap_first", workspace="retail_cap", **{"content.line_config": "line_oa_cap"}
        ),
        "e2e_cap_second": _campaign(
            "welcome_back",
            "e2e_cap_second",
            workspace="retail_cap",
            **{
                "content.line_config": "line_oa_cap",
                "target_audience.frequency_cap": {"max_deliveries": 1, "window_hours": 24},
            },
        ),
        # All four marketer controls on one campaign (the test rewrites the quiet hours around now).
        "e2e_controls_first": _campaign(
            "welcome_back",
            "e2e_controls_first",
            workspace="retail_ctl",
            **{"content.line_config": "line_oa_ctl"},
        ),
        "e2e_controls": _campaign(
            "welcome_back",
            "e2e_controls",
            workspace="retail_ctl",
            **{
                "content.line_config": "line_oa_ctl",
                "content.messages": PERSONAL_MESSAGES,
                "target_audience.segment": "friends_with_names",
                "target_audience.frequency_cap": {"max_deliveries": 1, "window_hours": 24},
                "target_audience.suppression_lists": ["e2e_optouts"],
                "delivery_schedule.quiet_hours": {"start": "03:00", "end": "03:01", "timezone": "Asia/Tokyo"},
            },
        ),
        # Personalized: each recipient's first name (the default when empty) in a text, an emoji after
        # it, and in a link's query value.
        "e2e_personal": _campaign(
            "welcome_back",
            "e2e_personal",
            **{
                "target_audience.segment": "friends_with_names",
                "content.messages": PERSONAL_MESSAGES,
            },
        ),
        "e2e_quota": _campaign(
            "welcome_back", "e2e_quota", **{"content.delivery_mode": "push", "activation.chunk_size": 500}
        ),
        "e2e_scheduled": _campaign(
            "spring_sale", "e2e_scheduled", **{"delivery_schedule.send_at": soon.isoformat()}
        ),
        "e2e_send_now": _campaign(
            "spring_sale", "e2e_send_now", **{"delivery_schedule.send_at": soon.isoformat()}
        ),
        "e2e_recurring": _campaign(
            "welcome_back",
            "e2e_recurring",
            delivery_schedule={"type": "recurring", "cron": "0 9 * * 1", "timezone": "Asia/Tokyo"},
        ),
        "e2e_draft": _campaign("summer_preview", "e2e_draft"),
        "e2e_dry": _campaign("welcome_back", "e2e_dry"),
        # its window is rewritten around the clock by the test that runs it
        "e2e_quiet": _campaign(
            "welcome_back",
            "e2e_quiet",
            **{"delivery_schedule.quiet_hours": {"start": "03:00", "end": "03:01", "timezone": "Asia/Tokyo"}},
        ),
        "e2e_test_send": _campaign("welcome_back", "e2e_test_send"),
        "e2e_other_workspace": _campaign("welcome_back", "e2e_other_workspace", workspace="retail_kr"),
        "e2e_insights": _campaign("spring_sale", "e2e_insights", delivery_schedule={"type": "immediate"}),
        "e2e_unit_budget": _campaign(
            "welcome_back", "e2e_unit_budget", aggregation_unit="a_new_unit_this_month"
        ),
    }
    for document in files.values():
        schedule = document["delivery_schedule"]
        if "send_at" in schedule and not isinstance(schedule["send_at"], str):
            schedule["send_at"] = schedule["send_at"].isoformat()
    return files


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory, line_simulator):
    """Set up Airflow (SQLite metadata), campaign files, the CDP and connections once per session."""
    from line_oa.cli.sample_cdp import generate_sample_cdp

    base = tmp_path_factory.mktemp("e2e")
    campaigns = base / "campaigns"
    campaigns.mkdir()
    for campaign_id, document in e2e_campaigns().items():
        (campaigns / f"{campaign_id}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))
    cdp = generate_sample_cdp(base / "cdp.db", profiles=PROFILES, seed=11)
    env = {
        "AIRFLOW__LINE_OA__CAMPAIGNS_DIR": str(campaigns),
        "AIRFLOW__LINE_OA__DATA_DIR": str(base / "data"),
        "AIRFLOW_CONN_LINE_OA_DEFAULT": json.dumps(
            {
                "conn_type": "line_oa",
                "host": line_simulator.base_url,
                "password": DEFAULT_TOKEN,
                "extra": {"workspaces": "retail_jp", "timeout": 5},
            }
        ),
        "AIRFLOW_CONN_LINE_OA_CDP": json.dumps({"conn_type": "sqlite", "host": str(base / "cdp.db")}),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        from airflow.utils import db

        db.resetdb()
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}
        yield {"bag": bag, "cdp": cdp, "base": base, "campaigns": campaigns}


@pytest.fixture
def line(sim, airflow_env):
    """Return the simulator, reset, with the sample CDP's blocked and unknown users configured."""
    cdp = airflow_env["cdp"]
    sim.admin.configure(recipients={"blocked": cdp.blocked_user_ids, "unknown": cdp.unknown_user_ids})
    return sim


class FastForward:
    """The clocks of a test whose run is deferred until a moment (the end of quiet hours), moved forward.

    Both move together: the test's process (Airflow's tasks and trigger) and LINE's (the simulator's
    ``/_sim/clock``, which stamps its record). ``shifted`` is how far they moved.
    """

    # the clocks stop this far short of the trigger's moment: the trigger still sees it ahead and fires
    # when it passes, as Airflow's triggerer would at the end of the window
    LEAD = timedelta(seconds=1)

    def __init__(self, traveller, simulator) -> None:
        self.traveller = traveller
        self.simulator = simulator
        self.shifted = timedelta(0)

    def to_just_before(self, moment: datetime) -> None:
        ahead = moment - datetime.now(UTC) - self.LEAD
        if ahead > timedelta(0):
            self.simulator.admin.advance_clock(ahead.total_seconds())
            self.traveller.shift(ahead)
            self.shifted += ahead


@pytest.fixture
def fast_forward(monkeypatch, sim):
    """Simulated time for the quiet-hours runs: the test's process runs on a clock that ticks as the real
    one (``time_machine``), and when a ``dag.test`` run's deferred task starts its ``DateTimeTrigger``,
    that clock and the simulator's jump to a second before the trigger's moment instead of waiting up
    to two minutes for it. Everything before the deferral (validate, the quiet_hours task deferring)
    happens in real time."""
    import time_machine
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    run = DateTimeTrigger.run
    with time_machine.travel(datetime.now(UTC), tick=True) as traveller:
        forward = FastForward(traveller, sim)

        async def run_from_just_before_the_moment(trigger):
            forward.to_just_before(trigger.moment)
            async for event in run(trigger):
                yield event

        monkeypatch.setattr(DateTimeTrigger, "run", run_from_just_before_the_moment)
        yield forward


def opt_out_list(tmp_path, monkeypatch, ending: str) -> None:
    """Point the SQL root at a copy of include/sql whose list ``e2e_optouts`` holds every profile whose
    id ends in ``ending`` (by profile id)."""
    import shutil

    root = tmp_path / "sql"
    shutil.copytree(ROOT / "include" / "sql", root)
    (root / "suppressions" / "lists").mkdir(parents=True, exist_ok=True)
    (root / "suppressions" / "lists" / "e2e_optouts.sql").write_text(
        f"-- every profile whose id ends in {ending}, by profile id\n"
        f"SELECT profile_id, NULL AS line_user_id FROM profiles WHERE profile_id LIKE '%{ending}'\n"
    )
    monkeypatch.setenv("AIRFLOW__LINE_OA__SQL_ROOT", str(root))


@contextlib.contextmanager
def parsing_context(dag_id: str):
    """Set Airflow's DAG parsing context to ``dag_id`` (as a task process of that DAG has it), then restore it.

    Airflow's own ``_airflow_parsing_context_manager`` leaves the variable set when it was unset before,
    which would make every later DAG bag of the session render one campaign only.
    """
    key = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"
    before = os.environ.get(key)
    os.environ[key] = dag_id
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def dag_test(dag, **kwargs):
    """Run ``dag.test(**kwargs)`` with the parsing context set to ``dag``; return the DagRun.

    Each ``dag.test()`` re-parses the DAG folder and serializes every DAG it holds (Airflow 3.3 re-syncs
    the bundle on every call, apache/airflow#64884): 20 test campaigns, about 2 CPU-seconds a run. With the
    parsing context set, the folder renders only the DAG under test, as in a task process (the product's
    path, tests/dags/test_dag_factory.py); that DAG is still parsed from its file and re-synced each run.
    """
    with parsing_context(dag.dag_id):
        return dag.test(**kwargs)


def run_dag(airflow_env, campaign_id: str, **kwargs):
    """Run a campaign's DAG with ``dag.test()``; return the DagRun."""
    return dag_test(airflow_env["bag"].dags[f"line_campaign__{campaign_id}"], **kwargs)


def run_scheduled(airflow_env, campaign_id: str, logical_date: datetime, **kwargs):
    """Run a campaign's DAG as the scheduler starts it: a run of type ``scheduled`` at ``logical_date``.

    ``dag.test()`` always creates a ``manual`` run; the scheduler's runs differ only in their
    ``run_type`` (and run id), which is what the validate task reads, so the run is created with those.
    """
    from unittest import mock

    from airflow.models.dagrun import DagRun
    from airflow.serialization.definitions.dag import SerializedDAG
    from airflow.utils.types import DagRunType

    original = SerializedDAG.create_dagrun

    def create_scheduled(self, *args, **create_kwargs):
        create_kwargs["run_type"] = DagRunType.SCHEDULED
        create_kwargs["run_id"] = DagRun.generate_run_id(
            run_type=DagRunType.SCHEDULED, logical_date=logical_date, run_after=logical_date
        )
        return original(self, *args, **create_kwargs)

    with mock.patch.object(SerializedDAG, "create_dagrun", create_scheduled):
        dag_run = run_dag(airflow_env, campaign_id, logical_date=logical_date, **kwargs)
    assert str(getattr(dag_run.run_type, "value", dag_run.run_type)) == "scheduled"
    return dag_run


def resume_run(airflow_env, campaign_id: str, dag_run, **kwargs):
    """Run a suspended run again under the same run id (its delivery scope), as clearing it does.

    ``dag.test()`` always starts a new run; keeping the run id makes it re-execute the same delivery
    scope, so only the delivery log's rows that are not final are sent.
    """
    from unittest import mock

    from airflow.models.dagrun import DagRun

    with mock.patch.object(DagRun, "generate_run_id", return_value=dag_run.run_id):
        return run_dag(airflow_env, campaign_id, logical_date=dag_run.logical_date, **kwargs)


def task_states(dag_run) -> dict[str, str]:
    return {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
        for ti in dag_run.get_task_instances()
    }


def ledger_of(campaign_id: str, run_id: str):
    from line_oa.delivery_log.store import DeliveryLog

    return DeliveryLog.connect(campaign_id=campaign_id, run_id=run_id)


def assert_log_matches_record(ledger, sim, *, is_test: bool = False) -> int:
    """Assert every `sent` row is one accepted delivery at the simulator and vice versa; return the count."""
    record = sim.admin.deliveries()
    counts = Counter(d["to"] for d in record)
    assert {to: n for to, n in counts.items() if n > 1} == {}, "a recipient was delivered twice"
    sent = {row.line_user_id: row for row in ledger.rows("sent") if row.is_test == is_test}
    assert set(sent) == set(counts), "the delivery log and LINE's record disagree on who was sent"
    for delivery in record:
        assert sent[delivery["to"]].accepted_request_id == delivery["request_id"]
    return len(sent)


def eligible_profiles(airflow_env) -> int:
    """Count opted-in profiles with a well-formed, first-seen LINE user id (what the campaign targets)."""
    with sqlite3.connect(airflow_env["base"] / "cdp.db") as conn:
        rows = conn.execute("SELECT line_user_id FROM profiles WHERE opted_in = 1").fetchall()
    ids = {
        uid
        for (uid,) in rows
        if uid and uid.startswith("U") and len(uid) == 33 and uid[1:] == uid[1:].lower()
    }
    return len({uid for uid in ids if all(c in "0123456789abcdef" for c in uid[1:])})
