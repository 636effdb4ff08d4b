"""Add UTM parameters to the links of a campaign: pure string functions, no I/O.

Rules (the product's UTM Tracking tab):

- only ``http://`` and ``https://`` links are tagged; ``line://``, ``tel:`` and the rest are left alone;
- parameters are merged into the link's query string: the link's own parameters keep their order and
  their values (a ``utm_source`` already in the link wins), new ones are appended in order;
- empty values are never added, so an override set to ``""`` removes a default;
- the fragment (``#...``) and any percent-encoding already in the link are kept as written;
- an international link (IRI: a non-ASCII path, query or fragment, an IDN host) is one link, tagged
  after its whole path. In a ``uri`` action it is sent as LINE's reference requires: "Domain names,
  paths, query parameters, and fragments in the property should be percent-encoded using UTF-8"
  (https://developers.line.biz/en/reference/messaging-api/#url-encoding). In a text message, where
  the LINE app finds links itself, it is sent as plain ASCII that every linkifier and browser reads
  as one link: the host in punycode (IDNA, RFC 3987 section 3.1), the rest percent-encoded (UTF-8).
  Every length limit is checked on what is sent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_plus

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

DEFAULT_PARAMETERS: dict[str, str] = {"utm_source": "line", "utm_medium": "social", "utm_campaign": ""}

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
KNOWN_PLACEHOLDERS = ("campaign.id", "campaign.name")

# ASCII characters allowed in a URL (RFC 3986) except "$", which LINE uses as the emoji placeholder in
# text messages.
_URL_START = re.compile(r"https?://", re.IGNORECASE)
_URL_ASCII = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!&'()*+,;=%")
# After one of these, a run of non-ASCII letters or digits is a segment of an IRI ("/商品", "?q=春");
# after anything else ("saleをご覧ください") it is the sentence going on, unless the link goes on after it.
_IRI_DELIMITERS = frozenset("/?#=&.-_~+")
# Anything RFC 3986 does not allow in a URI as written (non-ASCII, spaces, controls, quotes, ...).
_NOT_URI = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
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


def to_uri(link: str, *, host: str = "punycode") -> str:
    """Return ``link`` as a URI: other characters percent-encoded (UTF-8), an IDN host as ``host`` says.

    :param host: ``"punycode"`` (``xn--…``, for text) or ``"percent"`` (percent-encoded UTF-8, what
        LINE's reference asks of URL properties such as a ``uri`` action's).
    A link that is already a URI is returned as written (its own percent-encoding is kept).
    """
    if _NOT_URI.search(link) is None:
        return link
    scheme, separator, rest = link.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return _percent_encode(link)
    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    name, colon, port = (
        authority.rpartition(":") if authority.rpartition(":")[2].isdigit() else (authority, "", "")
    )
    name = _percent_encode(name) if host == "percent" else _ascii_host(name)
    return f"{scheme}://{name}{colon}{port}{_percent_encode(tail)}"


def _ascii_host(host: str) -> str:
    if host.isascii():
        return host
    labels = []
    for label in host.split("."):
        try:
            labels.append(label.encode("idna").decode("ascii") if label and not label.isascii() else label)
        except UnicodeError:
            labels.append(_percent_encode(label))  # not a valid IDN label: encoded, never dropped
    return ".".join(labels)


def _percent_encode(text: str) -> str:
    return _NOT_URI.sub(lambda match: quote(match.group(0), safe=""), text)


def tag_url(url: str, params: Mapping[str, str], *, host: str = "punycode") -> str:
    """Return ``url`` with ``params`` merged into its query string, in ASCII (see ``to_uri``)."""
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
        return to_uri(url, host=host)
    separator = "" if not query or query.endswith("&") else "&"
    return to_uri(f"{address}?{query}{separator}{'&'.join(additions)}{hash_sign}{fragment}", host=host)


def sent_link(url: str, params: Mapping[str, str]) -> str:
    """Return the link of a ``uri`` action as sent: tagged when it is a web link, percent-encoded UTF-8
    throughout, the domain name included, as LINE's reference asks (see the module rules)."""
    return to_uri(tag_url(url, params, host="percent"), host="percent")


def find_urls(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of every http(s) link in free text, without trailing punctuation.

    A link runs over RFC 3986 characters and over non-ASCII letters and digits that are part of it
    (after ``/``, ``?``, ``#``, ``=``, ``&``, ``.``, ``://``..., or followed by more of the link), so
    ``https://shop.example.com/商品/123`` and ``https://例え.jp/`` are whole links; it ends at a space,
    at non-ASCII punctuation (``。``, ``」``, full-width space) and at ``$`` (a LINE emoji).
    """
    position = 0
    while (match := _URL_START.search(text, position)) is not None:
        start, end = match.start(), _link_end(text, match.end())
        end = start + len(_trim_trailing(text[start:end]))
        position = max(end, match.end())
        if end > match.end():
            yield start, end


def _is_iri_letter(character: str) -> bool:
    return not character.isascii() and unicodedata.category(character)[0] in "LMN"


def _link_end(text: str, index: int) -> int:
    """Return where the link whose address starts at ``index`` ends."""
    length = len(text)
    while index < length:
        character = text[index]
        if character in _URL_ASCII:
            index += 1
            continue
        if not _is_iri_letter(character):
            break
        run_end = index
        while run_end < length and _is_iri_letter(text[run_end]):
            run_end += 1
        previous = text[index - 1]
        follows = (
            run_end < length and text[run_end] in _URL_ASCII and text[run_end] not in _TRAILING_PUNCTUATION
        )
        if previous in _IRI_DELIMITERS or follows:
            index = run_end
        else:
            break
    return index


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
