"""Map Airflow facts (campaign file status, DAG runs, pause flag) to the product's campaign states.

Pure: no Airflow import. The caller reads the DAG runs from Airflow (REST API, ``DagRun`` rows or
``dag.get_dagruns``) and passes them as :class:`RunFacts`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

SCHEDULE_TYPES = ("immediate", "scheduled", "recurring")
IN_FLIGHT_RUN_STATES = frozenset({"queued", "running"})


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
    CampaignState.ACTIVE: "a run is queued or delivering",
    CampaignState.FINISHED: "the latest run delivered successfully",
    CampaignState.SUSPENDED: "the latest run failed or was cancelled, or the DAG is paused",
}


@dataclass(frozen=True)
class RunFacts:
    """Hold what the campaign state needs to know about one DAG run.

    ``state`` is an Airflow ``DagRunState`` value (``queued``, ``running``, ``success``, ``failed``);
    anything else, such as a run marked ``canceled`` by an operator, counts as failed.
    """

    run_id: str
    state: str
    logical_date: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    run_type: str = "manual"


def campaign_state(
    *,
    status: str,
    schedule_type: str,
    send_at: datetime | None,
    runs: Sequence[RunFacts],
    now: datetime,
    paused: bool = False,
) -> CampaignState:
    """Return the campaign state that the DAG runs of a campaign amount to.

    The rules, first match wins:

    1. ``status: draft`` in the campaign file: **Draft**, whatever runs exist (the DAG refuses to deliver).
    2. Any run ``queued`` or ``running``: **Active** (also when the DAG is paused: the run is there).
    3. A latest run exists (latest by ``start_date``, falling back to ``logical_date``; a run with
       neither has not started and counts as the latest):

       - ``success`` and a one-off campaign (``immediate`` or ``scheduled``): **Finished**, even if the
         DAG was paused afterwards;
       - ``success`` and a ``recurring`` campaign: **Planned**, since the next run is scheduled and
         nothing is delivering between runs; **Suspended** if the DAG is paused (no next run will come);
       - ``failed`` or anything else (``canceled``...): **Suspended**.

    4. No run yet: **Planned** for every schedule type, **Suspended** if the DAG is paused (it will
       never start). A ``scheduled`` campaign whose ``send_at`` has passed is still Planned: the
       scheduler creates the run as soon as it sees the DAG, so the state is about to become Active.
       An ``immediate`` campaign with no run is launched and waiting for its trigger, which is the
       closest product state to "scheduled to launch"; there is no separate "ready" state.

    :param status: the campaign file's ``status`` (only ``draft`` changes the answer).
    :param schedule_type: ``immediate``, ``scheduled`` or ``recurring`` (the delivery schedule tab).
    :param send_at: the scheduled send time; informative only, see rule 4.
    :param now: the time the question is asked; kept so callers need not change when rules use it.
    :param paused: whether the campaign's DAG is paused in Airflow.
    """
    schedule = schedule_type.strip().lower()
    if schedule not in SCHEDULE_TYPES:
        raise ValueError(f"schedule_type {schedule_type!r} is not one of {', '.join(SCHEDULE_TYPES)}")
    if status.strip().lower() == "draft":
        return CampaignState.DRAFT
    if any(run.state.lower() in IN_FLIGHT_RUN_STATES for run in runs):
        return CampaignState.ACTIVE
    latest = latest_run(runs)
    if latest is None:
        return CampaignState.SUSPENDED if paused else CampaignState.PLANNED
    if latest.state.lower() != "success":
        return CampaignState.SUSPENDED
    if schedule == "recurring":
        return CampaignState.SUSPENDED if paused else CampaignState.PLANNED
    return CampaignState.FINISHED


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
        not_sent = _total(latest_counts["not_sent"])
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
