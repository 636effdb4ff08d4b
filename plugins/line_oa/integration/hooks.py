"""LineOAHook: the LINE Messaging API endpoints this project uses, behind one Airflow connection.

The hook resolves its connection once, keeps one pooled ``requests`` session for the occasional
call (validate, quota, bot info) and hands out an ``aiohttp`` client, built from the same resolved
connection, for bulk sending. Connection extras are settings of this package, never HTTP headers,
and the channel access token is registered with Airflow's secrets masker as soon as it is read.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from airflow.sdk import BaseHook

from line_oa.delivery.client import (
    AGGREGATION_INFO,
    AGGREGATION_LIST,
    BOT_INFO,
    DEFAULT_HOST,
    DEFAULT_MULTICAST_RATE_LIMIT,
    DEFAULT_PUSH_RATE_LIMIT,
    DEFAULT_TIMEOUT_SECONDS,
    MULTICAST,
    PUSH,
    QUOTA,
    QUOTA_CONSUMPTION,
    STATISTICS_PER_UNIT,
    USER_AGENT,
    VALIDATE_MULTICAST,
    VALIDATE_PUSH,
    AsyncLineClient,
    ChannelSettings,
    LineResponse,
    interpret_response,
    send_body,
)
from line_oa.errors import LineAuthError, LineOAError, LineTransportError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from line_oa.campaign.model import QuietHours

__all__ = ["AsyncLineClient", "ChannelSettings", "LineOAHook", "LineResponse", "interpret_response"]


class LineOAHook(BaseHook):
    """Talk to the LINE Messaging API through a ``line_oa`` Airflow connection.

    The connection's host is the API base URL (``https://api.line.me`` when empty; the LINE simulator's
    address for rehearsals), its password the channel access token. Extras: ``push_rate_limit``,
    ``multicast_rate_limit``, ``workspaces`` (comma-separated), ``concurrent_senders``, ``timeout`` and
    ``quiet_hours`` (the sender account's default window, ``{"start", "end", "timezone"}``).
    ``frequency_cap`` (the default cap of the account's campaigns, as in a campaign file).

    Why ``BaseHook`` and not the http provider's ``HttpHook``: what this hook must do is what
    ``HttpHook`` does differently. ``HttpHook.get_conn`` looks the connection up on every call, turns a
    login into Basic auth and sends every unknown connection extra as an HTTP header; its
    ``check_response`` drops LINE's error body and request id. A subclass could only keep its
    promises (connection resolved once, bearer token, extras never headers, LINE's errors intact) by
    overriding ``get_conn`` and reaching into private attributes, which break on a provider upgrade.
    Like the Slack provider's hook, this one derives from ``BaseHook`` and caches its client: one
    ``requests.Session`` per hook for the occasional call, and ``async_client`` for bulk sends.

    :param line_oa_conn_id: the ``line_oa`` connection of the sender account.
    """

    conn_name_attr = "line_oa_conn_id"
    default_conn_name = "line_oa_default"
    conn_type = "line_oa"
    hook_name = "LINE Official Account"

    def __init__(self, *, line_oa_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.line_oa_conn_id = line_oa_conn_id

    @cached_property
    def connection(self) -> Connection:
        """Resolve the Airflow connection once for the lifetime of this hook."""
        conn = self.get_connection(self.line_oa_conn_id)
        if conn.password:
            from airflow.sdk.log import mask_secret

            mask_secret(conn.password)
        return conn

    @cached_property
    def quiet_hours(self) -> QuietHours | None:
        """Read the sender account's default quiet hours (extra ``quiet_hours``); a campaign's own win.

        :raises LineOAError: the extra is not a ``{"start", "end", "timezone"}`` window the campaign
            file would accept.
        """
        from pydantic import ValidationError

        from line_oa.campaign.model import QuietHours

        raw = self.connection.extra_dejson.get("quiet_hours")
        if not raw:
            return None
        try:
            if isinstance(raw, str):  # a form field holds text
                raw = json.loads(raw)
            return QuietHours.model_validate(raw)
        except (ValueError, ValidationError) as err:
            problems = (
                [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in err.errors()]
                if isinstance(err, ValidationError)
                else [str(err)]
            )
            raise LineOAError(
                f"connection extra quiet_hours is not a window such as "
                f'{{"start": "21:00", "end": "09:00", "timezone": "Asia/Tokyo"}}: {"; ".join(problems)}'
            ) from None

    @cached_property
    def settings(self) -> ChannelSettings:
        """Read the sender account's settings from the connection (never the token)."""
        conn = self.connection
        extra = conn.extra_dejson
        host = (conn.host or DEFAULT_HOST).rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        workspaces = extra.get("workspaces") or ()
        if isinstance(workspaces, str):
            workspaces = [w.strip() for w in workspaces.split(",")]
        return ChannelSettings(
            conn_id=self.line_oa_conn_id,
            base_url=host,
            push_rate_limit=float(extra.get("push_rate_limit") or DEFAULT_PUSH_RATE_LIMIT),
            multicast_rate_limit=float(extra.get("multicast_rate_limit") or DEFAULT_MULTICAST_RATE_LIMIT),
            timeout=float(extra.get("timeout") or DEFAULT_TIMEOUT_SECONDS),
            workspaces=tuple(w for w in workspaces if w),
            concurrent_senders=max(1, int(extra.get("concurrent_senders") or 1)),
            frequency_cap=extra.get("frequency_cap") or None,
        )

    @cached_property
    def session(self) -> requests.Session:
        """Open this hook's one pooled session: bearer token and user agent, no extras as headers."""
        session = requests.Session()
        session.headers.update(self._auth_headers())
        return session

    def get_conn(self) -> requests.Session:
        """Return this hook's pooled ``requests`` session (the same one for every call)."""
        return self.session

    def _auth_headers(self) -> dict[str, str]:
        token = self.connection.password
        if not token:
            raise LineAuthError(401, f"Connection {self.line_oa_conn_id!r} has no channel access token")
        return {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}

    def _call(
        self,
        method: str,
        path: str,
        payload: dict | None = None,
        retry_key: str | None = None,
        params: dict[str, Any] | None = None,
    ):
        session = self.session
        headers = {"X-Line-Retry-Key": retry_key} if retry_key else None
        try:
            response = session.request(
                method,
                self.settings.base_url + path,
                json=payload,
                params=params,
                headers=headers,
                timeout=self.settings.timeout,
            )
        except requests.RequestException as err:
            raise LineTransportError(f"{method} {path}: {type(err).__name__}") from None
        return interpret_response(response.status_code, response.content, response.headers)

    def push(
        self,
        to: str,
        messages: list[dict],
        *,
        retry_key: str | None = None,
        notification_disabled=False,
        aggregation_unit: str | None = None,
    ):
        """Send ``messages`` to one recipient (``POST /v2/bot/message/push``)."""
        body = send_body(to, messages, notification_disabled, aggregation_unit)
        return self._call("POST", PUSH, body, retry_key)

    def multicast(
        self,
        to: list[str],
        messages: list[dict],
        *,
        retry_key: str | None = None,
        notification_disabled=False,
        aggregation_unit: str | None = None,
    ):
        """Send ``messages`` to up to 500 user IDs (``POST /v2/bot/message/multicast``)."""
        body = send_body(to, messages, notification_disabled, aggregation_unit)
        return self._call("POST", MULTICAST, body, retry_key)

    def validate_push(self, messages: list[dict]) -> LineResponse:
        """Ask LINE whether ``messages`` are valid for push."""
        return self._call("POST", VALIDATE_PUSH, {"messages": messages})

    def validate_multicast(self, messages: list[dict]) -> LineResponse:
        """Ask LINE whether ``messages`` are valid for multicast."""
        return self._call("POST", VALIDATE_MULTICAST, {"messages": messages})

    def get_quota(self) -> dict[str, Any]:
        """Return this month's message quota: ``{"type": "limited", "value": N}`` or ``{"type": "none"}``."""
        return self._call("GET", QUOTA).body

    def get_quota_consumption(self) -> int:
        """Return the number of messages counted against this month's quota so far."""
        return int(self._call("GET", QUOTA_CONSUMPTION).body.get("totalUsage", 0))

    def get_bot_info(self) -> dict[str, Any]:
        """Return the bot's basic information (``GET /v2/bot/info``)."""
        return self._call("GET", BOT_INFO).body

    def get_aggregation_unit_count(self) -> int:
        """Return how many aggregation units this month's requests used (``.../aggregation/info``)."""
        return int(self._call("GET", AGGREGATION_INFO).body.get("numOfCustomAggregationUnits", 0))

    def get_aggregation_unit_names(self, *, limit: int = 100, start: str | None = None) -> dict[str, Any]:
        """Return one page of this month's unit names: ``{"customAggregationUnits": [...], "next": ...}``."""
        params: dict[str, Any] = {"limit": limit}
        if start:
            params["start"] = start
        return self._call("GET", AGGREGATION_LIST, params=params).body

    def get_statistics_per_unit(self, unit: str, date_from: str, date_to: str) -> dict[str, Any]:
        """Return LINE's impressions and clicks of ``unit`` between two dates (yyyyMMdd, UTC+9)."""
        params = {"customAggregationUnit": unit, "from": date_from, "to": date_to}
        return self._call("GET", STATISTICS_PER_UNIT, params=params).body

    def test_connection(self) -> tuple[bool, str]:
        """Check the token against ``GET /v2/bot/info`` (the UI's Test button)."""
        try:
            info = self.get_bot_info()
        except Exception as err:  # the UI shows the message; never the token
            return False, str(err)
        return True, f"Connected to LINE Official Account {info.get('displayName', '')!s}".strip()

    def async_client(self, *, max_in_flight: int = 128) -> AsyncLineClient:
        """Return an aiohttp client for bulk sends, built from this hook's resolved connection."""
        return AsyncLineClient(self.settings, self._auth_headers(), max_in_flight=max_in_flight)

    def close(self) -> None:
        """Close the pooled session; the next call opens a new one."""
        session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()
