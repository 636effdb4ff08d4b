"""Shallow checks of the message types the project does not send but LINE accepts.

video, audio, location, template, flex, textV2 and coupon are accepted when their required
properties have the right types and the limits of LINE's reference hold
(https://developers.line.biz/en/reference/messaging-api/#message-objects). What is *not* modelled:
the contents of flex bubbles (only their type and the JSON size), template columns beyond their
count, actions beyond their type and URI, mention rules, whether media URLs can be fetched.
"""

from __future__ import annotations

import json
import re
from typing import Any

from line_simulator.fields import (
    BindingError,
    array,
    detail,
    https_url,
    integer,
    link_uri,
    mapping,
    number,
    string,
)

MAX_ALT_TEXT = 1500
MAX_TEXT = 5000
#: https://developers.line.biz/en/reference/messaging-api/#flex-message: 30 KB a bubble, 50 KB a carousel.
MAX_BUBBLE_BYTES = 30 * 1024
MAX_CAROUSEL_BYTES = 50 * 1024
MAX_CAROUSEL_BUBBLES = 12
#: https://developers.line.biz/en/reference/messaging-api/#action-objects
ACTION_TYPES = (
    "postback",
    "message",
    "uri",
    "datetimepicker",
    "camera",
    "cameraRoll",
    "location",
    "richmenuswitch",
    "clipboard",
)
TEMPLATE_ACTIONS = {"buttons": (1, 4), "confirm": (2, 2)}
TEMPLATE_COLUMNS = 10
#: https://developers.line.biz/en/reference/messaging-api/#text-message-v2
SUBSTITUTION_KEY = re.compile(r"[0-9a-zA-Z_]{1,20}")
MAX_SUBSTITUTIONS = 100
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
#: https://developers.line.biz/en/reference/messaging-api/#coupon-message
DELIVERY_TAG = re.compile(r"[A-Za-z0-9_]{1,30}")


def _check_video(message: dict[str, Any], where: str, details: list) -> None:
    https_url(message, "originalContentUrl", where, details)
    https_url(message, "previewImageUrl", where, details)
    string(message, "trackingId", where, details, limit=100, required=False)


def _check_audio(message: dict[str, Any], where: str, details: list) -> None:
    https_url(message, "originalContentUrl", where, details)
    integer(message, "duration", where, details, minimum=1)


def _check_location(message: dict[str, Any], where: str, details: list) -> None:
    string(message, "title", where, details, limit=100)
    string(message, "address", where, details, limit=100)
    number(message, "latitude", where, details)
    number(message, "longitude", where, details)


def _check_actions(actions: list, where: str, details: list) -> None:
    for index, action in enumerate(actions):
        prop = f"{where}[{index}]"
        if not isinstance(action, dict):
            raise BindingError(prop)
        kind = action.get("type")
        if kind not in ACTION_TYPES:
            detail(
                details, f"Must be one of the following values: [{', '.join(ACTION_TYPES)}]", f"{prop}.type"
            )
        elif kind == "uri":
            link_uri(action, "uri", prop, details)
        elif kind == "message":
            string(action, "text", prop, details, limit=300)


def _check_template(message: dict[str, Any], where: str, details: list) -> None:
    string(message, "altText", where, details, limit=MAX_ALT_TEXT)
    template = mapping(message, "template", where, details)
    if template is None:
        return
    where = f"{where}.template"
    kind = template.get("type")
    if kind in TEMPLATE_ACTIONS:
        low, high = TEMPLATE_ACTIONS[kind]
        limit = 240 if kind == "confirm" else 160
        if kind == "buttons" and (template.get("title") or template.get("thumbnailImageUrl")):
            limit = 60
        string(template, "text", where, details, limit=limit)
        actions = array(template, "actions", where, details, low=low, high=high)
        if actions:
            _check_actions(actions, f"{where}.actions", details)
    elif kind in ("carousel", "image_carousel"):
        columns = array(template, "columns", where, details, low=1, high=TEMPLATE_COLUMNS)
        for index, column in enumerate(columns or ()):
            if not isinstance(column, dict):
                raise BindingError(f"{where}.columns[{index}]")
    else:
        detail(
            details,
            "Must be one of the following values: [buttons, confirm, carousel, image_carousel]",
            f"{where}.type",
        )


def _check_flex(message: dict[str, Any], where: str, details: list) -> None:
    string(message, "altText", where, details, limit=MAX_ALT_TEXT)
    contents = mapping(message, "contents", where, details)
    if contents is None:
        return
    kind = contents.get("type")
    size = len(json.dumps(contents, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"))
    if kind == "bubble":
        if size > MAX_BUBBLE_BYTES:
            detail(details, "The bubble must be at most 30 KB", f"{where}.contents")
    elif kind == "carousel":
        bubbles = array(contents, "contents", f"{where}.contents", details, low=1, high=MAX_CAROUSEL_BUBBLES)
        if bubbles is not None and size > MAX_CAROUSEL_BYTES:
            detail(details, "The carousel must be at most 50 KB", f"{where}.contents")
    else:
        detail(details, "Must be one of the following values: [bubble, carousel]", f"{where}.contents.type")


def _check_text_v2(message: dict[str, Any], where: str, details: list) -> None:
    text = string(message, "text", where, details, limit=MAX_TEXT)
    substitution = mapping(message, "substitution", where, details, required=False) or {}
    if len(substitution) > MAX_SUBSTITUTIONS:
        detail(details, f"Size must be between 0 and {MAX_SUBSTITUTIONS}", f"{where}.substitution")
    for key, value in substitution.items():
        prop = f"{where}.substitution.{key}"
        if SUBSTITUTION_KEY.fullmatch(key) is None:
            detail(details, "Must match [0-9a-zA-Z_]{1,20}", prop)
        if not isinstance(value, dict):
            raise BindingError(prop)
        if value.get("type") not in ("mention", "emoji"):
            detail(details, "Must be one of the following values: [mention, emoji]", f"{prop}.type")
    for match in _PLACEHOLDER.finditer(text or ""):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            detail(details, "Unbalanced { or } (write {{ or }} for a literal brace)", f"{where}.text")
            break
        if match.group(1) not in substitution:
            detail(details, f"The key {match.group(1)[:20]!r} is not in substitution", f"{where}.text")
            break


def _check_coupon(message: dict[str, Any], where: str, details: list) -> None:
    string(message, "couponId", where, details, limit=100)
    tag = string(message, "deliveryTag", where, details, limit=30, required=False)
    if tag and DELIVERY_TAG.fullmatch(tag) is None:
        detail(details, "Must match [A-Za-z0-9_]{1,30}", f"{where}.deliveryTag")


CHECKERS = {
    "video": _check_video,
    "audio": _check_audio,
    "location": _check_location,
    "template": _check_template,
    "flex": _check_flex,
    "textV2": _check_text_v2,
    "coupon": _check_coupon,
}

#: Types whose ``sentMessages`` entry carries a ``quoteToken``
#: (https://developers.line.biz/en/docs/messaging-api/get-quote-tokens/).
QUOTABLE = frozenset({"text", "textV2", "sticker", "image", "video", "template", "flex"})
