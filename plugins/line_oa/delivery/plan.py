"""Group a chunk's rows into requests, once, from the rows actually to be sent (push or multicast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from line_oa.vocabulary import RESUMABLE_REASONS, Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from line_oa.delivery_log.store import LedgerRow

MULTICAST_MAX_RECIPIENTS = 500
# How long before LINE's 24 h key memory ends we stop trusting a key: covers backoff and chunk time.
STALE_MARGIN = timedelta(hours=1)


@dataclass(eq=False)
class Unit:
    """One request's worth of rows: a push to one recipient, or a multicast batch of up to 500.

    :param resumed: its rows may have reached LINE in an earlier attempt of the chunk: they are sent
        again with the same key (and, for a batch, the same recipients in the same order).
    """

    kind: str
    rows: list[LedgerRow]
    key: str | None = None
    resumed: bool = False
    maybe_accepted: bool = False  # an attempt may have been accepted without our learning it

    def __post_init__(self) -> None:
        self.maybe_accepted = self.maybe_accepted or self.resumed


@dataclass
class DeliveryPlan:
    """What a chunk's delivery will do, decided once from the rows actually to be sent."""

    mode: str
    units: list[Unit]
    outcome_unknown: list[LedgerRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(unit.rows) for unit in self.units) + len(self.outcome_unknown)


def may_have_been_accepted(row: LedgerRow) -> bool:
    """Tell whether LINE may hold a request carrying this row's current key."""
    if row.status == Status.SENDING:
        return True
    return row.status == Status.FAILED and row.reason in RESUMABLE_REASONS and row.dispatched_at is not None


def plan_delivery(
    rows: list[LedgerRow], *, mode: str, is_test: bool, is_stale: Callable[[LedgerRow], bool]
) -> DeliveryPlan:
    """Group a chunk's not-final rows into requests; decide push or multicast for the never-sent ones.

    Rows that may have reached LINE keep their request: a batch is resent whole under its key, a push
    under its key; past LINE's 24 h key memory they are not resent but reported ``outcome_unknown``.
    """
    resumed_batches: dict[str, list[LedgerRow]] = {}
    units: list[Unit] = []
    unknown: list[LedgerRow] = []
    fresh: list[LedgerRow] = []
    for row in rows:
        if not may_have_been_accepted(row):
            row.batch_id = None  # a batch that never left can be regrouped
            fresh.append(row)
        elif is_stale(row):
            unknown.append(row)
        elif row.batch_id:
            resumed_batches.setdefault(row.batch_id, []).append(row)
        else:
            units.append(Unit("push", [row], row.retry_key, resumed=True))
    for key, batch in resumed_batches.items():
        units.append(Unit("multicast", sorted(batch, key=_by_user), key, resumed=True))
    chosen = resolve_mode(mode, len(fresh), is_test=is_test)
    if chosen == "multicast":
        fresh.sort(key=_by_user)
        for start in range(0, len(fresh), MULTICAST_MAX_RECIPIENTS):
            units.append(Unit("multicast", fresh[start : start + MULTICAST_MAX_RECIPIENTS]))
    else:
        units.extend(Unit("push", [row], row.retry_key) for row in fresh)
    return DeliveryPlan(chosen, units, unknown)


def _by_user(row: LedgerRow) -> str:
    return row.line_user_id or ""


def resolve_mode(mode: str, recipients: int, *, is_test: bool = False) -> str:
    """Choose push or multicast: ``auto`` multicasts when one bundle goes to more than one recipient.

    Test sends always push, so each listed recipient gets its own request id in the log.
    """
    if is_test or mode == "push":
        return "push"
    if mode == "multicast":
        return "multicast"
    return "multicast" if recipients > 1 else "push"
