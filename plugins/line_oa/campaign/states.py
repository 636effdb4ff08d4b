"""Map Airflow facts (campaign file, DAG runs and their kinds, pause flag, clock) to the campaign states.

Pure: no Airflow import. The caller reads the DAG runs from Airflow (``DagRun`` rows or the REST API)
and the delivery log (which runs passed their launch checks) and passes them as :class:`RunFacts`.
The whole mapping is :func:`campaign_state`; ``docs/operations.md`` shows it as a table and
``tests/pipeline/test_states.py`` pins every row of it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

SCHEDULE_TYPES = ("immediate", "scheduled", "recurring")
IN_FLIGHT_RUN_STATES = frozenset({"queued", "running"})
# The scheduler starts a scheduled run at or a little after send_at: until this long after it, a
# campaign with no run is still about to start, not late.
SEND_AT_GRACE = timedelta(minutes=15)


class RunKind(enum.StrEnum):
    """What a DAG run of a campaign is, from its trigger parameters."""

    DELIVERY = "delivery"
    REDELIVERY = "redelivery"
    DRY_RUN = "dry run"
    TEST_SEND = "test send"

    @property
    def is_real(self) -> bool:
        """A real delivery or redelivery: the only runs that can change a campaign's state."""
        return self in (RunKind.DELIVERY, RunKind.REDELIVERY)


def run_kind(conf: Mapping[str, object] | None) -> RunKind:
    """Return the kind of a run from its ``conf`` (the Trigger form's parameters)."""
    conf = conf or {}
    if conf.get("dry_run"):
        return RunKind.DRY_RUN
    recipients = conf.get("test_recipients")
    if isinstance(recipients, str):  # the Trigger form may send one text of ids, as TriggerOptions reads it
        recipients = recipients.replace(",", " ").split()
    if recipients:
        return RunKind.TEST_SEND
    if conf.get("redeliver"):
        return RunKind.REDELIVERY
    return RunKind.DELIVERY


class CampaignState(enum.StrEnum):
    """Name the states a campaign goes through, spelled as the product shows them."""

    DRAFT = "Draft"
    PLANNED = "Planned"
    ACTIVE = "Active"
    FINISHED = "Finished"
    SUSPENDED = "Suspended"


STATE_MEANINGS: dict[CampaignState, str] = {
    CampaignState.DRAFT: "not launched; the DAG refuses to deliver",
    CampaignState.PLANNED: "launched, waiting for its send time or trigger",
    CampaignState.ACTIVE: "a real delivery is queued or delivering",
    CampaignState.FINISHED: "delivered; nothing more will be sent",
    CampaignState.SUSPENDED: "stopped before or during delivery: needs someone to act",
}


@dataclass(frozen=True)
class RunFacts:
    """Hold what the campaign state needs to know about one DAG run.

    ``state`` is an Airflow ``DagRunState`` value (``queued``, ``running``, ``success``, ``failed``);
    anything else, such as a run marked ``canceled`` by an operator, counts as failed. ``entered``
    says whether the run passed its launch checks and was recorded as a real delivery in the delivery
    log (``line_campaign_delivery``): a run that did not was refused before it sent anything.
    """

    run_id: str
    state: str
    logical_date: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    run_type: str = "manual"
    kind: RunKind = RunKind.DELIVERY
    entered: bool = True

    @property
    def in_flight(self) -> bool:
        return self.state.lower() in IN_FLIGHT_RUN_STATES

    @property
    def succeeded(self) -> bool:
        return self.state.lower() == "success"


def campaign_state(
    *,
    status: str,
    schedule_type: str,
    send_at: datetime | None,
    runs: Sequence[RunFacts],
    now: datetime,
    paused: bool = False,
    schedule_ended: bool = False,
) -> CampaignState:
    """Return the campaign state that the campaign file and its DAG runs amount to.

    Dry runs and test sends never change the state: only real runs (deliveries and redeliveries)
    count. The rules, first match wins:

    1. ``status: draft`` in the campaign file: **Draft**, whatever runs exist.
    2. A real run ``queued`` or ``running``: **Active** (also when the DAG is paused).
    3. A real run that delivered (``entered``: it passed its launch checks) exists; the latest of them
       decides. A one-off campaign (``immediate``, ``scheduled``): ``success`` → **Finished**, else
       **Suspended**; runs refused at launch after it (a re-trigger the one-off guard refused, say)
       change nothing: the campaign was delivered. A ``recurring`` campaign: the latest real run,
       refused or not, decides: failed → **Suspended**; succeeded → **Finished** when its schedule has
       ended, **Suspended** when the DAG is paused (no next run will come), else **Planned**.
    4. No delivery yet, but a real run refused at launch: **Suspended** (an error before launching).
       A refused *manual* run of a ``scheduled`` or ``recurring`` campaign is left out of every rule:
       the schedule still starts the campaign (a manual real delivery needs ``send_now``).
    5. No real run yet: a ``scheduled`` campaign whose ``send_at`` passed more than
       ``SEND_AT_GRACE`` ago missed its time: **Suspended**. Otherwise **Planned**, paused or not
       (a paused campaign is launched and waits to be unpaused; the status line says so).

    :param status: the campaign file's ``status`` (only ``draft`` changes the answer).
    :param schedule_type: ``immediate``, ``scheduled`` or ``recurring`` (the delivery schedule tab).
    :param send_at: the scheduled send time of a ``scheduled`` campaign.
    :param now: the time the question is asked.
    :param paused: whether the campaign's DAG is paused in Airflow.
    :param schedule_ended: a ``recurring`` campaign whose ``end_at`` has passed.
    """
    schedule = schedule_type.strip().lower()
    if schedule not in SCHEDULE_TYPES:
        raise ValueError(f"schedule_type {schedule_type!r} is not one of {', '.join(SCHEDULE_TYPES)}")
    if status.strip().lower() == "draft":
        return CampaignState.DRAFT
    real = counted_runs(runs, schedule)
    if any(run.in_flight for run in real):
        return CampaignState.ACTIVE
    delivered = latest_run([run for run in real if run.entered])
    if schedule == "recurring" and real:
        latest = latest_run(real)
        if not latest.succeeded:
            return CampaignState.SUSPENDED
        if schedule_ended:
            return CampaignState.FINISHED
        return CampaignState.SUSPENDED if paused else CampaignState.PLANNED
    if delivered is not None:
        return CampaignState.FINISHED if delivered.succeeded else CampaignState.SUSPENDED
    if real:
        return CampaignState.SUSPENDED
    if schedule == "scheduled" and send_at is not None and now > send_at + SEND_AT_GRACE:
        return CampaignState.SUSPENDED
    return CampaignState.PLANNED


def counted_runs(runs: Sequence[RunFacts], schedule: str) -> list[RunFacts]:
    """The runs that decide the state: real runs, less the refused manual triggers of a scheduled or
    recurring campaign (an extra that never started, no ``send_now`` say: the schedule still runs it)."""
    real = [run for run in runs if run.kind.is_real]
    if schedule == "immediate":
        return real
    return [run for run in real if run.entered or run.in_flight or run.run_type != "manual"]


def missed_send_at(
    *, schedule_type: str, send_at: datetime | None, runs: Sequence[RunFacts], now: datetime
) -> bool:
    """Whether a ``scheduled`` campaign's send time passed with no real run: it will never send by itself."""
    return (
        schedule_type == "scheduled"
        and send_at is not None
        and now > send_at + SEND_AT_GRACE
        and not any(run.kind.is_real for run in runs)
    )


def latest_run(runs: Sequence[RunFacts]) -> RunFacts | None:
    """Return the most recent run: by start date, else logical date; an undated run is the newest.

    Ties keep the order of ``runs``: the later one in the sequence wins.
    """
    if not runs:
        return None

    def recency(position_and_run: tuple[int, RunFacts]) -> tuple[bool, float, int]:
        position, run = position_and_run
        moment = run.start_date or run.logical_date
        if moment is None:
            return (True, 0.0, position)
        return (False, moment.timestamp(), position)

    return max(enumerate(runs), key=recency)[1]


def describe_state(state: CampaignState | str, latest_counts: Mapping[str, object] | None) -> str:
    """Return one line for the command line: the state and what the latest run delivered.

    ``latest_counts`` takes the summary's keys: ``sent``, ``failed`` (a number or a reason -> count
    mapping), ``excluded`` (same), ``not_sent``; or the delivery log's ``pending`` and ``sending``,
    which together are "not yet sent". Without counts the line says what the state means::

        Suspended — 1,234 sent, 56 failed, 7,800 not yet sent
        Planned — launched, waiting for its send time or trigger
    """
    state = CampaignState(state)
    if latest_counts is None:
        return f"{state.value} — {STATE_MEANINGS[state]}"
    parts = [f"{_total(latest_counts.get('sent')):,} sent", f"{_total(latest_counts.get('failed')):,} failed"]
    if "excluded" in latest_counts:
        parts.append(f"{_total(latest_counts['excluded']):,} excluded")
    if "not_sent" in latest_counts:
        not_sent = _total(latest_counts["not_sent"]) + _total(latest_counts.get("to_resume"))
    else:
        not_sent = _total(latest_counts.get("pending")) + _total(latest_counts.get("sending"))
    parts.append(f"{not_sent:,} not yet sent")
    return f"{state.value} — {', '.join(parts)}"


def _total(value: object) -> int:
    """Return a count, summing the values of a reason -> count mapping; ``None`` is zero."""
    if value is None:
        return 0
    if isinstance(value, Mapping):
        return sum(int(count) for count in value.values())
    return int(value)  # type: ignore[call-overload]
