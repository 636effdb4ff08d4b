"""The LINE Messaging API over HTTP for bulk sends: LINE's answers as this package's errors.

``interpret_response`` sorts LINE's answers by what the caller must do (see ``line_oa.errors``);
``AsyncLineClient`` (aiohttp) sends at LINE's rate with many requests in flight. No Airflow here: the
hook (``line_oa.integration.hooks``) resolves the connection and hands its settings to this client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl

from line_oa.errors import (
    LineApiError,
    LineAuthError,
    LineQuotaExceededError,
    LineRateLimitError,
    LineServerError,
    LineTransportError,
)

DEFAULT_HOST = "https://api.line.me"
DEFAULT_PUSH_RATE_LIMIT = 2000
DEFAULT_MULTICAST_RATE_LIMIT = 200
DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "line-oa-campaigns (Apache Airflow)"
MONTHLY_LIMIT_MESSAGE = "You have reached your monthly limit."

PUSH = "/v2/bot/message/push"
MULTICAST = "/v2/bot/message/multicast"
VALIDATE_PUSH = "/v2/bot/message/validate/push"
VALIDATE_MULTICAST = "/v2/bot/message/validate/multicast"
QUOTA = "/v2/bot/message/quota"
QUOTA_CONSUMPTION = "/v2/bot/message/quota/consumption"
BOT_INFO = "/v2/bot/info"
AGGREGATION_INFO = "/v2/bot/message/aggregation/info"
AGGREGATION_LIST = "/v2/bot/message/aggregation/list"
STATISTICS_PER_UNIT = "/v2/bot/insight/message/event/aggregation"


@dataclass(frozen=True)
class LineResponse:
    """A LINE answer that is not an error: 2xx, or 409 "already accepted" on a retried send."""

    status: int
    body: dict[str, Any]
    request_id: str | None
    accepted_request_id: str | None = None

    @property
    def already_accepted(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class ChannelSettings:
    """What the connection says about the sender account, token excluded."""

    conn_id: str
    base_url: str
    push_rate_limit: float = DEFAULT_PUSH_RATE_LIMIT
    multicast_rate_limit: float = DEFAULT_MULTICAST_RATE_LIMIT
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    workspaces: tuple[str, ...] = field(default_factory=tuple)
    concurrent_senders: int = 1  # push tasks of this channel allowed at once (the channel pool's slots)
    # the sender account's default frequency cap (extra ``frequency_cap``), checked by the validate task
    frequency_cap: dict[str, Any] | str | None = None

    def allows_workspace(self, workspace: str) -> bool:
        return workspace in self.workspaces


def _parse_body(raw: bytes | str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {"message": raw[:200].decode(errors="replace") if isinstance(raw, bytes) else raw[:200]}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:200]}


def send_body(
    to: str | list[str], messages: list[dict], notification_disabled: bool, aggregation_unit: str | None
) -> dict[str, Any]:
    """Return a push or multicast body; a unit makes LINE count the request's impressions and clicks.

    Built from the same inputs on every attempt, so a retried request carries the same body as its key.
    """
    body: dict[str, Any] = {"to": to, "messages": messages, "notificationDisabled": notification_disabled}
    if aggregation_unit:
        body["customAggregationUnits"] = [aggregation_unit]
    return body


def interpret_response(status: int, raw_body: bytes | str, headers: Any) -> LineResponse:
    """Turn a LINE answer into a ``LineResponse`` or raise the package's error for it.

    409 "already accepted" is returned, not raised: for a send carrying a retry key it means the
    earlier request was accepted, which is a success, whether or not LINE names that request in
    ``X-Line-Accepted-Request-Id`` (LINE: "not always present").
    """
    body = _parse_body(raw_body)
    request_id = headers.get("x-line-request-id")
    accepted = headers.get("x-line-accepted-request-id")
    if 200 <= status < 300 or status == 409:
        return LineResponse(status, body, request_id, accepted)
    message = str(body.get("message", ""))
    kwargs = {
        "details": body.get("details") or [],
        "request_id": request_id,
        "accepted_request_id": accepted,
        "body": body,
    }
    if status in (401, 403):
        raise LineAuthError(status, message, **kwargs)
    if status == 429:
        if message.strip() == MONTHLY_LIMIT_MESSAGE:
            raise LineQuotaExceededError(status, message, **kwargs)
        raise LineRateLimitError(status, message, **kwargs)
    if status >= 500:
        raise LineServerError(status, message, **kwargs)
    raise LineApiError(status, message, **kwargs)


class AsyncLineClient:
    """Send requests to LINE with aiohttp: one connection pool, many requests in flight.

    Threaded ``requests`` tops out near 1,100 requests/s on two cores; aiohttp (which the http
    provider's ``HttpAsyncHook`` is built on) sustains LINE's 2,000/s push limit. The client raises
    the package's errors and leaves retrying to the caller, which owns the retry policy.
    """

    def __init__(self, settings: ChannelSettings, headers: dict[str, str], *, max_in_flight: int = 128):
        self.settings = settings
        self._headers = {**headers, "Content-Type": "application/json"}
        self._max_in_flight = max_in_flight
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncLineClient:
        connector = aiohttp.TCPConnector(limit=self._max_in_flight, ttl_dns_cache=300)
        self._urls = {path: yarl.URL(self.settings.base_url + path) for path in (PUSH, MULTICAST)}
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, path: str, body: dict[str, Any], retry_key: str | None = None) -> LineResponse:
        """POST ``body`` to ``path``; raise ``LineTransportError`` when no answer arrives."""
        assert self._session is not None, "use 'async with client:'"
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"X-Line-Retry-Key": retry_key} if retry_key else None
        try:
            url = self._urls.get(path) or yarl.URL(self.settings.base_url + path)
            async with self._session.post(url, data=data, headers=headers) as response:
                raw = await response.read()
                return interpret_response(response.status, raw, response.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise LineTransportError(f"POST {path}: {type(err).__name__}") from None

    async def get_json(self, path: str) -> dict[str, Any]:
        """GET ``path`` (quota, consumption); raise the package's errors; return the JSON body."""
        assert self._session is not None, "use 'async with client:'"
        try:
            async with self._session.get(yarl.URL(self.settings.base_url + path)) as response:
                raw = await response.read()
                return interpret_response(response.status, raw, response.headers).body
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise LineTransportError(f"GET {path}: {type(err).__name__}") from None

    async def push(
        self,
        to: str,
        messages: list[dict],
        retry_key: str,
        notification_disabled=False,
        aggregation_unit=None,
    ):
        body = send_body(to, messages, notification_disabled, aggregation_unit)
        return await self.post(PUSH, body, retry_key)

    async def multicast(
        self,
        to: list[str],
        messages: list[dict],
        retry_key: str,
        notification_disabled=False,
        aggregation_unit=None,
    ):
        body = send_body(to, messages, notification_disabled, aggregation_unit)
        return await self.post(MULTICAST, body, retry_key)
