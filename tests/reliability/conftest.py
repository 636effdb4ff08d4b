"""Fixtures of the reliability tests: campaigns that try to break the promises, a real executor, a killer.

The session's Airflow (SQLite metadata, the LINE simulator, the sample CDP and ``line_oa_default``) comes
from ``tests.dags.conftest``; this folder adds its own campaign files, sender accounts and delivery log,
and an execution API so that ``dag.test(use_executor=True)`` runs every task in a LocalExecutor
subprocess (the only way to SIGKILL a task and watch Airflow retry it).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from line_simulator import DEFAULT_TOKEN
from tests.dags.conftest import _campaign, airflow_env, dag_test, line  # noqa: F401  (fixtures reused)

if TYPE_CHECKING:
    import pathlib

# Distinctive tokens: a test greps every artifact of a run for them.
CHAOS_TOKEN = "sim-chaos-token-7c1f9e4b2d6a8035e1"
OTHER_TOKEN = "sim-other-workspace-token-4b9d02"
CHAOS_RECIPIENTS = int(os.environ.get("LINE_OA_CHAOS_RECIPIENTS") or 5000)
# Share of generated profiles that are eligible (opted in, a valid and first-seen LINE user id).
ELIGIBLE_SHARE = 0.865
HOSTILE_NAME = "Robert'); DROP TABLE line_delivery_log; -- <script>alert(1)</script>"
HOSTILE_TEXT = '<img src=x onerror=alert(3)> javascript:alert(4) https://shop.example.com/a?q=1"><script>alert(5)</script>'
FAST_RETRY = {"max_attempts": 10, "initial_backoff_seconds": 0.05, "max_backoff_seconds": 1.0}


def pytest_configure(config):
    config.addinivalue_line("markers", "chaos: the chaos run (make chaos runs it with 100,000 recipients)")


def chaos_chunk_size(recipients: int = CHAOS_RECIPIENTS) -> int:
    """Split the chaos run into four chunks (the campaign schema allows 100 to 50,000)."""
    return max(100, min(50_000, math.ceil(recipients / 4)))


def reliability_campaigns() -> dict[str, dict]:
    """Return the campaign files of this folder, by id."""
    push = {"content.delivery_mode": "push"}
    return {
        "rel_chaos": _campaign(
            "welcome_back",
            "rel_chaos",
            **push,
            **{
                "content.line_config": "line_oa_chaos",
                "target_audience.cdp_conn_id": "line_oa_chaos_cdp",
                "activation.chunk_size": chaos_chunk_size(),
                "activation.retry": FAST_RETRY,
            },
        ),
        "rel_quota": _campaign(
            "welcome_back",
            "rel_quota",
            **push,
            **{"activation.chunk_size": 500, "activation.retry": FAST_RETRY},
        ),
        "rel_outage": _campaign(
            "welcome_back",
            "rel_outage",
            **push,
            **{
                "target_audience.cdp_conn_id": "line_oa_small_cdp",
                "activation.retry": {
                    "max_attempts": 3,
                    "initial_backoff_seconds": 0.01,
                    "max_backoff_seconds": 0.02,
                },
            },
        ),
        "rel_brief_outage": _campaign(
            "welcome_back",
            "rel_brief_outage",
            **push,
            **{
                "activation.retry": {
                    "max_attempts": 8,
                    "initial_backoff_seconds": 0.2,
                    "max_backoff_seconds": 2.0,
                }
            },
        ),
        "rel_wrong_sender": _campaign(
            "welcome_back", "rel_wrong_sender", **{"content.line_config": "line_oa_other"}
        ),
        "rel_right_sender": _campaign("welcome_back", "rel_right_sender", **push),
        "rel_big_test_send": _campaign(
            "welcome_back", "rel_big_test_send", **{"target_audience.cdp_conn_id": "line_oa_big_cdp"}
        ),
        # the one-off guard and the one-row-per-profile check (test_one_off_guard, test_one_row_per_profile)
        "rel_one_off": _campaign(
            "welcome_back",
            "rel_one_off",
            **push,
            **{
                "target_audience.cdp_conn_id": "line_oa_small_cdp",
                "activation.chunk_size": 100,
                "activation.retry": FAST_RETRY,
            },
        ),
        "rel_row_check": _campaign(
            "welcome_back",
            "rel_row_check",
            **push,
            **{"target_audience.cdp_conn_id": "line_oa_small_cdp", "activation.retry": FAST_RETRY},
        ),
        "rel_hostile_cdp": _campaign(
            "welcome_back",
            "rel_hostile_cdp",
            **push,
            name=HOSTILE_NAME,
            description="x; DROP TABLE profiles; -- <script>alert(2)</script>",
            **{
                "target_audience.cdp_conn_id": "line_oa_hostile_cdp",
                "activation.chunk_size": 100,
                "content.messages": [{"type": "text", "text": HOSTILE_TEXT}],
            },
        ),
    }


@pytest.fixture(scope="package")
def rel_env(airflow_env, line_simulator, tmp_path_factory):  # noqa: F811
    """Write this folder's campaigns and define its connections; return the shape ``run_dag`` takes."""
    base = tmp_path_factory.mktemp("reliability")
    campaigns = base / "campaigns"
    campaigns.mkdir()
    for campaign_id, document in reliability_campaigns().items():
        (campaigns / f"{campaign_id}.yaml").write_text(yaml.safe_dump(document, allow_unicode=True))

    def line_conn(token: str, workspaces: str) -> str:
        extra = {"workspaces": workspaces, "timeout": 5}
        return json.dumps(
            {"conn_type": "line_oa", "host": line_simulator.base_url, "password": token, "extra": extra}
        )

    def sqlite_conn(name: str) -> str:
        return json.dumps({"conn_type": "sqlite", "host": str(base / name)})

    env = {
        "AIRFLOW__LINE_OA__CAMPAIGNS_DIR": str(campaigns),
        "AIRFLOW__LINE_OA__DATA_DIR": str(base / "data"),
        "AIRFLOW_CONN_LINE_OA_CHAOS": line_conn(CHAOS_TOKEN, "retail_jp"),
        "AIRFLOW_CONN_LINE_OA_OTHER": line_conn(OTHER_TOKEN, "retail_kr"),
        "AIRFLOW_CONN_LINE_OA_CHAOS_CDP": sqlite_conn("chaos_cdp.db"),
        "AIRFLOW_CONN_LINE_OA_BIG_CDP": sqlite_conn("big_cdp.db"),
        "AIRFLOW_CONN_LINE_OA_HOSTILE_CDP": sqlite_conn("hostile_cdp.db"),
        "AIRFLOW_CONN_LINE_OA_SMALL_CDP": sqlite_conn("small_cdp.db"),
    }
    from line_oa.cli.sample_cdp import generate_sample_cdp

    small_cdp = generate_sample_cdp(
        base / "small_cdp.db", profiles=400, seed=5, blocked_fraction=0, unknown_fraction=0
    )
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(airflow_env["bag"].dag_folder))
        assert bag.import_errors == {}
        assert {f"line_campaign__{c}" for c in reliability_campaigns()} <= set(bag.dag_ids)
        yield {
            "bag": bag,
            "cdp": airflow_env["cdp"],
            "small_cdp": small_cdp,
            "base": base,
            "campaigns": campaigns,
        }


def simulator_channels() -> list[dict]:
    """Return the simulator's channels: default, the chaos sender and another workspace's sender."""
    unlimited = {"type": "none"}
    return [
        {"name": "default", "token": DEFAULT_TOKEN, "quota": unlimited},
        {"name": "chaos", "token": CHAOS_TOKEN, "quota": unlimited},
        {"name": "other", "token": OTHER_TOKEN, "quota": unlimited},
    ]


@pytest.fixture
def rel_line(line):  # noqa: F811
    """Return the simulator, reset, with this folder's channels and the sample CDP's blocked/unknown users."""
    line.admin.configure(channels=simulator_channels())
    return line


# -- the delivery log and the simulator's record -----------------------------------------------
def eligible_ids(cdp_path: pathlib.Path) -> set[str]:
    """Return the LINE user ids a campaign on ``all_line_friends`` must reach (valid, opted in)."""
    from line_oa.integration.segment import LINE_USER_ID

    with contextlib.closing(sqlite3.connect(cdp_path)) as conn:
        rows = conn.execute("SELECT line_user_id FROM profiles WHERE opted_in = 1").fetchall()
    return {uid for (uid,) in rows if uid and LINE_USER_ID.match(uid)}


def segment_profiles(cdp_path: pathlib.Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(cdp_path)) as conn:
        return {pid for (pid,) in conn.execute("SELECT profile_id FROM profiles WHERE opted_in = 1")}


def assert_every_profile_accounted_for(ledger, profiles: set[str]) -> Counter:
    """Assert each profile of the segment has exactly one row and none is left unsent; return the counts."""
    rows = list(ledger.rows())
    ids = [row.profile_id for row in rows]
    assert len(ids) == len(set(ids)), "a profile has two rows"
    assert set(ids) == profiles, "the delivery log and the segment disagree on who was targeted"
    counts = Counter((row.status, row.reason) for row in rows)
    assert not [key for key in counts if key[0] in ("pending", "sending")], counts
    assert sum(counts.values()) == len(profiles)
    return counts


def assert_log_equals_record(ledger, record: list[dict]) -> int:
    """Assert the log's `sent` rows and LINE's record are the same deliveries, row for row; return the count.

    :param record: the simulator's deliveries (``sim.admin.deliveries()``).
    """
    by_recipient = Counter(d["to"] for d in record)
    assert {to: n for to, n in by_recipient.items() if n > 1} == {}, "a recipient was delivered twice"
    sent = {row.line_user_id: row for row in ledger.rows("sent")}
    assert set(sent) == set(by_recipient), "the delivery log and LINE's record disagree on who was sent"
    for delivery in record:
        row = sent[delivery["to"]]
        assert (row.retry_key, row.accepted_request_id) == (delivery["retry_key"], delivery["request_id"])
    return len(sent)


# -- a real executor ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="package")
def executor_env(rel_env):
    """Serve Airflow's execution API on a thread and select LocalExecutor (2 worker processes).

    ``dag.test(use_executor=True)`` hands each task to LocalExecutor, whose workers start a supervisor
    and a task process per task; those talk to the execution API over HTTP. The API runs in this
    process (auth bypassed, as ``dag.test()`` does in-process), so no api-server process is needed.
    """
    import uvicorn
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(InProcessExecutionAPI().app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="execution-api", daemon=True)
    thread.start()
    # a hang detector: beside a model-checker run and two Airflow stacks it took more than 30 s to start
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the execution API did not start"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://127.0.0.1:{port}/")
        patch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
        patch.setenv("AIRFLOW__CORE__PARALLELISM", "2")
        yield rel_env
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Kill:
    """One SIGKILL of a push task's process."""

    map_index: int
    try_number: int
    pid: int
    deliveries_before: int
    chunk_sent: int = 0
    chunk_not_final: int = 0


@dataclass
class PushKiller:
    """SIGKILL a running push task's process each time LINE's delivery count passes a threshold.

    The victim is the running push task furthest into its chunk, with rows both sent and not yet final
    in the delivery log (mid-chunk). Its process is found through the task instance's ``pid`` (recorded
    when the task starts) and checked to be a task process of this test session running that task
    instance (``airflow worker -- <ti id>``) before it is killed.
    """

    sim: Any
    dag_id: str
    thresholds: list[int]
    ledger_path: pathlib.Path
    campaign_id: str
    kills: list[Kill] = field(default_factory=list)
    late_kills: list[Kill] = field(default_factory=list)  # the chunk had ended when the signal came
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push-killer", daemon=True)

    def __enter__(self) -> PushKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            for threshold in self.thresholds:
                while not self._stop.is_set() and self.sim.admin.stats()["deliveries"] < threshold:
                    time.sleep(0.05)
                while not self._stop.is_set() and not self._kill_running_push():
                    time.sleep(0.05)
        except Exception as err:  # reported by the test; a dead killer must not hang the run
            self.errors.append(f"{type(err).__name__}: {err}")

    def _chunk_progress(self, map_index: int) -> tuple[int, int]:
        """Return (sent, pending or sending) rows of one chunk in the delivery log."""
        sent = not_final = 0
        with contextlib.closing(sqlite3.connect(self.ledger_path, timeout=30)) as conn:
            for status, count in conn.execute(
                "SELECT status, COUNT(*) FROM line_delivery_log WHERE campaign_id = ? AND chunk_index = ? "
                "GROUP BY status",
                (self.campaign_id, map_index),
            ):
                if status == "sent":
                    sent += count
                elif status in ("pending", "sending"):
                    not_final += count
        return sent, not_final

    def _kill_running_push(self) -> bool:
        """Kill the running push task furthest into its chunk (some rows sent, some not); False if none is."""
        import psutil
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            running = (
                session.query(
                    TaskInstance.id, TaskInstance.pid, TaskInstance.map_index, TaskInstance.try_number
                )
                .filter(TaskInstance.dag_id == self.dag_id, TaskInstance.task_id == "push")
                .filter(TaskInstance.state == "running", TaskInstance.pid.isnot(None))
                .all()
            )
        candidates = []
        for ti_id, pid, map_index, try_number in running:
            sent, not_final = self._chunk_progress(map_index)
            if sent and not_final:
                candidates.append((sent, ti_id, pid, map_index, try_number))
        for _, ti_id, pid, map_index, try_number in sorted(candidates, reverse=True):
            try:
                process = psutil.Process(pid)
                title = " ".join(process.cmdline())
                ours = os.getpid() in {parent.pid for parent in process.parents()}
            except psutil.NoSuchProcess:
                continue
            if not title and _exiting(process):
                continue  # the task ended between the query and now (an exiting process shows no command line)
            if f"airflow worker -- {ti_id}" not in title or not ours:
                self.errors.append(f"pid {pid} of push[{map_index}] is {title!r}; not killed")
                continue
            before = self.sim.admin.stats()["deliveries"]
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)  # let the kernel reap it; then look at what the log holds for that chunk
            kill = Kill(map_index, try_number, pid, before, *self._chunk_progress(map_index))
            if not kill.chunk_not_final:
                # On a loaded machine the chunk can end between the check above and the signal: that
                # task was killed after its sends, not mid-chunk. Airflow retries it all the same; the
                # killer counts it apart and goes on to the next chunk that is mid-way.
                self.late_kills.append(kill)
                continue
            self.kills.append(kill)
            return True
        return False


def _exiting(process, wait: float = 2.0) -> bool:
    """Whether a process is on its way out: gone, or a zombie its parent has not reaped, within ``wait`` s.

    Seen once in CI: a push task's process read with an empty command line (its memory already released,
    not yet a zombie) the moment its chunk ended, and the killer took it for a foreign process.
    """
    from tests.processes import ended

    deadline = time.monotonic() + wait
    while not ended(process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def console_to(path: pathlib.Path):
    """Copy what this process prints or logs for a while to ``path``: fds 1 and 2, sys.stdout/err, logging."""
    import io
    import logging
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with open(path, "ab", buffering=0) as sink:
        text = io.TextIOWrapper(sink, encoding="utf-8", errors="replace", write_through=True)
        handler = logging.StreamHandler(text)
        logging.getLogger().addHandler(handler)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        sys.stdout = sys.stderr = text
        try:
            yield
        finally:
            logging.getLogger().removeHandler(handler)
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            text.detach()


@dataclass
class ChaosRun:
    """What the chaos run left behind, for the tests that read it."""

    env: dict
    dag_run: Any
    run_id: str
    state: str
    seconds: float
    kills: list[Kill]
    late_kills: list[Kill]
    killer_errors: list[str]
    stats: dict
    deliveries: list[dict]
    eligible: set[str]
    profiles: set[str]
    console: pathlib.Path
    task_tries: dict[str, int]


CHAOS_FAULTS = {
    "seed": 20261,
    "error_500_rate": 0.03,
    "rate_limit_429_rate": 0.02,
    "reset_rate": 0.01,
    "accepted_then_lost_rate": 0.01,
    "latency_ms": 2,
    "latency_jitter_ms": 20,
}


@pytest.fixture(scope="package")
def chaos_run(executor_env, line_simulator) -> ChaosRun:
    """Deliver ``rel_chaos`` to about LINE_OA_CHAOS_RECIPIENTS recipients through every fault at once.

    Under LocalExecutor, with the push task SIGKILLed twice mid-chunk (in the 2nd and 4th chunks) and
    retried by Airflow. The simulator keeps the record that the tests compare with the delivery log.
    """
    from line_oa.cli.sample_cdp import generate_sample_cdp

    base = executor_env["base"]
    cdp = generate_sample_cdp(
        base / "chaos_cdp.db", profiles=round(CHAOS_RECIPIENTS / ELIGIBLE_SHARE), seed=2027, blocked_fraction=0,
        unknown_fraction=0,
    )  # fmt: skip
    eligible = eligible_ids(cdp.path)
    sim = line_simulator
    sim.admin.reset(keep_config=False)
    sim.admin.configure(channels=simulator_channels(), faults=CHAOS_FAULTS)
    chunk = chaos_chunk_size()
    thresholds = [int(chunk * 1.5), int(chunk * 3.4)]
    dag = executor_env["bag"].dags["line_campaign__rel_chaos"]
    console = base / "chaos-console.log"
    started = time.monotonic()
    killer = PushKiller(sim, dag.dag_id, thresholds, base / "data" / "delivery_log.db", "rel_chaos")
    with killer, console_to(console):
        dag_run = dag_test(dag, use_executor=True)
    seconds = time.monotonic() - started
    tries = {
        (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): ti.try_number
        for ti in dag_run.get_task_instances()
    }
    return ChaosRun(
        env=executor_env,
        dag_run=dag_run,
        run_id=dag_run.run_id,
        state=str(dag_run.state),
        seconds=seconds,
        kills=killer.kills,
        late_kills=killer.late_kills,
        killer_errors=killer.errors,
        stats=sim.admin.stats(),
        deliveries=sim.admin.deliveries(),
        eligible=eligible,
        profiles=segment_profiles(cdp.path),
        console=console,
        task_tries=tries,
    )
