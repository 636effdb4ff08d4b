"""Check request bodies the way LINE does and build LINE's error bodies.

A problem is either a *binding* error (a property of the wrong JSON type or a malformed id), which
LINE reports alone as ``The property, X, in the request body is invalid (line: -, column: -)``, or a
list of *details* (``{"message", "property"}``), reported as ``The request body has N error(s)``.
"""

from __future__ import annotations

import re
from typing import Any

from line_simulator import message_types
from line_simulator.fields import (
    BindingError,
    detail,
    https_url,
    integer,
    link_uri,
    mapping,
    string,
    utf16_length,
)

__all__ = ["BindingError", "check_messages", "details_body", "utf16_length"]

USER_ID = re.compile(r"U[0-9a-f]{32}")
#: Push also accepts group (C...) and room (R...) ids.
PUSH_TARGET_ID = re.compile(r"[UCR][0-9a-f]{32}")
RETRY_KEY = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
AGGREGATION_UNIT = re.compile(r"[a-zA-Z0-9_]{1,30}")

#: The message types LINE accepts (https://developers.line.biz/en/reference/messaging-api/#message-objects
#: and the ``Message`` discriminator of line/line-openapi ``messaging-api.yml``).
MESSAGE_TYPES = (
    "text",
    "textV2",
    "sticker",
    "image",
    "video",
    "audio",
    "location",
    "imagemap",
    "template",
    "flex",
    "coupon",
)
TYPE_MESSAGE = "Must be one of the following values: [" + ", ".join(MESSAGE_TYPES) + "]"
MAX_MESSAGES = 5
MAX_MULTICAST_RECIPIENTS = 500
MAX_TEXT = 5000
MAX_ALT_TEXT = 1500
MAX_IMAGEMAP_ACTIONS = 50
MAX_ACTION_TEXT = 400
MAX_LABEL = 100
MAX_VIDEO_LINK_LABEL = 30
MAX_EMOJIS = 20
IMAGEMAP_WIDTH = 1040


def details_body(details: list[dict[str, str]]) -> dict[str, Any]:
    """Return LINE's ``The request body has N error(s)`` body for a list of details."""
    return {"message": f"The request body has {len(details)} error(s)", "details": details}


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


def _check_text(message: dict[str, Any], where: str, details: list) -> None:
    text = string(message, "text", where, details, limit=MAX_TEXT)
    emojis = message.get("emojis")
    if emojis is None:
        return
    if not isinstance(emojis, list):
        raise BindingError(f"{where}.emojis")
    if len(emojis) > MAX_EMOJIS:
        detail(details, f"Size must be between 0 and {MAX_EMOJIS}", f"{where}.emojis")
    units = text.encode("utf-16-le", "surrogatepass") if isinstance(text, str) else b""
    for index, emoji in enumerate(emojis):
        _check_emoji(emoji, f"{where}.emojis[{index}]", units, details)


def _check_emoji(emoji: Any, where: str, units: bytes, details: list) -> None:
    """Check one LINE emoji: ``productId``, ``emojiId`` and an ``index`` that points at a ``$``.

    https://developers.line.biz/en/reference/messaging-api/#text-message: "If you specify a position
    that doesn't match the position of $, the API returns HTTP 400 Bad request"; positions are "the
    position of the code unit when encoded in UTF-16".
    """
    if not isinstance(emoji, dict):
        raise BindingError(where)
    index = integer(emoji, "index", where, details, minimum=0)
    string(emoji, "productId", where, details, limit=100)
    string(emoji, "emojiId", where, details, limit=100)
    if index is not None and units[2 * index : 2 * index + 2] != b"$\x00":
        detail(details, "Must point at a $ character in text", f"{where}.index")


def _check_image(message: dict[str, Any], where: str, details: list) -> None:
    https_url(message, "originalContentUrl", where, details)
    https_url(message, "previewImageUrl", where, details)


def _check_sticker(message: dict[str, Any], where: str, details: list) -> None:
    string(message, "packageId", where, details, limit=100)
    string(message, "stickerId", where, details, limit=100)


def _check_imagemap(message: dict[str, Any], where: str, details: list) -> None:
    https_url(message, "baseUrl", where, details)
    string(message, "altText", where, details, limit=MAX_ALT_TEXT)
    size = mapping(message, "baseSize", where, details)
    width = height = None
    if size is not None:
        width = integer(size, "width", f"{where}.baseSize", details, minimum=1)
        height = integer(size, "height", f"{where}.baseSize", details, minimum=1)
        if width is not None and width != IMAGEMAP_WIDTH:
            detail(details, f"Must be {IMAGEMAP_WIDTH}", f"{where}.baseSize.width")
            width = None
    video = mapping(message, "video", where, details, required=False)
    if video is not None:
        _check_imagemap_video(video, f"{where}.video", details, width, height)
    actions = message.get("actions")
    if not isinstance(actions, list):
        if actions is not None:
            raise BindingError(f"{where}.actions")
        detail(details, "May not be empty", f"{where}.actions")
        return
    if not 1 <= len(actions) <= MAX_IMAGEMAP_ACTIONS:
        detail(details, f"Size must be between 1 and {MAX_IMAGEMAP_ACTIONS}", f"{where}.actions")
        return
    for index, action in enumerate(actions):
        _check_imagemap_action(action, f"{where}.actions[{index}]", details, width, height)


def _check_imagemap_video(
    video: dict[str, Any], where: str, details: list, width: int | None, height: int | None
) -> None:
    """Check an imagemap's video: HTTPS content and preview, an area, an optional external link.

    https://developers.line.biz/en/reference/messaging-api/#imagemap-message: ``externalLink.linkUri``
    at most 1000 characters (http, https, line, tel), ``externalLink.label`` at most 30.
    """
    https_url(video, "originalContentUrl", where, details)
    https_url(video, "previewImageUrl", where, details)
    _check_area(video.get("area"), f"{where}.area", details, width, height)
    link = mapping(video, "externalLink", where, details, required=False)
    if link is not None:
        link_uri(link, "linkUri", f"{where}.externalLink", details)
        string(link, "label", f"{where}.externalLink", details, limit=MAX_VIDEO_LINK_LABEL)


def _check_imagemap_action(
    action: Any, where: str, details: list, width: int | None, height: int | None
) -> None:
    if not isinstance(action, dict):
        raise BindingError(where)
    kind = action.get("type")
    if kind == "uri":
        link_uri(action, "linkUri", where, details)
    elif kind == "message":
        string(action, "text", where, details, limit=MAX_ACTION_TEXT)
    elif kind == "clipboard":
        string(action, "clipboardText", where, details, limit=1000)
    else:
        detail(details, "Must be one of the following values: [uri, message, clipboard]", f"{where}.type")
    string(action, "label", where, details, limit=MAX_LABEL, required=False)
    _check_area(action.get("area"), f"{where}.area", details, width, height)


def _check_area(area: Any, where: str, details: list, width: int | None, height: int | None) -> None:
    if area is None:
        detail(details, "May not be null", where)
        return
    if not isinstance(area, dict):
        raise BindingError(where)
    x = integer(area, "x", where, details, minimum=0)
    y = integer(area, "y", where, details, minimum=0)
    area_width = integer(area, "width", where, details, minimum=1)
    area_height = integer(area, "height", where, details, minimum=1)
    if None in (x, y, area_width, area_height, width, height):
        return
    if x + area_width > width or y + area_height > height:
        detail(details, f"Area must be inside the base size ({width}x{height})", where)


_CHECKERS = {
    "text": _check_text,
    "image": _check_image,
    "sticker": _check_sticker,
    "imagemap": _check_imagemap,
    **message_types.CHECKERS,
}
