"""A model-based checker of the exactly-once promise: random fault sequences, checked from LINE's side.

A *scenario* is a chunk of recipients (friends, blocked, unknown to the channel, malformed ids), a
delivery mode and a sequence of *steps*. Each step runs the real engine (``deliver_chunk``) on the real
delivery log (SQLite or PostgreSQL) against the LINE simulator over HTTP, under a fault mix drawn by
hypothesis: accepted-then-lost, 5xx, rate-limit 429, monthly-limit 429 (final, or temporary while
another delivery holds a reservation), 401, hangs and timeouts, resets, 409 with and without the
accepted request id, 400 naming ``to[i]`` or nobody, a user stop or a kill after k requests, the quota
raised, the clock moved past LINE's 24 h key memory, two senders on one chunk, a second run of the
one-off campaign, and the log database killed or stalled mid-chunk.

After every step the invariants that must hold at any time are checked; after the sequence a clean
resume runs and the final ones are checked (``check_final``). The simulator's record is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from line_oa.delivery.chunk import deliver_chunk
from line_oa.delivery.client import AsyncLineClient, ChannelSettings
from line_oa.delivery.engine import FLUSH_EVERY_ROWS
from line_oa.delivery.keys import push_retry_keys
from line_oa.delivery.results import RetryPolicy
from line_oa.delivery_log.store import RESUMABLE_REASONS, DeliveryLog
from line_oa.transitions import allowed
from line_simulator import DEFAULT_TOKEN
from tests.stopped_backend import StoppedBackend

MESSAGES = [{"type": "text", "text": "Model check https://shop.example.com/m?utm_source=line"}]
POLICY = RetryPolicy(max_attempts=4, initial_backoff_seconds=0.001, max_backoff_seconds=0.004)
# The final resume runs without faults: generous, so that a busy machine cannot fail it.
CLEAN_POLICY = RetryPolicy(max_attempts=8, initial_backoff_seconds=0.01, max_backoff_seconds=0.2)
CLEAN_TIMEOUT = 10.0
MAX_IN_FLIGHT = 4
CLIENT_TIMEOUT = 0.04  # a hang (0.08 s) outlasts it: the client sees a timeout
REFUSED_REASONS = {"invalid_recipient_id", "unknown_recipient", "rejected_by_line"}
STATS: Counter[str] = Counter()  # what the examples exercised, printed by the tests


def user(n: int) -> str:
    return "U" + f"{n:032x}"


# -- scenarios ----------------------------------------------------------------------------------
@dataclass
class Step:
    kind: str  # run | race | clock | quota_up | second_run
    faults: dict[str, Any] = field(default_factory=dict)
    # faults that follow each other: after ``switch_after`` requests, ``then_faults`` replace ``faults``
    then_faults: dict[str, Any] | None = None
    switch_after: int = 1
    quota: str = "none"  # none | tight | reserved | reserved_then_released
    token_ok: bool = True
    interrupt: tuple[str, int] | None = None  # ("stop" | "kill", after k requests)
    log_fault: str | None = None  # stall | fail (after k requests)
    log_fault_after: int = 1


@dataclass
class Scenario:
    mode: str
    kinds: list[str]  # one per recipient: friend | blocked | unknown | malformed
    multicast_unknown: str
    steps: list[Step]

    def recipients(self) -> list[tuple[str, str]]:
        people = []
        for i, kind in enumerate(self.kinds):
            uid = user(i + 1) if kind != "malformed" else "U" + f"{i:031x}"  # 32 chars: malformed
            people.append((f"p{i:04d}", uid))
        return people


FAULT_KEYS = (
    "error_500_rate",
    "error_503_rate",
    "rate_limit_429_rate",
    "reset_rate",
    "accepted_then_lost_rate",
    "hang_rate",
    "conflict_without_accepted_id_rate",
)


@st.composite
def fault_mixes(draw) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(FAULT_KEYS), max_size=4, unique=True))
    faults: dict[str, Any] = {key: 0 for key in FAULT_KEYS}
    for key in chosen:
        faults[key] = draw(st.sampled_from([0.2, 0.5, 0.8, 1.0] if key != "hang_rate" else [0.1, 0.3]))
    faults["hang_then"] = draw(st.sampled_from(["drop", "process"]))
    faults["seed"] = draw(st.integers(0, 2**16))
    return faults


@st.composite
def steps(draw) -> Step:
    kind = draw(st.sampled_from(["run", "run", "run", "race", "clock", "quota_up", "second_run"]))
    if kind not in ("run", "race"):
        return Step(kind)
    step = Step(kind, faults=draw(fault_mixes()))
    phases = draw(st.sampled_from(["one", "lost_then_transient", "random_then_random"]))
    if phases == "lost_then_transient":  # the combination that broke multicast: an answer lost, then errors
        step.faults.update(accepted_then_lost_rate=draw(st.sampled_from([0.5, 1.0])))
        step.then_faults = {key: 0 for key in FAULT_KEYS}
        for key in draw(st.lists(st.sampled_from(FAULT_KEYS[:5]), min_size=1, max_size=2, unique=True)):
            step.then_faults[key] = draw(st.sampled_from([0.8, 1.0]))
        step.then_faults["seed"] = step.faults["seed"]
    elif phases == "random_then_random":
        step.then_faults = draw(fault_mixes())
    if step.then_faults is not None:
        step.switch_after = draw(st.sampled_from([1, 1, 2, 3, 5]))
    step.quota = draw(st.sampled_from(["none", "none", "tight", "reserved", "reserved_then_released"]))
    step.token_ok = draw(st.sampled_from([True] * 5 + [False]))
    if draw(st.booleans()):
        step.interrupt = (draw(st.sampled_from(["stop", "kill"])), draw(st.integers(1, 12)))
    if kind == "run" and draw(st.integers(0, 5)) == 0:
        step.log_fault = draw(st.sampled_from(["stall", "fail"]))
        step.log_fault_after = draw(st.integers(0, 8))
    return step


@st.composite
def scenarios(draw) -> Scenario:
    n = draw(st.integers(1, 40))
    kinds = draw(
        st.lists(
            st.sampled_from(["friend"] * 7 + ["blocked", "unknown", "malformed"]), min_size=n, max_size=n
        )
    )
    return Scenario(
        mode=draw(st.sampled_from(["multicast", "push", "auto"])),
        kinds=kinds,
        multicast_unknown=draw(st.sampled_from(["skip", "reject"])),
        steps=draw(st.lists(steps(), min_size=1, max_size=5)),
    )


# -- the world: simulator, log, clock -----------------------------------------------------------
class World:
    """One scenario's simulator, delivery log and clock."""

    def __init__(self, sim, hook_factory, dialect: str):
        self.sim = sim
        self.admin = sim.admin
        self.hook_factory = hook_factory
        self.dialect = dialect
        self.campaign_id = f"model_{uuid.uuid4().hex[:10]}"
        self.run_id = "run-1"
        self.offset = timedelta(0)
        self.opened: list[DeliveryLog] = []

    def clock(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def ledger(self, run_id: str | None = None) -> DeliveryLog:
        ledger = DeliveryLog(
            self.hook_factory(), campaign_id=self.campaign_id, run_id=run_id or self.run_id, clock=self.clock
        )
        self.opened.append(ledger)
        return ledger

    def transitions(self) -> list[tuple]:
        """Return every status change the log recorded for this scenario (see ``record_transitions``)."""
        ledger = self.ledger("admin")
        p = "%s" if ledger.dialect == "postgres" else "?"
        cursor = ledger._conn.cursor()
        cursor.execute(
            f"SELECT profile_id, old_status, old_reason, new_status, new_reason FROM model_transitions "
            f"WHERE campaign_id = {p}",
            (self.campaign_id,),
        )
        rows = cursor.fetchall()
        ledger._conn.commit()
        return rows

    def close(self) -> None:
        _join_writer_threads()
        for ledger in self.opened:
            ledger.abandoned = False
            with contextlib.suppress(Exception):
                ledger.close()

    def client_factory(self, token_ok: bool = True, timeout: float = CLIENT_TIMEOUT):
        settings = ChannelSettings(conn_id="model", base_url=self.sim.base_url, timeout=timeout)
        token = DEFAULT_TOKEN if token_ok else "revoked-token"
        return lambda: AsyncLineClient(settings, {"Authorization": f"Bearer {token}"}, max_in_flight=8)


def _join_writer_threads(timeout: float = 10.0) -> None:
    """Wait for log writer threads a killed or stalled sender left behind (a zombie finishing)."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == "line-oa-log-writer":
            thread.join(max(0.0, deadline - time.monotonic()))


SQLITE_TRANSITIONS = """
CREATE TABLE IF NOT EXISTS model_transitions (
    campaign_id TEXT, run_id TEXT, profile_id TEXT, old_status TEXT, old_reason TEXT, new_status TEXT,
    new_reason TEXT);
CREATE TRIGGER IF NOT EXISTS model_transitions_log AFTER UPDATE ON line_delivery_log
BEGIN
    INSERT INTO model_transitions VALUES (old.campaign_id, old.run_id, old.profile_id, old.status,
        old.reason, new.status, new.reason);
END;
"""
POSTGRES_TRANSITIONS = (
    "CREATE TABLE IF NOT EXISTS model_transitions (campaign_id TEXT, run_id TEXT, profile_id TEXT, "
    "old_status TEXT, old_reason TEXT, new_status TEXT, new_reason TEXT)",
    "CREATE OR REPLACE FUNCTION model_transitions_log() RETURNS trigger AS $$ BEGIN "
    "INSERT INTO model_transitions VALUES (OLD.campaign_id, OLD.run_id, OLD.profile_id, OLD.status, "
    "OLD.reason, NEW.status, NEW.reason); RETURN NEW; END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS model_transitions_log ON line_delivery_log",
    "CREATE TRIGGER model_transitions_log AFTER UPDATE ON line_delivery_log FOR EACH ROW "
    "WHEN (NEW.campaign_id LIKE 'model\\_%') EXECUTE FUNCTION model_transitions_log()",
)


def record_transitions(ledger: DeliveryLog) -> None:
    """Make the real log record every status change of the checker's rows (a trigger on the table)."""
    if ledger.dialect == "sqlite":
        ledger._conn.executescript(SQLITE_TRANSITIONS)
        return
    cursor = ledger._conn.cursor()
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('model_transitions'))")
    cursor.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'model_transitions_log'")
    if cursor.fetchone() is None:
        for statement in POSTGRES_TRANSITIONS:
            cursor.execute(statement)
    ledger._conn.commit()


def start_scenario(world: World, scenario: Scenario) -> list[tuple[str, str]]:
    """Reset the simulator, register the chunk as chunk_profiles does, enter the run as a delivery."""
    world.admin.reset(keep_config=False)
    world.admin.configure(
        faults={"hang_seconds": 0.08},
        recipients={
            "blocked": [user(i + 1) for i, kind in enumerate(scenario.kinds) if kind == "blocked"],
            "unknown": [user(i + 1) for i, kind in enumerate(scenario.kinds) if kind == "unknown"],
            "multicast_unknown": scenario.multicast_unknown,
        },
    )
    people = scenario.recipients()
    ledger = world.ledger()
    record_transitions(ledger)
    assert ledger.enter_delivery(one_off=True, redeliver=False) is None
    users = [user_id for _, user_id in people]
    keys = push_retry_keys(world.campaign_id, world.run_id, users)
    ledger.add_pending(0, [profile for profile, _ in people], users, keys)
    return people


def _configure_quota(world: World, quota: str) -> threading.Timer | None:
    used = world.admin.stats()["consumption"]["default"]
    if quota == "none":
        world.admin.configure(channels=[{"name": "default", "quota": {"type": "none", "reserved": 0}}])
        return None
    world.admin.configure(channels=[{"name": "default", "quota": {"type": "limited", "value": used + 7}}])
    if quota == "tight":
        return None
    world.admin.reserve(5)  # quota remains (7), but a send needs more than 7 - 5
    if quota == "reserved_then_released":
        timer = threading.Timer(0.01, lambda: world.admin.reserve(0))
        timer.start()
        return timer
    return None


def run_step(world: World, step: Step, people: list[tuple[str, str]], mode: str) -> str:
    """Run one step; return how its sender(s) ended (for the statistics)."""
    STATS[f"step:{step.kind}"] += 1
    if step.kind == "clock":
        world.offset += timedelta(hours=25)
        world.admin.advance_clock(25 * 3600)
        return "clock moved 25 h"
    if step.kind == "quota_up":
        world.admin.reserve(0)
        world.admin.configure(channels=[{"name": "default", "quota": {"type": "none", "reserved": 0}}])
        return "quota raised"
    if step.kind == "second_run":
        other = world.ledger(f"run-{uuid.uuid4().hex[:6]}")
        blocking = other.enter_delivery(one_off=True, redeliver=False)
        assert blocking == world.run_id, "a second real run of a one-off campaign was let through"
        return "second run refused"
    world.admin.configure(faults=step.faults)
    timer = _configure_quota(world, step.quota)
    try:
        if step.kind == "race":
            return _race(world, step, people, mode)
        return _send(world, world.ledger(), step, people, mode)
    finally:
        if timer is not None:
            timer.cancel()
        _join_writer_threads()
        world.admin.configure(faults={key: 0 for key in FAULT_KEYS})


def _send(
    world: World, ledger: DeliveryLog, step: Step, people, mode: str, on_request=None, clean: bool = False
) -> str:
    engines: list = []
    fault = _LogFault(world, ledger, step.log_fault) if step.log_fault else None

    def hook(requests: int) -> None:
        if on_request is not None:
            on_request(requests)
        if step.then_faults is not None and requests == step.switch_after + 1:
            world.admin.configure(faults=step.then_faults)  # from the next request on
            STATS["fault_phases"] += 1
        if fault is not None and requests >= step.log_fault_after:
            fault.start()
        if step.interrupt and requests >= step.interrupt[1]:
            if step.interrupt[0] == "stop":
                engines[0].request_stop("stopped")
            else:
                engines[0].kill()

    if fault is not None and step.log_fault_after == 0:
        fault.start()
    try:
        result = deliver_chunk(
            client_factory=world.client_factory(step.token_ok, CLEAN_TIMEOUT if clean else CLIENT_TIMEOUT),
            ledger=ledger,
            chunk_index=0,
            recipients=people,
            messages=MESSAGES,
            mode=mode,
            policy=CLEAN_POLICY if clean else POLICY,
            max_in_flight=MAX_IN_FLIGHT,
            on_engine=engines.append,
            on_request=hook,
            log_timeout=0.15 if step.log_fault == "stall" else 10.0,
        )
        outcome = f"ended:{result.stopped_reason or 'complete'}"
    except asyncio.CancelledError:
        outcome = "killed"
    except Exception as err:  # the chunk failed: a stalled, failed or fenced log write
        outcome = f"raised:{type(err).__name__}"
    finally:
        if fault is not None:
            fault.stop()
    STATS[outcome] += 1
    return outcome


def _race(world: World, step: Step, people, mode: str) -> str:
    """Two senders on one chunk: a second one claims it after the first made a few requests."""
    second: list[threading.Thread] = []
    outcomes: list[str] = []
    after = (step.interrupt[1] if step.interrupt else 3) or 1
    plain = Step("run", faults=step.then_faults or step.faults, token_ok=True)

    def start_second(requests: int) -> None:
        if requests >= after and not second:
            thread = threading.Thread(
                target=lambda: outcomes.append(_send(world, world.ledger(), plain, people, mode))
            )
            second.append(thread)
            thread.start()

    first = _send(
        world, world.ledger(), Step("run", faults=step.faults), people, mode, on_request=start_second
    )
    for thread in second:
        thread.join(60)
    return f"race: {first} / {outcomes[0] if outcomes else 'not started'}"


class _LogFault:
    """Stall or kill the delivery log under a running sender (a real lock or a real backend kill)."""

    def __init__(self, world: World, ledger: DeliveryLog, kind: str):
        self.world, self.ledger, self.kind = world, ledger, kind
        self._started = False
        self._thread: threading.Thread | None = None
        self._release = threading.Event()
        self._pid: int | None = None
        self._stopped: StoppedBackend | None = None
        if ledger.dialect == "postgres":
            cursor = ledger._conn.cursor()
            cursor.execute("SELECT pg_backend_pid()")
            self._pid = int(cursor.fetchone()[0])
            ledger._conn.commit()
        elif kind == "fail":
            ledger._conn.execute("PRAGMA busy_timeout=50")

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        STATS[f"log_fault:{self.kind}"] += 1
        if self._pid is not None:
            if self.kind == "stall":
                self._stopped = StoppedBackend(self._pid, 0.3)
            else:
                with self.world.ledger("admin").hook.get_conn() as conn, conn.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", (self._pid,))
            return
        path = self.ledger.hook.get_uri().replace("sqlite:///", "")
        self._thread = threading.Thread(target=self._hold_lock, args=(path,))
        self._thread.start()
        time.sleep(0.005)

    def _hold_lock(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        conn.execute("BEGIN EXCLUSIVE")
        self._release.wait(0.3)
        conn.execute("COMMIT")
        conn.close()

    def stop(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._thread.join()
        if self._stopped is not None:
            self._stopped.wait()


# -- invariants ---------------------------------------------------------------------------------
def record_by_user(world: World) -> dict[str, list[dict]]:
    record: dict[str, list[dict]] = {}
    for delivery in world.admin.deliveries():
        record.setdefault(delivery["to"], []).append(delivery)
    return record


def check_always(world: World, people) -> None:
    """What must hold after any step: nobody twice, no false `sent`, no false refusal, one row each."""
    record = record_by_user(world)
    twice = {to: len(d) for to, d in record.items() if len(d) > 1}
    assert twice == {}, f"delivered more than once: {twice}"
    rows = list(world.ledger().rows())
    assert sorted(row.profile_id for row in rows) == sorted(p for p, _ in people), "not one row per profile"
    for row in rows:
        delivered = record.get(row.line_user_id or "", [])
        if row.status == "sent":
            assert delivered, f"{row.profile_id} is `sent` but LINE has no request for it"
            assert row.retry_key == delivered[0]["retry_key"], (
                f"{row.profile_id}: log and LINE disagree on the key"
            )
            if row.accepted_request_id is not None:
                assert row.accepted_request_id == delivered[0]["request_id"], row
        elif row.status == "failed" and row.reason in REFUSED_REASONS:
            assert not delivered, f"{row.profile_id} is failed ({row.reason}) but LINE delivered it"
        elif row.status in ("sending", "failed") and delivered and row.reason != "outcome_unknown":
            # not final yet: it must still hold the key LINE accepted, or a resume would resend it
            assert row.retry_key == delivered[0]["retry_key"], f"{row.profile_id} lost the key LINE holds"
            assert row.status == "sending" or row.reason in RESUMABLE_REASONS, row


def check_transitions(world: World) -> None:
    """Every status change the log recorded is one the protocol's transition table allows."""
    for profile, old_status, old_reason, new_status, new_reason in world.transitions():
        assert allowed((old_status, old_reason), (new_status, new_reason)), (
            f"{profile}: the log went from {old_status}/{old_reason} to {new_status}/{new_reason}, "
            "which line_oa.transitions does not allow"
        )
        STATS[f"transition:{old_status}>{new_status}"] += 1


def check_final(world: World, people) -> Counter:
    """After a clean resume: every row final and true, the log equal to LINE's record row for row."""
    check_always(world, people)
    record = record_by_user(world)
    rows = list(world.ledger().rows())
    outcomes = Counter((row.status, row.reason) for row in rows)
    unsettled = {
        k: n for k, n in outcomes.items() if k[0] in ("pending", "sending") or k[1] in RESUMABLE_REASONS
    }
    assert unsettled == {}, f"rows not final after a clean resume: {unsettled}"
    by_user = {row.line_user_id: row for row in rows}
    for to in record:
        row = by_user.get(to)
        assert row is not None, f"LINE delivered {to}, who has no row"
        assert row.status == "sent" or row.reason == "outcome_unknown", (
            f"LINE delivered {to} but the log says {(row.status, row.reason)}"
        )
    for key, count in outcomes.items():
        STATS[f"final:{key[0]}:{key[1]}"] += count
    return outcomes


def check_at_risk_bound(world: World) -> None:
    """Rows that became ``outcome_unknown`` without LINE holding them: at most what was in flight."""
    record = record_by_user(world)
    never_sent = [
        row
        for row in world.ledger().rows()
        if row.reason == "outcome_unknown" and row.line_user_id not in record
    ]
    bound = MAX_IN_FLIGHT * 500 + FLUSH_EVERY_ROWS  # requests in flight + outcomes not yet written
    assert len(never_sent) <= bound
    STATS["outcome_unknown_never_sent"] += len(never_sent)


def run_scenario(world: World, scenario: Scenario) -> None:
    """Play a scenario: its steps, the invariants after each, then a clean resume and the final check."""
    people = start_scenario(world, scenario)
    STATS["examples"] += 1
    STATS[f"mode:{scenario.mode}"] += 1
    try:
        for step in scenario.steps:
            run_step(world, step, people, scenario.mode)
            check_always(world, people)
            check_transitions(world)
        world.admin.reserve(0)
        world.admin.configure(channels=[{"name": "default", "quota": {"type": "none", "reserved": 0}}])
        outcome = _send(world, world.ledger(), Step("run"), people, scenario.mode, clean=True)
        assert outcome == "ended:complete", f"the clean resume ended {outcome}"
        check_final(world, people)
        check_transitions(world)
        check_at_risk_bound(world)
        for kind, count in world.admin.stats().get("faults", {}).items():
            STATS[f"fault:{kind}"] += count
    finally:
        world.close()
