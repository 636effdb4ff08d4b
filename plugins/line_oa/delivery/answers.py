"""What LINE's answers mean for a send: retry, stop, record a refusal, or count it as sent."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from line_oa.errors import LineApiError, LineRateLimitError, LineServerError, LineTransportError
from line_oa.vocabulary import Reason

if TYPE_CHECKING:
    from line_oa.delivery.client import LineResponse

TRANSIENT = (LineServerError, LineRateLimitError, LineTransportError)
# Answers after which LINE may have accepted the request although we did not learn it.
MAYBE_ACCEPTED = (LineServerError, LineTransportError)


def classify_rejection(err: LineApiError) -> Reason:
    """Name the reason a 4xx rejected a send to one recipient."""
    message = err.line_message.lower()
    if "'to'" in message or "to[" in message:
        return Reason.INVALID_RECIPIENT_ID
    if "failed to send messages" in message:
        return Reason.UNKNOWN_RECIPIENT
    return Reason.REJECTED_BY_LINE


def accepted_id(response: LineResponse) -> str | None:
    """Return the id of the request LINE accepted (unknown for a 409 that does not name it)."""
    if response.already_accepted:
        return response.accepted_request_id
    return response.request_id


def sent_message(response: LineResponse) -> str | None:
    if not response.already_accepted:
        return None
    if response.accepted_request_id:
        return "retry key already accepted"
    return "retry key already accepted (LINE did not name the accepted request)"


def bad_recipient_index(err: LineApiError) -> int | None:
    """Return i from LINE's "The property, to[i], ..." (in the message or a detail), if present."""
    texts = [err.line_message] + [
        str(d.get("property", "")) + " " + str(d.get("message", "")) for d in err.details
    ]
    for text in texts:
        match = re.search(r"to\[(\d+)\]", text)
        if match:
            return int(match.group(1))
    return None
