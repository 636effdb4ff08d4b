"""Check one property of a request body the way LINE does: strings, numbers, URLs, nested objects.

A wrong JSON type (or a number LINE cannot bind, beyond int32) is a *binding* error that LINE reports
alone (``BindingError``); anything else is a detail appended to ``details``.
Sources: https://developers.line.biz/en/reference/messaging-api/#error-responses (error shapes) and
the limits of each message object on the same page.
"""

from __future__ import annotations

import re
from typing import Any

#: Java's ``int`` (LINE's servers bind numbers such as ``baseSize.height`` to it): beyond this the
#: value cannot be bound and the property is reported invalid.
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
MAX_URL = 2000
MAX_LINK_URI = 1000
#: Schemes of a URI action / imagemap link:
#: https://developers.line.biz/en/reference/messaging-api/#uri-action ("http, https, line, tel").
URI_SCHEMES = ("http", "https", "line", "tel")
_SCHEME = re.compile(r"(?i)([a-z][a-z0-9+.-]*):")
#: What may appear in a URI LINE accepts: RFC 3986 characters only, because "Domain names, paths,
#: query parameters, and fragments in the property should be percent-encoded using UTF-8"
#: (https://developers.line.biz/en/reference/messaging-api/#url-encoding).
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_HTTP_AUTHORITY = re.compile(r"(?i)https?://[^/?#\s]+")


class BindingError(Exception):
    """A property has the wrong JSON type or format; LINE names it and reports nothing else."""

    def __init__(self, prop: str):
        super().__init__(prop)
        self.body = {"message": f"The property, {prop}, in the request body is invalid (line: -, column: -)"}


def utf16_length(text: str) -> int:
    """Count ``text`` in UTF-16 code units, as LINE does (a character outside the BMP counts 2)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def detail(details: list, message: str, prop: str) -> None:
    """Append one ``{"message", "property"}`` detail."""
    details.append({"message": message, "property": prop})


def string(
    obj: dict[str, Any], key: str, where: str, details: list, *, limit: int, required: bool = True
) -> str | None:
    """Check one string property: present when required, not empty, at most ``limit`` UTF-16 units."""
    value = obj.get(key)
    prop = f"{where}.{key}"
    if value is None:
        if required:
            detail(details, "May not be empty", prop)
        return None
    if not isinstance(value, str):
        raise BindingError(prop)
    if required and not value:
        detail(details, "May not be empty", prop)
    elif utf16_length(value) > limit:
        detail(details, f"Length must be between 0 and {limit}", prop)
    return value


def https_url(obj: dict[str, Any], key: str, where: str, details: list, *, required: bool = True) -> None:
    """Check an HTTPS URL of at most 2000 characters (images, videos, audio, icons)."""
    value = string(obj, key, where, details, limit=MAX_URL, required=required)
    if value and not (value.lower().startswith("https://") and _well_formed(value)):
        detail(details, "Must be an HTTPS URL", f"{where}.{key}")


def link_uri(obj: dict[str, Any], key: str, where: str, details: list, *, required: bool = True) -> None:
    """Check a link of an action: http, https, line or tel, a real address, at most 1000 characters."""
    value = string(obj, key, where, details, limit=MAX_LINK_URI, required=required)
    if not value:
        return
    scheme = _SCHEME.match(value)
    if scheme is None or scheme.group(1).lower() not in URI_SCHEMES:
        detail(details, "Invalid URI scheme (allowed: http, https, line, tel)", f"{where}.{key}")
    elif not _well_formed(value):
        detail(details, "Must be a valid URI", f"{where}.{key}")


def _well_formed(uri: str) -> bool:
    """Tell whether ``uri`` is percent-encoded and, for http(s), has a host (``https:`` alone has none)."""
    if _URI_CHARACTERS.fullmatch(uri) is None:
        return False
    scheme, _, rest = uri.partition(":")
    if scheme.lower() in ("http", "https"):
        return _HTTP_AUTHORITY.match(uri) is not None
    return bool(rest)


def integer(
    obj: dict[str, Any], key: str, where: str, details: list, *, minimum: int, required: bool = True
) -> int | None:
    """Check a whole number of at least ``minimum`` that fits LINE's int32 (else a binding error)."""
    value = obj.get(key)
    prop = f"{where}.{key}"
    if value is None:
        if required:
            detail(details, "May not be null", prop)
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not INT32_MIN <= value <= INT32_MAX:
        raise BindingError(prop)
    if value < minimum:
        detail(details, f"Must be greater than or equal to {minimum}", prop)
        return None
    return value


def number(obj: dict[str, Any], key: str, where: str, details: list) -> float | None:
    """Check a required JSON number that fits a double (latitude, longitude)."""
    value = obj.get(key)
    prop = f"{where}.{key}"
    if value is None:
        detail(details, "May not be null", prop)
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or abs(value) > 1e308:
        raise BindingError(prop)
    return float(value)


def mapping(
    obj: dict[str, Any], key: str, where: str, details: list, *, required: bool = True
) -> dict | None:
    """Return the object under ``key``; a value that is not an object is a binding error."""
    value = obj.get(key)
    prop = f"{where}.{key}"
    if value is None:
        if required:
            detail(details, "May not be null", prop)
        return None
    if not isinstance(value, dict):
        raise BindingError(prop)
    return value


def array(obj: dict[str, Any], key: str, where: str, details: list, *, low: int, high: int) -> list | None:
    """Return the array under ``key`` when its size is within ``low..high``; else a detail."""
    value = obj.get(key)
    prop = f"{where}.{key}"
    if value is None:
        if low:
            detail(details, "May not be empty", prop)
        return None
    if not isinstance(value, list):
        raise BindingError(prop)
    if not low <= len(value) <= high:
        detail(details, f"Size must be between {low} and {high}", prop)
        return None
    return value
