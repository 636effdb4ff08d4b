"""Serve the ``/_sim/`` admin endpoints: stats, delivery record, config, reset, reservations, clock."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from line_simulator.config import ConfigError, parse_time
from line_simulator.runtime import SIMULATOR, Simulator

_ROWS_PER_WRITE = 2000


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False))


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as error:
        raise web.HTTPBadRequest(
            text=json.dumps({"message": f"invalid JSON: {error}"}), content_type="application/json"
        ) from error
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"message": "a JSON object is required"}), content_type="application/json"
        )
    return body


async def stats(request: web.Request) -> web.Response:
    """Return the counters (``Simulator.stats``)."""
    return _json(request.app[SIMULATOR].stats())


async def deliveries(request: web.Request) -> web.StreamResponse:
    """Stream one JSON line per recipient delivery, oldest first, without building the whole answer."""
    sim: Simulator = request.app[SIMULATOR]
    channel = request.query.get("channel")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    sends = sim.record.sends
    count = len(sends)
    lines: list[str] = []
    for index in range(count):
        send = sends[index]
        if channel is not None and send.channel != channel:
            continue
        # Ids, keys and hashes were checked against strict patterns; only the channel name needs escaping.
        retry_key = "null" if send.retry_key is None else f'"{send.retry_key}"'
        unit = "null" if send.unit is None else f'"{send.unit}"'  # [A-Za-z0-9_]: checked on the way in
        head = f'{{"channel":{json.dumps(send.channel)},"endpoint":"{send.endpoint}","to":"'
        tail = (
            f',"retry_key":{retry_key},"request_id":"{send.request_id}",'
            f'"time":"{send.time}","messages_hash":"{send.messages_hash}","unit":{unit}}}\n'
        )
        blocked, unknown = send.blocked, send.unknown
        for recipient in send.recipients:
            is_unknown = recipient in unknown
            delivered = "false" if is_unknown or recipient in blocked else "true"
            flags = f'"delivered":{delivered},"unknown":{"true" if is_unknown else "false"}'
            lines.append(f'{head}{recipient}",{flags}{tail}')
        if len(lines) >= _ROWS_PER_WRITE:
            await response.write("".join(lines).encode())
            lines = []
    if lines:
        await response.write("".join(lines).encode())
    await response.write_eof()
    return response


async def delivery_counts(request: web.Request) -> web.Response:
    """Return ``{recipient: count}`` for recipients recorded at least ``min`` times (default 1)."""
    try:
        min_count = int(request.query.get("min", "1"))
    except ValueError:
        return _json({"message": "min must be a whole number"}, 400)
    counts = request.app[SIMULATOR].record.delivery_counts(min_count, request.query.get("channel"))
    return _json(counts)


async def message_bundle(request: web.Request) -> web.Response:
    """Return the message bundle stored under a ``messages_hash``."""
    bundle = request.app[SIMULATOR].record.bundles.get(request.match_info["digest"])
    if bundle is None:
        return _json({"message": "Not found"}, 404)
    return _json(bundle)


async def reset(request: web.Request) -> web.Response:
    """Forget the record, keys, counters, consumption and clock offset; see ``Simulator.reset``."""
    body = await _body(request)
    sim: Simulator = request.app[SIMULATOR]
    try:
        sim.reset(
            keep_config=bool(body.get("keep_config", True)),
            config=body.get("config"),
            keep_clock=bool(body.get("keep_clock", False)),
        )
    except ConfigError as error:
        return _json({"message": str(error)}, 400)
    return _json({"config": sim.config})


async def next_month(request: web.Request) -> web.Response:
    """Start a new month: every channel's quota consumption returns to 0; record and reservations stay."""
    sim: Simulator = request.app[SIMULATOR]
    for state in sim.states.values():
        state.consumption = 0
    return _json({"consumption": {name: 0 for name in sim.states}})


async def reserve(request: web.Request) -> web.Response:
    """Hold monthly quota for another delivery in progress: ``{"channel": "default", "messages": R}``.

    ``messages: 0`` releases it. Sends are refused with the monthly-limit 429 when consumption +
    reservation + the send's billed recipients exceed the quota; quota and consumption answers ignore it.
    404 for an unknown channel, 400 for a bad value or a channel without a limited quota.
    """
    body = await _body(request)
    sim: Simulator = request.app[SIMULATOR]
    name = body.get("channel", "default")
    if "messages" not in body:
        return _json({"message": 'give {"channel": NAME, "messages": N} (N = 0 releases)'}, 400)
    if not isinstance(name, str) or name not in sim.channels_by_name:
        return _json({"message": f"unknown channel: {name!r}"}, 404)
    try:
        state = sim.reserve(name, body["messages"])
    except ValueError as error:
        return _json({"message": str(error)}, 400)
    return _json({"channel": name, "reserved": state.reserved, "consumption": state.consumption})


async def get_config(request: web.Request) -> web.Response:
    """Return the configuration in force."""
    return _json(request.app[SIMULATOR].config)


async def post_config(request: web.Request) -> web.Response:
    """Deep-merge a partial configuration into the one in force; 400 names a bad key."""
    body = await _body(request)
    sim: Simulator = request.app[SIMULATOR]
    try:
        return _json(sim.configure(body))
    except ConfigError as error:
        return _json({"message": str(error)}, 400)


async def get_clock(request: web.Request) -> web.Response:
    """Return the simulated time."""
    return _json({"now": request.app[SIMULATOR].clock.now().isoformat()})


async def post_clock(request: web.Request) -> web.Response:
    """Move the simulated clock: ``{"advance_seconds": N}`` or ``{"now": "2026-01-01T00:00:00Z"}``."""
    body = await _body(request)
    clock = request.app[SIMULATOR].clock
    try:
        if "now" in body:
            now = clock.set(parse_time(body["now"]))
        elif isinstance(body.get("advance_seconds"), int | float):
            now = clock.advance(float(body["advance_seconds"]))
        else:
            return _json({"message": 'give {"advance_seconds": N} or {"now": ISO time}'}, 400)
    except ConfigError as error:
        return _json({"message": str(error)}, 400)
    return _json({"now": now.isoformat()})


def add_routes(app: web.Application) -> None:
    """Register the admin endpoints (no authentication: the simulator binds loopback by default)."""
    app.router.add_get("/_sim/stats", stats)
    app.router.add_get("/_sim/deliveries", deliveries)
    app.router.add_get("/_sim/delivery-counts", delivery_counts)
    app.router.add_get("/_sim/messages/{digest}", message_bundle)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/_sim/next-month", next_month)
    app.router.add_post("/_sim/reserve", reserve)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_post("/_sim/config", post_config)
    app.router.add_get("/_sim/clock", get_clock)
    app.router.add_post("/_sim/clock", post_clock)
