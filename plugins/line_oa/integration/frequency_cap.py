"""Frequency capping at extract time: leave out the LINE users who had enough campaigns lately.

A real run's extraction reads who is over the cap before the segment streams (so that capped users
do not use up ``max_recipients``), then, under the frequency lock of its workspace and sender account,
counts again and claims its remaining recipients (``FrequencyCheck.settle``). A user who went over the
cap in between (another campaign claimed them first) is capped too: two campaigns extracting at the
same time cannot both count the same slot. Every real run claims its recipients, capped campaign or
not, so that a capped campaign counts the others' deliveries from the moment they are extracted.

Exactly once is untouched: only OTHER runs are counted, a user this run already registered for
sending is never capped, and a user this run already capped stays capped when the extract is retried.
Test sends are never checked and never counted; a dry run applies the cap but claims nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from line_oa.delivery_log.rows import LedgerRow
from line_oa.vocabulary import Reason, Status

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from line_oa.campaign import Campaign
    from line_oa.campaign.model import FrequencyCap
    from line_oa.delivery_log.store import DeliveryLog


@dataclass
class FrequencyCheck:
    """One run's frequency cap: who ``classify`` leaves out, and the claim of the others.

    :param claim: a real delivery (not a dry run): enter this run's recipients as claims.
    """

    ledger: DeliveryLog
    cap: FrequencyCap | None
    workspace: str
    sender_account: str
    claim: bool
    capped: set[str] = field(default_factory=set)
    registered: set[str] = field(default_factory=set)

    @classmethod
    def for_run(
        cls, campaign: Campaign, ledger: DeliveryLog, *, real: bool, validation: dict | None = None
    ) -> FrequencyCheck:
        """Return the check of a run of ``campaign`` (``real``: neither a dry run nor a test send).

        The cap is the one the validate task decided (``validation["frequency_cap"]``: the campaign
        file's, or the sender account's default); without that decision, the campaign file's.
        """
        from line_oa.campaign.model import FrequencyCap

        cap = campaign.target_audience.frequency_cap
        if validation is not None and "frequency_cap" in validation:
            decided = validation["frequency_cap"]
            cap = FrequencyCap.model_validate(decided) if decided is not None else None
        return cls(
            ledger=ledger,
            cap=cap,
            workspace=campaign.workspace,
            sender_account=campaign.content.line_config,
            claim=real,
        )

    def over_cap(self) -> set[str]:
        """Return the LINE users at or over the cap now (other runs' deliveries in the window)."""
        if self.cap is None:
            return set()
        since = self.ledger.clock() - timedelta(hours=self.cap.window_hours)
        return self.ledger.over_frequency_cap(
            scope=self.cap.scope,
            value=self.workspace if self.cap.scope == "workspace" else self.sender_account,
            since=since.isoformat(),
            max_deliveries=self.cap.max_deliveries,
        )

    def prepare(self) -> set[str]:
        """Read who ``classify`` must leave out: the users over the cap, less those this run already
        registered for sending, plus those this run already capped (a retried extract keeps both)."""
        if self.cap is None:
            return self.capped
        kept, self.registered = self.ledger.frequency_outcomes()
        self.capped = (self.over_cap() - self.registered) | kept
        return self.capped

    def settle(
        self, staged: Callable[[], Iterable[tuple[str, str]]], *, is_test: bool = False
    ) -> list[tuple[str, str]]:
        """Under the frequency lock: count again, cap the staged users who went over the cap since
        ``prepare`` (logged ``excluded: frequency_capped`` in the same transaction), claim the others.

        ``staged`` returns the staged (profile_id, line_user_id) pairs; returns the pairs capped here.
        """
        if not self.claim:
            return []
        late: list[tuple[str, str]] = []
        with self.ledger.transaction():
            self.ledger.lock_frequency(
                [f"workspace:{self.workspace}", f"sender_account:{self.sender_account}"]
            )
            over = self.over_cap() - self.registered - self.capped

            def claimed() -> Iterable[str]:
                for profile_id, user in staged():
                    if user in over:
                        late.append((profile_id, user))
                    else:
                        yield user

            self.ledger.claim_recipients(claimed())
            capped_rows = [
                LedgerRow(profile, user, Status.EXCLUDED, Reason.FREQUENCY_CAPPED, is_test=is_test)
                for profile, user in late
            ]
            self.ledger.add(capped_rows)
        self.capped |= {user for _profile, user in late}
        return late
