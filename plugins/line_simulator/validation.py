"""Check request bodies the way LINE does and build LINE's error bodies.

A problem is either a *binding* error (a property of the wrong JSON type or a malformed id), which
LINE reports alone as ``The property, X, in the request body is invalid (line: -, column: -)``, or a
list of *details* (``{"message", "property"}``), reported as ``The request body has N error(s)``.
"""

from __future__ import annotations

import re
from typing import Any

USER_ID = re.compile(r"U[0-9a-f]{32}")
#: Push also accepts group (C...) and room (R...) ids.
PUSH_TARGET_ID = re.compile(r"[UCR][0-9a-f]{32}")
RETRY_KEY = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
AGGREGATION_UNIT = re.compile(r"[a-zA-Z0-9_]{1,30}")
URI_SCHEME = re.compile(r"(?i)(https?|line|tel):")

SIMULATED_TYPES = ("text", "image", "sticker", "imagemap")
TYPE_MESSAGE = "Must be one of the following values: [" + ", ".join(SIMULATED_TYPES) + "]"
MAX_MESSAGES = 5
MAX_MULTICAST_RECIPIENTS = 500
MAX_TEXT = 5000
MAX_URL = 2000
MAX_ALT_TEXT = 1500
MAX_IMAGEMAP_ACTIONS = 50
MAX_LINK_URI = 1000
MAX_ACTION_TEXT = 400
MAX_LABEL = 100
MAX_EMOJIS = 20
IMAGEMAP_WIDTH = 1040


class BindingError(Exception):
    """A property has the wrong JSON type or format; LINE names it and reports nothing else."""

    def __init__(self, prop: str):
        super().__init__(prop)
        self.body = {"message": f"The property, {prop}, in the request body is invalid (line: -, column: -)"}


def details_body(details: list[dict[str, str]]) -> dict[str, Any]:
    """Return LINE's ``The request body has N error(s)`` body for a list of details."""
    return {"message": f"The request body has {len(details)} error(s)", "details": details}


def utf16_length(text: str) -> int:
    """Count ``text`` in UTF-16 code units, as LINE does (a character outside the BMP counts 2)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def check_push_target(body: dict[str, Any]) -> None:
    """Raise ``BindingError`` unless ``to`` is a user, group or room id."""
    to = body.get("to")
    if not isinstance(to, str) or PUSH_TARGET_ID.fullmatch(to) is None:
        raise BindingError("'to'")


def check_multicast_targets(body: dict[str, Any]) -> list[dict[str, str]]:
    """Return size details for ``to``; raise ``BindingError`` naming the first malformed user id."""
    to = body.get("to")
    if not isinstance(to, list):
        raise BindingError("to")
    for index, user_id in enumerate(to):
        if not isinstance(user_id, str) or USER_ID.fullmatch(user_id) is None:
            raise BindingError(f"to[{index}]")
    if not 1 <= len(to) <= MAX_MULTICAST_RECIPIENTS:
        return [{"message": f"Size must be between 1 and {MAX_MULTICAST_RECIPIENTS}", "property": "to"}]
    return []


def check_send_options(body: dict[str, Any]) -> list[dict[str, str]]:
    """Check ``notificationDisabled`` and ``customAggregationUnits`` (at most one unit, 1-30 chars)."""
    notification = body.get("notificationDisabled", False)
    if not isinstance(notification, bool):
        raise BindingError("notificationDisabled")
    units = body.get("customAggregationUnits")
    if units is None:
        return []
    if not isinstance(units, list) or not all(isinstance(unit, str) for unit in units):
        raise BindingError("customAggregationUnits")
    details = []
    if len(units) > 1:
        details.append({"message": "Size must be between 0 and 1", "property": "customAggregationUnits"})
    for index, unit in enumerate(units):
        if AGGREGATION_UNIT.fullmatch(unit) is None:
            details.append(
                {"message": "Must match [a-zA-Z0-9_]{1,30}", "property": f"customAggregationUnits[{index}]"}
            )
    return details


def check_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """Return every problem of ``messages`` as LINE details (empty when the bundle is valid)."""
    messages = body.get("messages")
    if messages is None:
        return [{"message": "May not be empty", "property": "messages"}]
    if not isinstance(messages, list):
        raise BindingError("messages")
    if not 1 <= len(messages) <= MAX_MESSAGES:
        return [{"message": f"Size must be between 1 and {MAX_MESSAGES}", "property": "messages"}]
    details: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BindingError(where)
        kind = message.get("type")
        checker = _CHECKERS.get(kind) if isinstance(kind, str) else None
        if checker is None:
            details.append({"message": TYPE_MESSAGE, "property": f"{where}.type"})
        else:
            checker(message, where, details)
    return details


def _string(
    obj: dict[str, Any], key: str, where: str, details: list, *, limit: int, required: bool = True
) -> str | None:
    """Check one string property: present when required, not empty, at most ``limit`` characters."""
    value = obj.get(key)
    prop = f"{where}.{key}"
    if value is None:
        if required:
            details.append({"message": "May not be empty", "property": prop})
        return None
    if not isinstance(value, str):
        raise BindingError(prop)
    if required and not value:
        details.append({"message": "May not be empty", "property": prop})
    elif utf16_length(value) > limit:
        details.append({"message": f"Length must be between 0 and {limit}", "property": prop})
    return value


def _https_url(obj: dict[str, Any], key: str, where: str, details: list) -> None:
    value = _string(obj, key, where, details, limit=MAX_URL)
    if value and not value.lower().startswith("https://"):
        details.append({"message": "Must be an HTTPS URL", "property": f"{where}.{key}"})


def _check_text(message: dict[str, Any], where: str, details: list) -> None:
    _string(message, "text", where, details, limit=MAX_TEXT)
    emojis = message.get("emojis")
    if emojis is not None:
        if not isinstance(emojis, list):
            raise BindingError(f"{where}.emojis")
        if len(emojis) > MAX_EMOJIS:
            details.append(
                {"message": f"Size must be between 0 and {MAX_EMOJIS}", "property": f"{where}.emojis"}
            )


def _check_image(message: dict[str, Any], where: str, details: list) -> None:
    _https_url(message, "originalContentUrl", where, details)
    _https_url(message, "previewImageUrl", where, details)


def _check_sticker(message: dict[str, Any], where: str, details: list) -> None:
    _string(message, "packageId", where, details, limit=100)
    _string(message, "stickerId", where, details, limit=100)


def _number(obj: dict[str, Any], key: str, where: str, details: list, *, minimum: int) -> int | None:
    value = obj.get(key)
    prop = f"{where}.{key}"
    if value is None:
        details.append({"message": "May not be null", "property": prop})
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BindingError(prop)
    if value < minimum:
        details.append({"message": f"Must be greater than or equal to {minimum}", "property": prop})
        return None
    return value


def _check_imagemap(message: dict[str, Any], where: str, details: list) -> None:
    _https_url(message, "baseUrl", where, details)
    _string(message, "altText", where, details, limit=MAX_ALT_TEXT)
    size = message.get("baseSize")
    width = height = None
    if not isinstance(size, dict):
        details.append({"message": "May not be null", "property": f"{where}.baseSize"})
    else:
        width = _number(size, "width", f"{where}.baseSize", details, minimum=1)
        height = _number(size, "height", f"{where}.baseSize", details, minimum=1)
        if width is not None and width != IMAGEMAP_WIDTH:
            details.append({"message": f"Must be {IMAGEMAP_WIDTH}", "property": f"{where}.baseSize.width"})
            width = None
    actions = message.get("actions")
    if not isinstance(actions, list):
        details.append({"message": "May not be empty", "property": f"{where}.actions"})
        return
    if not 1 <= len(actions) <= MAX_IMAGEMAP_ACTIONS:
        details.append(
            {"message": f"Size must be between 1 and {MAX_IMAGEMAP_ACTIONS}", "property": f"{where}.actions"}
        )
        return
    for index, action in enumerate(actions):
        _check_imagemap_action(action, f"{where}.actions[{index}]", details, width, height)


def _check_imagemap_action(
    action: Any, where: str, details: list, width: int | None, height: int | None
) -> None:
    if not isinstance(action, dict):
        raise BindingError(where)
    kind = action.get("type")
    if kind == "uri":
        link = _string(action, "linkUri", where, details, limit=MAX_LINK_URI)
        if link and URI_SCHEME.match(link) is None:
            details.append(
                {
                    "message": "Invalid URI scheme (allowed: http, https, line, tel)",
                    "property": f"{where}.linkUri",
                }
            )
    elif kind == "message":
        _string(action, "text", where, details, limit=MAX_ACTION_TEXT)
    elif kind == "clipboard":
        _string(action, "clipboardText", where, details, limit=MAX_LINK_URI)
    else:
        details.append(
            {
                "message": "Must be one of the following values: [uri, message, clipboard]",
                "property": f"{where}.type",
            }
        )
    _string(action, "label", where, details, limit=MAX_LABEL, required=False)
    _check_area(action.get("area"), f"{where}.area", details, width, height)


def _check_area(area: Any, where: str, details: list, width: int | None, height: int | None) -> None:
    if not isinstance(area, dict):
        details.append({"message": "May not be null", "property": where})
        return
    x = _number(area, "x", where, details, minimum=0)
    y = _number(area, "y", where, details, minimum=0)
    area_width = _number(area, "width", where, details, minimum=1)
    area_height = _number(area, "height", where, details, minimum=1)
    if None in (x, y, area_width, area_height, width, height):
        return
    if x + area_width > width or y + area_height > height:
        details.append(
            {"message": f"Area must be inside the base size ({width}x{height})", "property": where}
        )


_CHECKERS = {
    "text": _check_text,
    "image": _check_image,
    "sticker": _check_sticker,
    "imagemap": _check_imagemap,
}
