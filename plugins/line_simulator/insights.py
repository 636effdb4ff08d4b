"""Serve LINE's aggregation-unit and statistics-per-unit endpoints, and the admin endpoint for them.

- ``GET /v2/bot/message/aggregation/info``: ``{"numOfCustomAggregationUnits": n}``, this month's names;
- ``GET /v2/bot/message/aggregation/list?limit=&start=``: the names, 1-100 a page, ``next`` to go on;
- ``GET /v2/bot/insight/message/event/aggregation?customAggregationUnit=&from=&to=``: impressions and
  clicks of the unit's requests sent between two dates (``yyyyMMdd``, UTC+9, at most 30 days), from
  ``engagement``; ``{"status": "unready"}`` until the day (UTC+9) of the first of them has ended;
  60 requests an hour per channel (a token bucket holding an hour's worth), else 429.
- ``GET``/``POST /_sim/insights``: ``{"unit_budget": N, "rate_limit_per_hour": N or null,
  "rate_limit_burst": N or null}`` (burst null: an hour's worth).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from line_simulator import engagement
from line_simulator.routes import RATE_LIMITED, _enter, _handler, respond
from line_simulator.runtime import SIMULATOR, Channel, Simulator
from line_simulator.state import TokenBucket
from line_simulator.units import JST, book_of, settings_of

MAX_PERIOD_DAYS = 30
LIST_MAX = 100
UNREADY = {"status": "unready"}
NULLABLE_SETTINGS = {"rate_limit_per_hour", "rate_limit_burst"}


class BadRequest(Exception):
    """A query parameter LINE would refuse: the message of its 400 answer."""


def _insight_bucket(sim: Simulator, channel: Channel) -> TokenBucket | None:
    """Return the channel's bucket for the statistics endpoint (off with the channel's other limits)."""
    settings = settings_of(sim)
    per_hour = settings.rate_limit_per_hour
    if not channel.config["rate_limits"].get("other"):
        per_hour = None  # --no-rate-limits
    shape = (per_hour, settings.rate_limit_burst)
    buckets = book_of(sim).buckets
    held = buckets.get(channel.name)
    if held is None or held[0] != shape:
        bucket = None
        if per_hour:
            bucket = TokenBucket(per_hour / 3600)
            bucket.capacity = bucket.tokens = float(settings.rate_limit_burst or per_hour)
        held = buckets[channel.name] = (shape, bucket)
    return held[1]


async def aggregation_info(request: web.Request, endpoint: str) -> web.Response:
    """Answer how many unit names the channel used this month."""
    sim, channel = await _enter(request, endpoint, "GET")
    if not isinstance(channel, Channel):
        return channel
    used = book_of(sim).used(channel.name, sim.clock.now())
    return respond(sim, "aggregation_info", 200, {"numOfCustomAggregationUnits": len(used)})


async def aggregation_list(request: web.Request, endpoint: str) -> web.Response:
    """Answer one page of the channel's unit names of this month."""
    sim, channel = await _enter(request, endpoint, "GET")
    if not isinstance(channel, Channel):
        return channel
    used = book_of(sim).used(channel.name, sim.clock.now())
    limit, start = _whole(request.query.get("limit", str(LIST_MAX))), _whole(request.query.get("start", "0"))
    if limit is None or start is None or not 1 <= limit <= LIST_MAX or start > len(used):
        return respond(sim, "aggregation_list", 400, {"message": "The request parameters are invalid"})
    body: dict[str, Any] = {"customAggregationUnits": used[start : start + limit]}
    if start + limit < len(used):
        body["next"] = str(start + limit)
    return respond(sim, "aggregation_list", 200, body)


def _whole(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _date(query: Any, name: str) -> dt.date:
    value = query.get(name, "")
    parsed = None
    if len(value) == 8 and value.isdigit():
        try:
            parsed = dt.datetime.strptime(value, "%Y%m%d").date()
        except ValueError:
            parsed = None
    if parsed is None:
        raise BadRequest(f"The value for the '{name}' parameter is invalid")
    return parsed


def period(query: Any) -> tuple[str, dt.date, dt.date]:
    """Return the unit and the dates asked for; raise ``BadRequest`` as LINE would."""
    unit = query.get("customAggregationUnit", "")
    if not unit:
        raise BadRequest("The value for the 'customAggregationUnit' parameter is invalid")
    first, last = _date(query, "from"), _date(query, "to")
    if last < first:
        raise BadRequest("The value for the 'to' parameter must not be before 'from'")
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise BadRequest(f"The period from 'from' to 'to' must be {MAX_PERIOD_DAYS} days or less")
    return unit, first, last


async def statistics(request: web.Request, endpoint: str) -> web.Response:
    """Answer the unit's impressions and clicks, ``unready`` before they exist, 429 over the limit."""
    sim, channel = await _enter(request, endpoint, "GET")
    if not isinstance(channel, Channel):
        return channel
    bucket = _insight_bucket(sim, channel)
    if bucket is not None and not bucket.take():
        sim.record.events["rate_limited"] += 1
        return respond(sim, endpoint, 429, RATE_LIMITED)
    try:
        unit, first, last = period(request.query)
    except BadRequest as error:
        return respond(sim, endpoint, 400, {"message": str(error)})
    now = sim.clock.now()
    sends = engagement.sends_in_period(sim.record, channel.name, unit, first, last)
    if sends:
        first_day = min(dt.datetime.fromisoformat(send.time).astimezone(JST).date() for send in sends)
        ready_at = dt.datetime.combine(first_day + dt.timedelta(days=1), dt.time(), JST)
        if now < ready_at:
            return respond(sim, endpoint, 200, UNREADY)
    return respond(sim, endpoint, 200, engagement.statistics(sim.record, sends, unit, now))


async def get_settings(request: web.Request) -> web.Response:
    """Return the unit budget and the statistics endpoint's hourly limit."""
    return web.json_response(settings_of(request.app[SIMULATOR]).to_dict())


async def post_settings(request: web.Request) -> web.Response:
    """Change the unit budget (``unit_budget``) and the hourly limit (``rate_limit_per_hour``, null: off)."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or set(body) - NULLABLE_SETTINGS - {"unit_budget"}:
        return web.json_response(
            {"message": "give unit_budget, rate_limit_per_hour and/or rate_limit_burst"}, status=400
        )
    current = settings_of(request.app[SIMULATOR])
    for key, value in body.items():
        allowed_none = key in NULLABLE_SETTINGS
        if (value is None and not allowed_none) or (
            value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0)
        ):
            return web.json_response({"message": f"{key}: a whole number >= 0 is required"}, status=400)
    for key, value in body.items():
        setattr(current, key, value)
    return web.json_response(current.to_dict())


def add_routes(app: web.Application) -> None:
    """Register the insight endpoints and ``/_sim/insights`` (before the catch-all 404)."""
    # through routes' handler, like LINE's other paths: dropped connections and simulator bugs still
    # answer in LINE's shape with a request id
    for path, function, endpoint in (
        ("/v2/bot/message/aggregation/info", aggregation_info, "aggregation_info"),
        ("/v2/bot/message/aggregation/list", aggregation_list, "aggregation_list"),
        ("/v2/bot/insight/message/event/aggregation", statistics, "statistics_per_unit"),
    ):
        app.router.add_route("*", path, _handler(function, endpoint))
    app.router.add_get("/_sim/insights", get_settings)
    app.router.add_post("/_sim/insights", post_settings)
