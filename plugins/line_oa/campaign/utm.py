"""Add UTM parameters to the links of a campaign: pure string functions, no I/O.

Rules (the product's UTM Tracking tab):

- only ``http://`` and ``https://`` links are tagged; ``line://``, ``tel:`` and the rest are left alone;
- parameters are merged into the link's query string: the link's own parameters keep their order and
  their values (a ``utm_source`` already in the link wins), new ones are appended in order;
- empty values are never added, so an override set to ``""`` removes a default;
- the fragment (``#...``) and any percent-encoding already in the link are kept as written.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_plus

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

DEFAULT_PARAMETERS: dict[str, str] = {"utm_source": "line", "utm_medium": "social", "utm_campaign": ""}

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
KNOWN_PLACEHOLDERS = ("campaign.id", "campaign.name")

# ASCII characters allowed in a URL (RFC 3986) except "$", which LINE uses as the emoji placeholder in
# text messages. A non-ASCII character (full-width punctuation, Japanese text) ends the link.
_URL_IN_TEXT = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!&'()*+,;=%]+", re.IGNORECASE)
_TRAILING_PUNCTUATION = ".,;:!?'*"
_CLOSERS = {")": "(", "]": "["}


def utm_parameters(campaign_id: str, campaign_name: str, overrides: Mapping[str, str]) -> dict[str, str]:
    """Return the UTM parameters of a campaign, in order, with placeholders expanded and empty values dropped.

    The defaults come first (``utm_source``, ``utm_medium``, ``utm_campaign``); an override replaces a
    default in place, other overrides follow in the order written. ``{{campaign.id}}`` and
    ``{{campaign.name}}`` are replaced in every value.
    """
    merged = dict(DEFAULT_PARAMETERS)
    merged.update(overrides)
    values = {"campaign.id": campaign_id, "campaign.name": campaign_name}
    expanded = {
        name: PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), value)
        for name, value in merged.items()
    }
    return {name: value for name, value in expanded.items() if value}


def unknown_placeholders(value: str) -> list[str]:
    """Return the ``{{...}}`` placeholders in ``value`` that the campaign cannot fill."""
    return [
        match.group(0) for match in PLACEHOLDER.finditer(value) if match.group(1) not in KNOWN_PLACEHOLDERS
    ]


def is_taggable(url: str) -> bool:
    """Tell whether ``url`` is a web link that receives UTM parameters."""
    return url[:8].lower().startswith(("http://", "https://"))


def tag_url(url: str, params: Mapping[str, str]) -> str:
    """Return ``url`` with ``params`` merged into its query string (see the module rules)."""
    if not is_taggable(url):
        return url
    before_fragment, hash_sign, fragment = url.partition("#")
    address, _, query = before_fragment.partition("?")
    present = {unquote_plus(pair.split("=", 1)[0]) for pair in query.split("&") if pair}
    additions = [
        f"{quote(name, safe='')}={quote(value, safe='')}"
        for name, value in params.items()
        if value and name not in present
    ]
    if not additions:
        return url
    separator = "" if not query or query.endswith("&") else "&"
    return f"{address}?{query}{separator}{'&'.join(additions)}{hash_sign}{fragment}"


def find_urls(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of every http(s) link in free text, without trailing punctuation."""
    for match in _URL_IN_TEXT.finditer(text):
        start, end = match.span()
        end = start + len(_trim_trailing(text[start:end]))
        if text[start:end].split("://", 1)[1]:
            yield start, end


def _trim_trailing(url: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets from the end of a link found in text."""
    while url:
        last = url[-1]
        if last in _TRAILING_PUNCTUATION or last in _CLOSERS and url.count(last) > url.count(_CLOSERS[last]):
            url = url[:-1]
        else:
            break
    return url


def tag_text(text: str, params: Mapping[str, str]) -> str:
    """Return ``text`` with every http(s) link in it tagged by :func:`tag_url`."""
    pieces: list[str] = []
    cursor = 0
    for start, end in find_urls(text):
        pieces.append(text[cursor:start])
        pieces.append(tag_url(text[start:end], params))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
