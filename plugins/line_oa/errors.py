"""Exceptions of the package: one base class, small subclasses that say what went wrong."""

from __future__ import annotations

from typing import Any


class LineOAError(Exception):
    """Base class of every error this package raises on purpose."""


class CampaignFileError(LineOAError):
    """A campaign file cannot be read or does not satisfy the campaign schema.

    ``problems`` holds every problem found (``line_oa.campaign.problems.Problem``), not only the first.
    """

    def __init__(self, path: str, problems: list[Any]):
        self.path = path
        self.problems = list(problems)
        lines = [str(problem) for problem in self.problems] or [f"{path}: invalid campaign file"]
        super().__init__("\n".join(lines))


class LineApiError(LineOAError):
    """LINE answered with an error status.

    Carries what an operator needs to find the request in LINE's support tools: the HTTP status,
    LINE's ``message`` and ``details``, and the ``x-line-request-id`` header.
    """

    def __init__(
        self,
        status: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        accepted_request_id: str | None = None,
        body: dict[str, Any] | None = None,
    ):
        self.status = status
        self.line_message = message
        self.details = details or []
        self.request_id = request_id
        self.accepted_request_id = accepted_request_id
        self.body = body or {}
        super().__init__(f"LINE API {status}: {message} (x-line-request-id={request_id})")


class LineAuthError(LineApiError):
    """401 or 403: the channel access token is missing, wrong, or not allowed; stop the campaign."""


class LineQuotaExceededError(LineApiError):
    """429 "You have reached your monthly limit.": nothing more can be sent this month."""


class LineRateLimitError(LineApiError):
    """429 "The API rate limit has been exceeded.": transient, retry after a backoff."""


class LineServerError(LineApiError):
    """5xx: transient, retry with the same retry key and body."""


class LineTransportError(LineOAError):
    """No HTTP answer at all: connection refused or reset, or a timeout. Transient."""
