"""The exactly-once protocol as a transition table: which status changes the delivery log may record.

A row's state is its status and the class of its reason. Anything not listed here is a bug: the model
checker (``tests/reliability/exactly_once_model.py``) records every change the real log makes (a
trigger on the table) and fails on any transition outside this table.
"""

from __future__ import annotations

from line_oa.vocabulary import RESUMABLE_REASONS, Reason, Status

# Reasons group by what may follow them: resumable ones are sent again by a resumed run; refused
# ones are final (LINE refused the request, or the profile could not be sent).
RESUMABLE = frozenset(RESUMABLE_REASONS)
UNKNOWN = Reason.OUTCOME_UNKNOWN

#: (status, reason class) before -> the states that may follow, and why.
TRANSITIONS: dict[tuple[str, str], dict[tuple[str, str], str]] = {
    (Status.PENDING, "none"): {
        (Status.SENDING, "none"): "its request is about to leave: marked under its key, dispatched_at set",
        (Status.FAILED, "resumable"): "the chunk stopped before its request left (dispatched_at stays empty)",
    },
    (Status.SENDING, "none"): {
        (
            Status.SENDING,
            "none",
        ): "resent after a crash under the same key (marked again, dispatched_at kept)",
        (Status.SENT, "none"): "LINE answered 2xx, or 409: it had accepted the key",
        (Status.FAILED, "refused"): "LINE refused the request (400): not delivered",
        (
            Status.FAILED,
            "resumable",
        ): "the run stopped, or retries ran out; dispatched_at kept if LINE may hold it",
        (Status.FAILED, "unknown"): "LINE's 24 h memory of its key has passed: it cannot be resent safely",
        (
            Status.PENDING,
            "none",
        ): "a multicast refused without a culprit: each row is pushed under its own key",
    },
    (Status.FAILED, "resumable"): {
        (Status.SENDING, "none"): "resumed: sent again (a new request, or the same key if LINE may hold it)",
        (Status.FAILED, "resumable"): "the resumed run stopped again before its request left",
        (Status.FAILED, "unknown"): "it may have been accepted and LINE's 24 h key memory has passed",
    },
    # final states: nothing may follow
    (Status.SENT, "none"): {},
    (Status.EXCLUDED, "excluded"): {},
    (Status.FAILED, "refused"): {},
    (Status.FAILED, "unknown"): {},
}


def state_of(status: str, reason: str | None) -> tuple[str, str]:
    """Return the (status, reason class) of a row."""
    if status == Status.EXCLUDED:
        return status, "excluded"
    if status != Status.FAILED:
        return status, "none"
    if reason == UNKNOWN:
        return status, "unknown"
    if reason in RESUMABLE:
        return status, "resumable"
    return status, "refused"


def allowed(before: tuple[str, str | None], after: tuple[str, str | None]) -> bool:
    """Tell whether the log may change a row from ``before`` to ``after`` (status, reason)."""
    return state_of(*after) in TRANSITIONS.get(state_of(*before), {})
