"""Read, merge and check the simulator configuration (a plain dict, also the YAML file shape)."""

from __future__ import annotations

import copy
import datetime as dt
import pathlib
from typing import Any

DEFAULT_TOKEN = "sim-token-default"

#: LINE's documented per-channel, per-endpoint limits in requests per second.
DEFAULT_RATE_LIMITS: dict[str, float | None] = {
    "push": 2000,
    "multicast": 200,
    "validate": 2000,
    "quota": 2000,
    "other": 2000,
}

DEFAULT_FAULTS: dict[str, Any] = {
    "seed": 0,
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "error_500_rate": 0,
    "error_503_rate": 0,
    "rate_limit_429_rate": 0,
    "reset_rate": 0,
    "accepted_then_lost_rate": 0,
    "hang_rate": 0,
    "conflict_without_accepted_id_rate": 0,
    "hang_seconds": 30,
    "hang_then": "drop",
    "fault_endpoints": ["push", "multicast"],
    "outage": None,
}

FAULT_RATE_KEYS = (
    "error_500_rate",
    "error_503_rate",
    "rate_limit_429_rate",
    "reset_rate",
    "accepted_then_lost_rate",
    "hang_rate",
    "conflict_without_accepted_id_rate",
)

ENDPOINTS = (
    "push",
    "multicast",
    "validate_push",
    "validate_multicast",
    "quota",
    "quota_consumption",
    "bot_info",
    "aggregation_info",
    "aggregation_list",
    "statistics_per_unit",
)

DEFAULT_RECIPIENTS: dict[str, Any] = {
    "blocked": [],
    "blocked_fraction": 0.0,
    "unknown": [],
    "unknown_fraction": 0.0,
    "multicast_unknown": "skip",
    # LINE answers 429 to "a large number of messages sent to the same user" (push); off unless set.
    "push_per_recipient_limit": None,
    "push_per_recipient_window_seconds": 60,
}


class ConfigError(ValueError):
    """The simulator configuration is not usable; the message names the key and the rule."""


def default_channel(name: str = "default", token: str = DEFAULT_TOKEN) -> dict[str, Any]:
    """Return a channel with LINE's default rate limits and no monthly quota."""
    return {"name": name, "token": token, "quota": {"type": "none"}, "rate_limits": dict(DEFAULT_RATE_LIMITS)}


def default_config() -> dict[str, Any]:
    """Return the configuration used when nothing is given: one channel, every id a friend."""
    return {
        "channels": [default_channel()],
        "recipients": copy.deepcopy(DEFAULT_RECIPIENTS),
        "faults": copy.deepcopy(DEFAULT_FAULTS),
    }


def load_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a YAML (or JSON) configuration file into a partial configuration dict."""
    import yaml

    text = pathlib.Path(path).read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], partial: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``partial``: mappings merge key by key, anything else replaces.

    ``channels`` is a list but merges by ``name``: a partial channel updates the channel of the same
    name (or is appended), so ``{"channels": [{"name": "default", "quota": {...}}]}`` changes one quota.
    """
    merged = copy.deepcopy(base)
    for key, value in partial.items():
        if key == "channels" and isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = _merge_channels(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_channels(base: list[dict[str, Any]], partial: list[Any]) -> list[dict[str, Any]]:
    channels = [copy.deepcopy(channel) for channel in base]
    for update in partial:
        if not isinstance(update, dict):
            raise ConfigError(f"channels: each channel must be a mapping, got {update!r}")
        name = update.get("name", "default")
        for index, channel in enumerate(channels):
            if channel.get("name") == name:
                channels[index] = deep_merge(channel, update)
                break
        else:
            channels.append(deep_merge(default_channel(name, update.get("token", "")), update))
    return channels


def build_config(partial: dict[str, Any] | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Return a complete, checked configuration: the defaults deep-merged with ``partial``."""
    return normalize(deep_merge(default_config(), partial or {}), now)


def normalize(config: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """Check every value and fill derived ones; raise ``ConfigError`` naming the bad key.

    ``faults.outage_seconds`` is turned into ``faults.outage`` ending that many seconds after ``now``
    (the simulated clock), so the stored configuration always shows the absolute end of the outage.
    """
    unknown_sections = set(config) - {"channels", "recipients", "faults"}
    if unknown_sections:
        raise ConfigError(f"unknown configuration section(s): {', '.join(sorted(unknown_sections))}")
    channels = config["channels"]
    if not isinstance(channels, list) or not channels:
        raise ConfigError("channels: at least one channel is required")
    tokens: set[str] = set()
    for index, channel in enumerate(channels):
        _check_channel(channel, f"channels[{index}]")
        if channel["token"] in tokens:
            raise ConfigError(f"channels[{index}].token: two channels share one token")
        tokens.add(channel["token"])
    _check_recipients(config["recipients"])
    _check_faults(config["faults"], now or dt.datetime.now(dt.UTC))
    return config


def _check_channel(channel: dict[str, Any], where: str) -> None:
    if not isinstance(channel.get("name"), str) or not channel["name"]:
        raise ConfigError(f"{where}.name: a non-empty string is required")
    if not isinstance(channel.get("token"), str) or not channel["token"]:
        raise ConfigError(f"{where}.token: a non-empty string is required")
    quota = channel.setdefault("quota", {"type": "none"})
    if not isinstance(quota, dict):
        raise ConfigError(f"{where}.quota: a mapping is required, e.g. {{type: limited, value: 1000}}")
    unknown_keys = set(quota) - {"type", "value", "reserved"}
    if unknown_keys:
        raise ConfigError(f"{where}.quota: unknown key(s) {', '.join(sorted(unknown_keys))}")
    reserved = quota.get("reserved", 0)
    if not _is_whole_number(reserved):
        raise ConfigError(
            f"{where}.quota.reserved: a whole number of messages >= 0 is required, got {reserved!r}"
        )
    if quota.get("type") == "limited":
        if not _is_whole_number(quota.get("value")):
            raise ConfigError(f"{where}.quota.value: a whole number >= 0 is required for type 'limited'")
    elif quota.get("type") == "none":
        if reserved:
            raise ConfigError(
                f"{where}.quota.reserved: only a limited quota can be reserved; "
                "use type 'limited' or reserved: 0"
            )
        quota.pop("value", None)
        quota.pop("reserved", None)
    else:
        raise ConfigError(f"{where}.quota.type: must be 'limited' or 'none', got {quota.get('type')!r}")
    limits = channel.setdefault("rate_limits", dict(DEFAULT_RATE_LIMITS))
    for key, value in limits.items():
        if key not in DEFAULT_RATE_LIMITS:
            raise ConfigError(f"{where}.rate_limits.{key}: unknown; use {', '.join(DEFAULT_RATE_LIMITS)}")
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise ConfigError(f"{where}.rate_limits.{key}: requests per second >= 0 (0 or null: unlimited)")
    for key, value in DEFAULT_RATE_LIMITS.items():
        limits.setdefault(key, value)


def _check_recipients(recipients: dict[str, Any]) -> None:
    unknown_keys = set(recipients) - set(DEFAULT_RECIPIENTS)
    if unknown_keys:
        raise ConfigError(f"recipients: unknown key(s) {', '.join(sorted(unknown_keys))}")
    for key in ("blocked", "unknown"):
        if not isinstance(recipients[key], list):
            raise ConfigError(f"recipients.{key}: a list of user ids is required")
    for key in ("blocked_fraction", "unknown_fraction"):
        _check_rate(recipients[key], f"recipients.{key}")
    if recipients["multicast_unknown"] not in ("skip", "reject"):
        raise ConfigError("recipients.multicast_unknown: must be 'skip' or 'reject'")
    limit = recipients["push_per_recipient_limit"]
    if limit is not None and (not _is_whole_number(limit) or limit < 1):
        raise ConfigError("recipients.push_per_recipient_limit: a whole number >= 1, or null (no limit)")
    window = recipients["push_per_recipient_window_seconds"]
    if not isinstance(window, int | float) or isinstance(window, bool) or window <= 0:
        raise ConfigError("recipients.push_per_recipient_window_seconds: a number of seconds > 0")


def _check_faults(faults: dict[str, Any], now: dt.datetime) -> None:
    seconds = faults.pop("outage_seconds", None)
    unknown_keys = set(faults) - set(DEFAULT_FAULTS)
    if unknown_keys:
        raise ConfigError(f"faults: unknown key(s) {', '.join(sorted(unknown_keys))}")
    for key in FAULT_RATE_KEYS:
        _check_rate(faults[key], f"faults.{key}")
    for key in ("latency_ms", "latency_jitter_ms", "hang_seconds"):
        if not isinstance(faults[key], int | float) or faults[key] < 0:
            raise ConfigError(f"faults.{key}: a number >= 0 is required")
    if not isinstance(faults["seed"], int):
        raise ConfigError("faults.seed: an integer is required")
    if faults["hang_then"] not in ("drop", "process"):
        raise ConfigError("faults.hang_then: must be 'drop' or 'process'")
    if faults["fault_endpoints"] in ("all", ["all"]):
        faults["fault_endpoints"] = list(ENDPOINTS)
    bad = set(faults["fault_endpoints"]) - set(ENDPOINTS)
    if bad:
        raise ConfigError(f"faults.fault_endpoints: unknown endpoint(s) {', '.join(sorted(bad))}")
    if seconds:
        status = (faults.get("outage") or {}).get("status", 503)
        until = now + dt.timedelta(seconds=float(seconds))
        faults["outage"] = {"status": status, "until_simulated_time": until.isoformat()}
    outage = faults["outage"]
    if outage is not None:
        if not isinstance(outage, dict) or "until_simulated_time" not in outage:
            raise ConfigError("faults.outage: {status: 503, until_simulated_time: ISO time} or null")
        outage.setdefault("status", 503)
        if outage["status"] not in (500, 503):
            raise ConfigError("faults.outage.status: must be 500 or 503")
        outage["until_simulated_time"] = parse_time(outage["until_simulated_time"]).isoformat()


def _is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_rate(value: Any, where: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ConfigError(f"{where}: a fraction between 0 and 1 is required, got {value!r}")


def parse_time(value: Any) -> dt.datetime:
    """Parse an ISO 8601 time (a ``Z`` suffix or no zone means UTC) into an aware datetime."""
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as error:
            raise ConfigError(f"not an ISO 8601 time: {value!r}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
