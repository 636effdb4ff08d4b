"""The exactly-once protocol as a transition table: which status changes the delivery log may record.

A row's state is its status and the class of its reason. Anything not listed here is a bug: the model
checker (``tests/reliability/exactly_once_model.py``) records every change the real log makes (a
trigger on the table) and fails on any transition outside this table.
"""

from __future__ import annotations

# Reasons whose row a resumed run sends again (nothing of it was accepted, or it may have been and
# keeps its key): the classes below group reasons by what may follow them.
RESUMABLE = frozenset(
    {"quota_exceeded", "auth_failed", "retries_exhausted", "stopped", "log_write_failed", "log_stalled",
     "claim_lost", "killed"}
)  # fmt: skip
REFUSED = frozenset({"invalid_recipient_id", "unknown_recipient", "rejected_by_line"})
UNKNOWN = "outcome_unknown"

#: (status, reason class) before -> the states that may follow, and why.
TRANSITIONS: dict[tuple[str, str], dict[tuple[str, str], str]] = {
    ("pending", "none"): {
        ("sending", "none"): "its request is about to leave: marked under its key, dispatched_at set",
        ("failed", "resumable"): "the chunk stopped before its request left (dispatched_at stays empty)",
    },
    ("sending", "none"): {
        ("sending", "none"): "resent after a crash under the same key (marked again, dispatched_at kept)",
        ("sent", "none"): "LINE answered 2xx, or 409: it had accepted the key",
        ("failed", "refused"): "LINE refused the request (400): not delivered",
        (
            "failed",
            "resumable",
        ): "the run stopped, or retries ran out; dispatched_at kept if LINE may hold it",
        ("failed", "unknown"): "LINE's 24 h memory of its key has passed: it cannot be resent safely",
        ("pending", "none"): "a multicast refused without a culprit: each row is pushed under its own key",
    },
    ("failed", "resumable"): {
        ("sending", "none"): "resumed: sent again (a new request, or the same key if LINE may hold it)",
        ("failed", "resumable"): "the resumed run stopped again before its request left",
        ("failed", "unknown"): "it may have been accepted and LINE's 24 h key memory has passed",
    },
    # final states: nothing may follow
    ("sent", "none"): {},
    ("excluded", "excluded"): {},
    ("failed", "refused"): {},
    ("failed", "unknown"): {},
}


def state_of(status: str, reason: str | None) -> tuple[str, str]:
    """Return the (status, reason class) of a row."""
    if status == "excluded":
        return status, "excluded"
    if status != "failed":
        return status, "none"
    if reason == UNKNOWN:
        return status, "unknown"
    if reason in RESUMABLE:
        return status, "resumable"
    return status, "refused"


def allowed(before: tuple[str, str | None], after: tuple[str, str | None]) -> bool:
    """Tell whether the log may change a row from ``before`` to ``after`` (status, reason)."""
    return state_of(*after) in TRANSITIONS.get(state_of(*before), {})
