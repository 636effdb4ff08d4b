"""The delivery log's vocabulary: every status and reason a row (or a chunk's result) can carry.

One place for the words and what they mean. The engine, the segment extraction, the pipeline and the
operator write these members; the HTML report shows their ``meaning`` and ``what_to_do``; the reason
table of docs/operations.md is ``reasons_markdown()`` (a test keeps the two equal), and
``tests/unit/test_vocabulary.py`` fails when code writes a reason that is not a member.

Both enums are ``StrEnum``: a member *is* its text (``Reason.STOPPED == "stopped"``), so the rows in
``line_delivery_log``, the summaries and the XCom values are the same text as before.

``Status`` is a delivery-log row's status; it is not a campaign file's ``status: draft | launched``
nor a campaign's state (Draft, Planned, Active, Finished, Suspended: ``line_oa.campaign.states``).

Pure: no Airflow import.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class _About:
    meaning: str
    what_to_do: str


class Status(StrEnum):
    """A delivery-log row's status. ``excluded``, ``sent`` and ``failed`` are final unless the reason
    of a ``failed`` row is resumable (``Reason.resumable``)."""

    meaning: str
    what_to_do: str

    def __new__(cls, value: str, about: _About) -> Status:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = about.meaning
        member.what_to_do = about.what_to_do
        return member

    EXCLUDED = (
        "excluded",
        _About(
            "The profile is not sent to: extraction left it out. The reason says why.",
            "See the reason.",
        ),
    )
    PENDING = (
        "pending",
        _About(
            "The recipient is registered for sending; no request for it has left yet.",
            "Resume the run if it stopped; a pending recipient is sent by the next attempt.",
        ),
    )
    SENDING = (
        "sending",
        _About(
            "A request for the recipient left (or was about to) under its retry key; LINE's answer is "
            "not recorded yet.",
            "Resume the run within 24 h: it is sent again with the same key, and LINE refuses a "
            "duplicate (409).",
        ),
    )
    SENT = (
        "sent",
        _About(
            "LINE accepted the request for the recipient (2xx, or 409: its retry key was already accepted).",
            "Nothing.",
        ),
    )
    FAILED = (
        "failed",
        _About(
            "The recipient was not sent to. The reason says why and whether a resumed run sends it again.",
            "See the reason.",
        ),
    )


@dataclass(frozen=True)
class _Reason:
    status: Status
    resumable: bool
    meaning: str
    what_to_do: str


class Reason(StrEnum):
    """Why a row is ``excluded`` or ``failed`` (also why a chunk's delivery stopped).

    Each member has ``status`` (excluded or failed), ``resumable`` (a resumed run sends the row
    again, under the retry key it had: LINE accepted nothing, or refuses a duplicate), ``meaning`` and
    ``what_to_do``. Texts may quote names between backticks (the report shows them as code).
    """

    status: Status
    resumable: bool
    meaning: str
    what_to_do: str

    def __new__(cls, value: str, about: _Reason) -> Reason:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = about.status
        member.resumable = about.resumable
        member.meaning = about.meaning
        member.what_to_do = about.what_to_do
        return member

    # -- written by segment extraction --------------------------------------------------------
    MISSING_RECIPIENT_ID = (
        "missing_recipient_id",
        _Reason(
            Status.EXCLUDED,
            False,
            "The profile has no LINE user id in the CDP.",
            "Collect LINE user ids (LINE Login, account linking) or accept the smaller reach.",
        ),
    )
    DUPLICATE_RECIPIENT = (
        "duplicate_recipient",
        _Reason(
            Status.EXCLUDED,
            False,
            "Another profile of the segment has the same LINE user id; that user got the messages once.",
            "Nothing; merge the duplicate profiles in the CDP if this is unexpected.",
        ),
    )
    SUPPRESSED = (
        "suppressed",
        _Reason(
            Status.EXCLUDED,
            False,
            "The profile or its LINE user id is on a suppression list (include/sql/suppressions): no campaign may message it.",
            "Nothing; remove it from the suppression list's source if it should receive campaigns again.",
        ),
    )
    FREQUENCY_CAPPED = (
        "frequency_capped",
        _Reason(
            Status.EXCLUDED,
            False,
            "The recipient already had the campaign's frequency_cap of real campaign deliveries (sent, or being "
            "sent by another run) in the rolling window, in its workspace or on its sender account.",
            "Nothing; raise target_audience.frequency_cap or send later if this recipient should get it.",
        ),
    )
    OVER_MAX_RECIPIENTS = (
        "over_max_recipients",
        _Reason(
            Status.EXCLUDED,
            False,
            "The profile is beyond the run's `max_recipients` trigger parameter.",
            "Nothing; trigger without the limit (and with `redeliver` for a one-off campaign) to reach them.",
        ),
    )
    INVALID_RECIPIENT_ID = (
        "invalid_recipient_id",
        _Reason(
            Status.FAILED,
            False,
            "The id is not a LINE user id (`U` + 32 lower-case hex digits): found by the segment check, "
            "or refused by LINE. The log keeps at most 100 characters of it, with characters that are "
            "not printable (controls, bytes that are not UTF-8) written as `\\uXXXX`.",
            "Fix the id in the CDP: a display id (`@shop`) or a phone number is not a user id.",
        ),
    )
    MISSING_PROFILE_ID = (
        "missing_profile_id",
        _Reason(
            Status.EXCLUDED,
            False,
            "The CDP row has no profile id (NULL or blank); it is logged under the synthetic id "
            "`(no profile id) #n` (the n-th such row of the run).",
            "Fix the segment query or the CDP so that every row carries its profile id.",
        ),
    )
    DUPLICATE_PROFILE_ID = (
        "duplicate_profile_id",
        _Reason(
            Status.EXCLUDED,
            False,
            "The profile id appears more than once in the segment; its first row (by LINE user id) was "
            "handled, each repeat is logged as `<id> (repeat #k)`.",
            "Fix the segment query (usually a one-to-many join) so that it returns each profile once.",
        ),
    )
    INVALID_PROFILE_ID = (
        "invalid_profile_id",
        _Reason(
            Status.FAILED,
            False,
            "The profile id cannot key the delivery log: longer than 256 characters, surrounded by "
            "whitespace other than spaces, holding characters that are not printable (controls, NUL, "
            "bytes that are not UTF-8), or shaped like a synthetic id; logged as "
            "`(invalid profile id) sha256:<16 hex>` with an excerpt in `line_message`.",
            "Fix the profile id in the CDP.",
        ),
    )
    # -- LINE's answers ---------------------------------------------------------------------------
    UNKNOWN_RECIPIENT = (
        "unknown_recipient",
        _Reason(
            Status.FAILED,
            False,
            'LINE answered 400 "Failed to send messages": the user does not exist for this channel.',
            "Check that the id was issued for this channel's provider; remove ids of deleted accounts.",
        ),
    )
    REJECTED_BY_LINE = (
        "rejected_by_line",
        _Reason(
            Status.FAILED,
            False,
            "LINE refused the request for this recipient with another 4xx error.",
            "Read `http_status` and `line_message` in the delivery log (`failures_by_reason.sql`), fix the "
            "cause, then send again with a new run if needed.",
        ),
    )
    QUOTA_EXCEEDED = (
        "quota_exceeded",
        _Reason(
            Status.FAILED,
            True,
            'The channel reached its monthly message limit (429 "You have reached your monthly limit."); '
            "the campaign stopped.",
            "Raise the plan's limit or wait for next month, then resume the run; validate refuses a run "
            "the quota cannot cover unless `allow_partial_delivery`.",
        ),
    )
    AUTH_FAILED = (
        "auth_failed",
        _Reason(
            Status.FAILED,
            True,
            "LINE answered 401/403: the channel access token is missing, wrong or revoked; the campaign "
            "stopped.",
            "Put a valid token in the LINE connection, then resume the run.",
        ),
    )
    RETRIES_EXHAUSTED = (
        "retries_exhausted",
        _Reason(
            Status.FAILED,
            True,
            "5xx answers, timeouts or rate limits lasted past the campaign's retry policy "
            "(`activation.retry`).",
            "Check LINE's status page; the push task's own retries try again, then resume the run "
            "(same retry keys, no duplicates).",
        ),
    )
    OUTCOME_UNKNOWN = (
        "outcome_unknown",
        _Reason(
            Status.FAILED,
            False,
            "LINE may have accepted the request but never answered, and its 24 h retry-key memory has "
            "passed, so it is not sent again.",
            "Do not send again blindly; compare with LINE's delivery statistics for the day.",
        ),
    )
    # -- the sender stopped ---------------------------------------------------------------------
    STOPPED = (
        "stopped",
        _Reason(
            Status.FAILED,
            True,
            "The push task was stopped (marked failed or killed from the UI, its worker shut down) while "
            "sending; the recipients it had not sent yet are recorded.",
            "Resume the run; rows in flight keep their retry keys.",
        ),
    )
    KILLED = (
        "killed",
        _Reason(
            Status.FAILED,
            True,
            "The sender was killed mid-chunk (`DeliveryEngine.kill()`, as by a SIGKILL): it writes nothing "
            "more, so this reason shows only in the chunk's result; its rows stay `pending` or `sending` in "
            "the delivery log.",
            "Resume the run (Airflow retries the push task); rows in flight are sent again with their "
            "retry keys.",
        ),
    )
    LOG_WRITE_FAILED = (
        "log_write_failed",
        _Reason(
            Status.FAILED,
            True,
            "A write to the delivery log failed before a request left, so the sender stopped; these "
            "recipients were not sent.",
            "Check the delivery log's database (disk, connections, permissions), then resume the run.",
        ),
    )
    LOG_STALLED = (
        "log_stalled",
        _Reason(
            Status.FAILED,
            True,
            "The delivery log did not commit a write in time (60 s by default); the chunk stopped instead "
            "of hanging. Nothing more is written, so this reason shows in the task log; the rows stay as "
            "the log had them.",
            "Check the delivery log's database (locks, load, network); clearing the failed push task "
            "resumes the chunk.",
        ),
    )
    CLAIM_LOST = (
        "claim_lost",
        _Reason(
            Status.FAILED,
            True,
            "Another sender (a retry racing a stale task) took the chunk; this one stopped without writing "
            "or sending more (the reason shows in its task log).",
            "Nothing: the sender holding the chunk sends these recipients; resume the run if it ends "
            "Suspended.",
        ),
    )


# Failures that a resumed run sends again (with the same retry key): nothing was accepted by LINE,
# or LINE refuses the duplicate.
RESUMABLE_REASONS: tuple[Reason, ...] = tuple(reason for reason in Reason if reason.resumable)
# The bucket that counts an excluded or failed row without a reason (no code path writes one).
NO_REASON = "unknown"


def reasons_markdown() -> str:
    """Return the reason table of docs/operations.md ("Failure reasons and what to do")."""
    lines = [
        "| reason | status | a resumed run sends it again | what happened | what to do |",
        "| --- | --- | --- | --- | --- |",
    ]
    for reason in Reason:
        resent = "yes" if reason.resumable else "no"
        lines.append(
            f"| `{reason}` | {reason.status} | {resent} | {_cell(reason.meaning)} | {_cell(reason.what_to_do)} |"
        )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
