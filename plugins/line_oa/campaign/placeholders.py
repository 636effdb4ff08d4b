"""The grammar of profile placeholders: ``{{ profile.<column> }}``, optionally ``| default("…")``.

Nothing else may stand between ``{{`` and ``}}``: no expression, no attribute of anything but the
segment's row, no filter but ``default``, no escape sequence. A placeholder is recognised by one
regular expression and replaced by plain text, so filling it can never run code, and a value is
never read again (a value holding ``{{`` or ``<b>`` is sent as written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

COLUMN = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
# a default's text: at most 200 characters, no quote of its kind, backslash, brace or line break
_DEFAULT = r"\(\s*(?:\"(?P<double>[^\"\\{}\n]{0,200})\"|'(?P<single>[^'\\{}\n]{0,200})')\s*\)"
PLACEHOLDER = re.compile(
    r"\{\{\s*profile\.(?P<column>" + COLUMN + r")\s*(?:\|\s*default" + _DEFAULT + r"\s*)?\}\}"
)
_BRACES = re.compile(r"\{\{.*?\}\}|\{\{|\}\}", re.DOTALL)
SYNTAX = '{{ profile.<column> }} or {{ profile.<column> | default("text") }}'


@dataclass(frozen=True)
class Placeholder:
    """One placeholder in a text: where it stands, the column it names, the text used when empty."""

    start: int
    end: int
    column: str
    default: str


def placeholders(text: str) -> list[Placeholder]:
    """Return the placeholders of ``text`` in order."""
    found = []
    for match in PLACEHOLDER.finditer(text):
        default = match["double"] if match["double"] is not None else match["single"] or ""
        found.append(Placeholder(match.start(), match.end(), match["column"], default))
    return found


def malformed(text: str) -> list[str]:
    """Return what stands between ``{{`` and ``}}`` (or a stray ``{{``/``}}``) that is not a placeholder."""
    blanked = PLACEHOLDER.sub(lambda match: " " * len(match.group(0)), text)
    return [text[match.start() : match.end()][:60] for match in _BRACES.finditer(blanked)]


# What a placeholder becomes in the bundle built once per campaign (``personalization.bundle_of``):
# ASCII letters and digits, so UTM tagging and link detection treat it as part of a query value.
TOKEN = re.compile(r"PLHq(\d{1,4})qZ")


def token(number: int) -> str:
    return f"PLHq{number}qZ"


def without_placeholders(text: str, filler: str = "x") -> str:
    """Return ``text`` with each placeholder (or its token) replaced by ``filler``: the length and the
    characters of the rest are what the message rules check; the launch checks the longest values."""
    return TOKEN.sub(filler, PLACEHOLDER.sub(filler, text))


def with_tokens(text: str) -> tuple[str, Callable[[str], str]]:
    """Return ``text`` with its placeholders as tokens, and a function that puts them back in a text
    derived from it (a link found and tagged in it), to show links as written."""
    written = [match.group(0) for match in PLACEHOLDER.finditer(text)]
    numbers = iter(range(len(written)))
    tokenized = PLACEHOLDER.sub(lambda _match: token(next(numbers)), text)

    def restore(derived: str) -> str:
        return TOKEN.sub(lambda match: written[int(match.group(1))], derived)

    return tokenized, restore
