"""Serve LINE's sending, validation, quota and bot-info endpoints with LINE's answers."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from typing import Any

from aiohttp import web

from line_simulator import faults as fault_kinds
from line_simulator.parsing import parse_json
from line_simulator.runtime import SIMULATOR, Channel, Simulator
from line_simulator.state import SendRecord
from line_simulator.units import assign_unit
from line_simulator.validation import (
    RETRY_KEY,
    BindingError,
    check_messages,
    check_multicast_targets,
    check_push_target,
    check_send_options,
    details_body,
)

MAX_BODY = 2 * 1024 * 1024
#: aiohttp may read a little more than LINE accepts, so that the simulator answers 413 itself.
READ_LIMIT = MAX_BODY + 1024

MISSING_AUTH = {
    "message": "Authorization header required. Must follow the scheme, 'Authorization: Bearer <ACCESS TOKEN>'"
}
INVALID_TOKEN = {
    "message": "Authentication failed due to the following reason: invalid token. "
    "Confirm that the access token in the authorization header is valid."
}
RATE_LIMITED = {"message": "The API rate limit has been exceeded. Try again later."}
MONTHLY_LIMIT = {"message": "You have reached your monthly limit."}
FAILED_TO_SEND = {"message": "Failed to send messages"}
RETRY_KEY_INVALID = {"message": "The retry key is invalid"}
RETRY_KEY_UNSUPPORTED = {"message": "The retry key is not supported for this API"}
RETRY_KEY_ACCEPTED = "The retry key is already accepted"
TOO_LARGE = {"message": "The request body is too large (max 2 MB)"}
INTERNAL_ERROR = {"message": "An error occurred in the server. Try again later."}
UNAVAILABLE = {"message": "The service is temporarily unavailable. Try again later."}
METHOD_NOT_ALLOWED = {"message": "Method not allowed"}
NOT_FOUND = {"message": "Not found"}
SERVER_ERRORS = {500: INTERNAL_ERROR, 503: UNAVAILABLE}
SEND_ENDPOINTS = frozenset({"push", "multicast"})

logger = logging.getLogger(__name__)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Dropped(Exception):
    """The connection was closed on purpose (an injected fault); no response is sent."""


def respond(
    sim: Simulator, endpoint: str, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    """Answer with a JSON body and a fresh ``X-Line-Request-Id``; count the answer in the stats."""
    all_headers = {"Content-Type": "application/json", "X-Line-Request-Id": str(uuid.uuid4())}
    if headers:
        all_headers.update(headers)
    sim.record.requests[endpoint, status] += 1
    return web.Response(status=status, body=_dumps(body).encode(), headers=all_headers)


def drop(sim: Simulator, request: web.Request, endpoint: str, kind: str | None) -> Dropped:
    """Abort the connection without an answer and return the exception that ends the handler."""
    if kind is not None:
        sim.record.faults[kind] += 1
    sim.record.requests[endpoint, "dropped"] += 1
    if request.transport is not None:
        request.transport.abort()
    return Dropped(kind or "dropped")


async def not_found(request: web.Request) -> web.Response:
    """Answer 404 ``{"message": "Not found"}`` for any path LINE does not have."""
    return respond(request.app[SIMULATOR], "unknown", 404, NOT_FOUND)


async def _enter(
    request: web.Request, endpoint: str, method: str
) -> tuple[Simulator, Channel | web.Response]:
    """Run what every endpoint does first: method check, faults before processing, auth, rate limit."""
    sim = request.app[SIMULATOR]
    if request.method != method:
        return sim, respond(sim, endpoint, 405, METHOD_NOT_ALLOWED)
    faults = sim.faults
    faulty = endpoint in faults.endpoints
    if faulty and not faults.idle:
        if faults.draw_reset():
            raise drop(sim, request, endpoint, fault_kinds.RESET)
        delay = faults.draw_delay()
        if delay:
            await asyncio.sleep(delay)
    authorization = request.headers.get("Authorization")
    if not authorization:
        return sim, respond(sim, endpoint, 401, MISSING_AUTH)
    scheme, _, token = authorization.partition(" ")
    channel = sim.channels_by_token.get(token.strip()) if scheme.lower() == "bearer" else None
    if channel is None:
        return sim, respond(sim, endpoint, 401, INVALID_TOKEN if scheme.lower() == "bearer" else MISSING_AUTH)
    refused = _check_retry_key(sim, channel, request, endpoint)
    if refused is not None:
        return sim, refused
    if faulty:
        if faults.in_outage(sim.clock.now()):
            sim.record.faults[fault_kinds.OUTAGE] += 1
            return sim, respond(sim, endpoint, faults.outage_status, SERVER_ERRORS[faults.outage_status])
        if faults.before:
            injected = await _inject_before(sim, request, endpoint)
            if injected is not None:
                return sim, injected
    bucket = channel.buckets.get(endpoint)  # the insight endpoints keep their own (hourly) bucket
    if bucket is not None and not bucket.take():
        sim.record.events["rate_limited"] += 1
        return sim, respond(sim, endpoint, 429, RATE_LIMITED)
    return sim, channel


def _check_retry_key(
    sim: Simulator, channel: Channel, request: web.Request, endpoint: str
) -> web.Response | None:
    """Refuse a retry key where LINE does; note a well-formed key's first attempt on a send.

    LINE: "If you specify a retry key for an API other than [push, multicast, narrowcast, broadcast],
    a 400 error is returned", and a key is kept "for 24 hours from the first request"
    (https://developers.line.biz/en/docs/messaging-api/retrying-api-request/).
    """
    retry_key = request.headers.get("X-Line-Retry-Key")
    if retry_key is None:
        return None
    if endpoint not in SEND_ENDPOINTS:
        return respond(sim, endpoint, 400, RETRY_KEY_UNSUPPORTED)
    if RETRY_KEY.fullmatch(retry_key) is None:
        return respond(sim, endpoint, 400, RETRY_KEY_INVALID)
    channel.state.first_attempt(retry_key.lower(), sim.clock.now())
    return None


async def _inject_before(sim: Simulator, request: web.Request, endpoint: str) -> web.Response | None:
    """Answer with an injected 500, 503 or 429, or hang; return None to process the request."""
    kind = sim.faults.draw_before()
    if kind is None:
        return None
    if kind == fault_kinds.HANG:
        sim.record.faults[kind] += 1
        await asyncio.sleep(sim.faults.hang_seconds)
        if sim.faults.hang_then_process:
            return None
        raise drop(sim, request, endpoint, None)
    sim.record.faults[kind] += 1
    if kind == fault_kinds.RATE_LIMIT_429:
        return respond(sim, endpoint, 429, RATE_LIMITED)
    status = 500 if kind == fault_kinds.ERROR_500 else 503
    return respond(sim, endpoint, status, SERVER_ERRORS[status])


async def _read_json(sim: Simulator, request: web.Request, endpoint: str) -> dict[str, Any] | web.Response:
    """Read the body as LINE does: 413 over 2 MB, 415 unless JSON, 400 when it does not parse."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return respond(sim, endpoint, 413, TOO_LARGE)
    if request.content_type != "application/json":
        message = f"The content type, {request.headers.get('Content-Type', '')}, is not supported"
        return respond(sim, endpoint, 415, {"message": message})
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return respond(sim, endpoint, 413, TOO_LARGE)
    if len(raw) > MAX_BODY:
        return respond(sim, endpoint, 413, TOO_LARGE)
    body, position = parse_json(raw)
    if body is not None:
        return body
    message = "The request body could not be parsed as JSON (line: {}, column: {})".format(*position)
    return respond(sim, endpoint, 400, {"message": message})


async def _enter_with_body(
    request: web.Request, endpoint: str
) -> tuple[Simulator, Channel, dict[str, Any]] | web.Response:
    """Authenticate a POST and parse its JSON body; return LINE's error response if either fails."""
    sim, channel = await _enter(request, endpoint, "POST")
    if not isinstance(channel, Channel):
        return channel
    body = await _read_json(sim, request, endpoint)
    if not isinstance(body, dict):
        return body
    return sim, channel, body


async def send(request: web.Request, endpoint: str) -> web.Response:
    """Handle push and multicast: check, then accept and record the send in one synchronous step."""
    entered = await _enter_with_body(request, endpoint)
    if isinstance(entered, web.Response):
        return entered
    sim, channel, body = entered
    retry_key = request.headers.get("X-Line-Retry-Key")  # well-formed: checked by _enter
    if retry_key is not None:
        retry_key = retry_key.lower()
    try:
        if endpoint == "push":
            check_push_target(body)
            details = []
        else:
            details = check_multicast_targets(body)
        details += check_messages(body)
        details += check_send_options(body)
    except BindingError as error:
        return respond(sim, endpoint, 400, error.body)
    if details:
        return respond(sim, endpoint, 400, details_body(details))
    response = accept(sim, channel, endpoint, body, retry_key)
    if response.status == 200 and endpoint in sim.faults.endpoints and sim.faults.draw_lost():
        sim.record.requests[endpoint, 200] -= 1  # recorded as accepted, but the answer never leaves
        raise drop(sim, request, endpoint, fault_kinds.ACCEPTED_THEN_LOST)
    return response


def accept(
    sim: Simulator, channel: Channel, endpoint: str, body: dict[str, Any], retry_key: str | None
) -> web.Response:
    """Apply retry-key, recipient and quota (and reservation) rules; record and answer.

    Never awaits (see ``state``). A refused request changes neither consumption, keys nor the record.
    """
    now = sim.clock.now()
    state = channel.state
    if retry_key is not None:
        accepted = state.accepted_key(retry_key, now)
        if accepted is not None:
            sim.record.events["retry_key_conflicts"] += 1
            conflict: dict[str, Any] = {"message": RETRY_KEY_ACCEPTED}
            if accepted.sent_messages is not None:
                conflict["sentMessages"] = accepted.sent_messages
            headers = {"X-Line-Accepted-Request-Id": accepted.request_id}
            if endpoint in sim.faults.endpoints and sim.faults.draw_conflict_without_accepted_id():
                sim.record.faults[fault_kinds.CONFLICT_WITHOUT_ACCEPTED_ID] += 1
                headers = {}  # LINE: the header is "not always present"
            return respond(sim, endpoint, 409, conflict, headers)
    rules = sim.rules
    skipped: set[str] = set()
    if endpoint == "push":
        recipients = [body["to"]]
        if rules.is_unknown(body["to"]):
            sim.record.events["unknown_recipients"] += 1
            return respond(sim, endpoint, 400, FAILED_TO_SEND)
        if rules.push_limit is not None and state.recent_pushes(body["to"], now, rules.push_window) >= (
            rules.push_limit
        ):
            # LINE: 429 when "a large number of messages were sent to the same user"
            # (https://developers.line.biz/en/reference/messaging-api/#send-push-message).
            sim.record.events["rate_limited_per_recipient"] += 1
            return respond(sim, endpoint, 429, RATE_LIMITED)
    else:
        recipients = list(dict.fromkeys(body["to"]))
        unknown = [user_id for user_id in recipients if rules.is_unknown(user_id)]
        if unknown:
            sim.record.events["unknown_recipients"] += len(unknown)
            if rules.multicast_reject_unknown:
                return respond(sim, endpoint, 400, FAILED_TO_SEND)
            skipped = set(unknown)  # accepted, silently not delivered (LINE's "Conditions"), not billed
    blocked = frozenset(
        user_id for user_id in recipients if rules.is_blocked(user_id) and user_id not in skipped
    )
    billed = len(recipients) - len(blocked) - len(skipped)
    if channel.quota_limit is not None and state.consumption + state.reserved + billed > channel.quota_limit:
        # A reservation held by another delivery in progress refuses a send that would fit without it.
        sim.record.events["quota_exceeded"] += 1
        if state.consumption + billed <= channel.quota_limit:
            sim.record.events["quota_exceeded_by_reservation"] += 1
        return respond(sim, endpoint, 429, MONTHLY_LIMIT)
    messages = body["messages"]
    # Everything that could fail comes before the first change of state: all or nothing.
    sent_messages = sim.record.sent_messages(messages) if endpoint == "push" else None
    response = respond(sim, endpoint, 200, {"sentMessages": sent_messages} if sent_messages else {})
    request_id = response.headers["X-Line-Request-Id"]
    bundle = sim.record.store_bundle(messages)
    state.consumption += billed
    if retry_key is not None:
        state.accept_key(retry_key, now, request_id, sent_messages)
    if endpoint == "push" and rules.push_limit is not None:
        state.pushes_to.setdefault(body["to"], deque()).append(now)
    if recipients:
        send_record = SendRecord(
            channel.name,
            endpoint,
            recipients,
            blocked,
            retry_key,
            request_id,
            now.isoformat(),
            bundle,
            frozenset(skipped),
            assign_unit(sim, channel.name, body, now),
        )
        sim.record.add(send_record)
    return response


async def validate(request: web.Request, endpoint: str) -> web.Response:
    """Handle validate/push and validate/multicast: check ``messages`` only; a retry key is a 400."""
    entered = await _enter_with_body(request, endpoint)
    if isinstance(entered, web.Response):
        return entered
    sim, channel, body = entered
    try:
        details = check_messages(body)
    except BindingError as error:
        return respond(sim, endpoint, 400, error.body)
    if details:
        return respond(sim, endpoint, 400, details_body(details))
    return respond(sim, endpoint, 200, {})


async def read_only(request: web.Request, endpoint: str) -> web.Response:
    """Handle the GET endpoints: quota, quota consumption and bot info."""
    sim, channel = await _enter(request, endpoint, "GET")
    if not isinstance(channel, Channel):
        return channel
    if endpoint == "quota":
        body: dict[str, Any] = (
            {"type": "none"}
            if channel.quota_limit is None
            else {"type": "limited", "value": channel.quota_limit}
        )
    elif endpoint == "quota_consumption":
        body = {"totalUsage": channel.state.consumption}
    else:
        body = channel.bot_info()
    return respond(sim, endpoint, 200, body)


def _handler(function, endpoint: str):
    async def handler(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIMULATOR]
        task = asyncio.current_task()
        if task is not None:
            sim.in_flight.add(task)  # a reset cancels it (Simulator.reset)
        try:
            return await function(request, endpoint)
        except Dropped:
            # The transport is already closed; an empty response is discarded by aiohttp.
            return web.Response(status=500)
        except ConnectionResetError:
            # The client went away before its request was read whole: nothing was sent, nobody to answer.
            sim.record.requests[endpoint, "abandoned"] += 1
            return web.Response(status=500)
        except Exception:  # a simulator bug: still LINE's shape, and the stats show it
            logger.exception("%s: unexpected error", endpoint)
            sim.record.events["internal_errors"] += 1
            return respond(sim, endpoint, 500, INTERNAL_ERROR)
        finally:
            sim.in_flight.discard(task)

    handler.__name__ = f"{endpoint}_handler"
    return handler


def add_routes(app: web.Application) -> None:
    """Register LINE's paths (any method: a wrong one gets a JSON 405 with a request id)."""
    table = {
        "/v2/bot/message/push": (send, "push"),
        "/v2/bot/message/multicast": (send, "multicast"),
        "/v2/bot/message/validate/push": (validate, "validate_push"),
        "/v2/bot/message/validate/multicast": (validate, "validate_multicast"),
        "/v2/bot/message/quota": (read_only, "quota"),
        "/v2/bot/message/quota/consumption": (read_only, "quota_consumption"),
        "/v2/bot/info": (read_only, "bot_info"),
    }
    for path, (function, endpoint) in table.items():
        app.router.add_route("*", path, _handler(function, endpoint))
