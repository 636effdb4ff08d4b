"""Parse a request body as JSON the way a strict server does, without ever raising.

Refused, with the line and column of the problem, as LINE's
``The request body could not be parsed as JSON (line: L, column: C)``
(https://developers.line.biz/en/reference/messaging-api/#error-messages): bytes that are not UTF-8,
JSON that does not parse, a body that is not an object, ``NaN``/``Infinity`` (not JSON), numbers of
more digits than Python converts, nesting deeper than ``MAX_NESTING`` and escaped lone surrogates
(``"\\ud800"``), which no UTF-8 text can hold. LINE's own nesting limit is not documented; the
simulator's is far above what any message object needs (a flex bubble nests about 10 deep).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_NESTING = 200

_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_STRING_OR_SURROGATE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_PAIR = re.compile(r"[\ud800-\udbff][\udc00-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    line = raw.count(b"\n", 0, offset) + 1
    return line, offset - (raw.rfind(b"\n", 0, offset) + 1) + 1


def _too_deep(raw: bytes) -> int | None:
    """Return the offset where nesting passes ``MAX_NESTING``, or None (cheap when brackets are few)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return None
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group(0)
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_NESTING:
                return match.start()
        elif token in (b"]", b"}"):
            depth -= 1
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether the parsed JSON ``value`` nests objects and arrays more than ``limit`` deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _lone_surrogate(raw: bytes) -> int | None:
    """Return the offset of a string holding an escaped surrogate that is not part of a pair."""
    if _SURROGATE_ESCAPE.search(raw) is None:
        return None
    for match in _STRING_OR_SURROGATE.finditer(raw):
        if _SURROGATE_ESCAPE.search(match.group(0)) is None:
            continue
        try:
            text = json.loads(match.group(0))
        except ValueError:
            return match.start()
        unpaired = _PAIR.sub("", text)
        if any("\ud800" <= char <= "\udfff" for char in unpaired):
            return match.start()
    return None


def parse_json(raw: bytes) -> tuple[dict[str, Any] | None, tuple[int, int]]:
    """Return ``(body, (0, 0))`` for a JSON object, else ``(None, (line, column))`` of the problem."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        return None, (error.lineno, error.colno)
    except RecursionError:
        return None, _position(raw, _too_deep(raw) or 0)
    except ValueError:  # bad UTF-8, NaN, a number of too many digits
        return None, (1, 1)
    # The byte scan that finds where nesting goes too deep costs milliseconds on a large imagemap:
    # run it only when the parsed body is too deep (a walk of the parsed values is far cheaper).
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING and _deeper_than(body, MAX_NESTING):
        return None, _position(raw, _too_deep(raw) or 0)
    if not isinstance(body, dict):
        return None, (1, 1)
    surrogate = _lone_surrogate(raw)
    if surrogate is not None:
        return None, _position(raw, surrogate)
    return body, (0, 0)
