"""The simulator's runtime state: ``Simulator``, its ``Channel``s and the ``SIMULATOR`` application key.

The request handlers (``routes``, ``admin``) and ``app.create_app`` all import this module; it imports
neither, so the package has no import cycle.
"""

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any

from aiohttp import web

from line_simulator.config import build_config, deep_merge, normalize
from line_simulator.faults import FaultInjector
from line_simulator.state import (
    ChannelState,
    RecipientRules,
    Record,
    SimulatedClock,
    TokenBucket,
)

if TYPE_CHECKING:
    import asyncio

#: Which ``rate_limits`` key sets the bucket of each endpoint (each endpoint has its own bucket).
RATE_LIMIT_KEY = {
    "push": "push",
    "multicast": "multicast",
    "validate_push": "validate",
    "validate_multicast": "validate",
    "quota": "quota",
    "quota_consumption": "quota",
    "bot_info": "other",
    "aggregation_info": "other",
    "aggregation_list": "other",
    # statistics_per_unit: its own hourly bucket (line_simulator.insights)
}


class Channel:
    """A configured channel as the request handlers need it: token, quota, buckets and its memory."""

    __slots__ = ("buckets", "config", "name", "quota_limit", "state", "token")

    def __init__(self, config: dict[str, Any], state: ChannelState):
        self.config = config
        self.name: str = config["name"]
        self.token: str = config["token"]
        quota = config["quota"]
        self.quota_limit: int | None = quota["value"] if quota["type"] == "limited" else None
        self.state = state
        limits = config["rate_limits"]
        self.buckets: dict[str, TokenBucket | None] = {
            endpoint: TokenBucket(limits[key]) if limits[key] else None
            for endpoint, key in RATE_LIMIT_KEY.items()
        }

    def bot_info(self) -> dict[str, str]:
        """Return ``GET /v2/bot/info``'s body, derived from the channel name unless configured."""
        digest = hashlib.sha256(self.name.encode()).hexdigest()
        return {
            "userId": self.config.get("user_id") or "U" + digest[:32],
            "basicId": self.config.get("basic_id") or "@" + digest[32:40],
            "displayName": self.config.get("display_name") or self.name,
            "chatMode": "chat",
            "markAsReadMode": "manual",
        }


class Simulator:
    """Hold the configuration and everything the simulator remembers; change both at run time."""

    def __init__(self, config: dict[str, Any] | None = None):
        self.clock = SimulatedClock()
        self.startup_config = build_config(config, self.clock.now())
        self.record = Record()
        self.states: dict[str, ChannelState] = {}
        self.config: dict[str, Any] = {}
        #: The tasks serving a LINE request right now (``routes._handler``); ``reset`` cancels them.
        self.in_flight: set[asyncio.Task] = set()
        self.apply(copy.deepcopy(self.startup_config))

    def apply(self, config: dict[str, Any], *, reseed: bool = False) -> None:
        """Switch to a complete, normalized configuration; keep consumption, reservations and retry keys.

        A channel's reservation takes the configured ``quota.reserved`` when its state is new or when the
        configured value changed; a reservation made with ``reserve`` otherwise stays. A channel without
        a limited quota holds no reservation.
        """
        if reseed or config["faults"] != self.config.get("faults"):
            self.faults = FaultInjector(config["faults"])
        previous = {channel["name"]: channel["quota"] for channel in self.config.get("channels", [])}
        channels = []
        for channel_config in config["channels"]:
            name = channel_config["name"]
            quota = channel_config["quota"]
            reserved = quota.get("reserved", 0)
            state = self.states.get(name)
            if state is None:
                state = self.states[name] = ChannelState(name, reserved=reserved)
            elif quota["type"] != "limited" or reserved != previous.get(name, {}).get("reserved", 0):
                state.reserved = reserved
            channels.append(Channel(channel_config, state))
        self.config = config
        self.channels_by_token = {channel.token: channel for channel in channels}
        self.channels_by_name = {channel.name: channel for channel in self.channels_by_token.values()}
        self.rules = RecipientRules(config["recipients"])

    def configure(self, partial: dict[str, Any]) -> dict[str, Any]:
        """Deep-merge a partial configuration into the current one and return the result."""
        self.apply(normalize(deep_merge(self.config, partial), self.clock.now()))
        return self.config

    def reserve(self, channel: str, messages: int) -> ChannelState:
        """Hold ``messages`` of ``channel``'s monthly quota for another delivery in progress (0 releases).

        :raises KeyError: no channel has that name.
        :raises ValueError: ``messages`` is not a whole number >= 0, or the channel has no limited quota.
        """
        target = self.channels_by_name[channel]
        if not isinstance(messages, int) or isinstance(messages, bool) or messages < 0:
            raise ValueError(f"messages: a whole number >= 0 is required, got {messages!r}")
        if messages and target.quota_limit is None:
            raise ValueError(f"channel {channel!r} has no monthly quota ({{type: none}}); nothing to reserve")
        target.state.reserved = messages
        return target.state

    def reset(
        self, *, keep_config: bool = True, config: dict[str, Any] | None = None, keep_clock: bool = False
    ) -> None:
        """Forget the record, retry keys, counters, consumption and reservations; clock to real time.

        Reservations go back to the configured ``quota.reserved`` (0 unless configured). LINE requests
        still in flight (sleeping in an injected latency or hang, reading their body) are cancelled:
        their connections close unanswered and they count nowhere, so a request a client gave up on
        before the reset never lands in the record that follows it.

        :param keep_config: keep the current configuration; if false, go back to the startup one.
        :param config: start from the defaults merged with this configuration instead.
        """
        for task in self.in_flight:
            task.cancel()
        self.in_flight.clear()
        self.record = Record()
        self.states = {}
        if not keep_clock:
            self.clock.offset = type(self.clock.offset)(0)
        if config is not None:
            new_config = build_config(config, self.clock.now())
        elif keep_config:
            new_config = self.config
        else:
            new_config = copy.deepcopy(self.startup_config)
        self.apply(new_config, reseed=True)

    def stats(self) -> dict[str, Any]:
        """Return the counters: requests by endpoint and status, faults by kind, deliveries, billing."""
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, status), count in sorted(self.record.requests.items(), key=str):
            if count:
                requests.setdefault(endpoint, {})[str(status)] = count
        events = self.record.events
        return {
            "requests": requests,
            "requests_total": sum(self.record.requests.values()),
            "faults": dict(self.record.faults),
            "deliveries": events["deliveries"],
            "delivered": events["delivered"],
            "blocked": events["deliveries"] - events["delivered"],
            "billed": sum(state.consumption for state in self.states.values()),
            "rate_limited": events["rate_limited"],
            "quota_exceeded": events["quota_exceeded"],
            "quota_exceeded_by_reservation": events["quota_exceeded_by_reservation"],
            "retry_key_conflicts": events["retry_key_conflicts"],
            "unknown_recipients": events["unknown_recipients"],
            "rate_limited_per_recipient": events["rate_limited_per_recipient"],
            "internal_errors": events["internal_errors"],
            "retry_keys_accepted": sum(len(state.retry_keys) for state in self.states.values()),
            "send_requests_accepted": len(self.record.sends),
            "consumption": {name: state.consumption for name, state in sorted(self.states.items())},
            "reserved": {name: state.reserved for name, state in sorted(self.states.items())},
            "simulated_time": self.clock.now().isoformat(),
        }


SIMULATOR = web.AppKey("simulator", Simulator)
