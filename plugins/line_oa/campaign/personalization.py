"""Personalized messages: profile placeholders filled per recipient from the segment's columns.

A placeholder (grammar in ``line_oa.campaign.placeholders``) may stand in a text message's ``text``,
an imagemap's ``alt_text`` and a query value of a link (a ``uri`` action's ``link_uri``, a video's
``external_link.link_uri``, a link inside a text). The bundle is built once per campaign as LINE
receives it (UTM tags applied) with a token where each placeholder goes; ``render`` replaces the
tokens with one recipient's values: as plain text, percent-encoded inside a link, the placeholder's
default when the value is empty; LINE emoji indexes move with the text. The same values always give
the same body, so a retried push carries the body of its first attempt.

Pure: no Airflow, no database. The checks that need the segment's data (the columns exist, the
longest values fit LINE's limits) take the data as arguments (``column_problems``, ``length_problems``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from line_oa.campaign import utm
from line_oa.campaign.messages import (
    ALT_TEXT_MAX,
    LINK_URI_MAX,
    TEXT_MAX,
    ImagemapMessage,
    TextMessage,
    UriAction,
    utf16_len,
)
from line_oa.campaign.placeholders import SYNTAX, TOKEN, malformed, placeholders, token

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from line_oa.campaign.messages import Loc
    from line_oa.campaign.model import Campaign, Content

WHERE = "a text message's text, an imagemap's alt_text and the query values of links"


@dataclass(frozen=True)
class Slot:
    """One placeholder of the bundle: the column it reads and the text used when the value is empty."""

    column: str
    default: str

    @property
    def written(self) -> str:
        """The placeholder as a campaign file writes it."""
        default = f' | default("{self.default}")' if self.default else ""
        return f"{{{{ profile.{self.column}{default} }}}}"


@dataclass(frozen=True)
class Templated:
    """A field of the sent bundle holding placeholders: where it is in the file, LINE's limit for it."""

    loc: Loc
    limit: int
    unit: str
    fixed: int  # its length with every placeholder empty
    slots: tuple[tuple[int, bool], ...]  # (slot index, percent-encoded) per token


@dataclass
class PersonalizedBundle:
    """The campaign's messages as sent, a token where each placeholder goes (none: not personalized)."""

    wire: list[dict[str, Any]]
    slots: list[Slot] = field(default_factory=list)
    fields: list[Templated] = field(default_factory=list)
    templated: list[bool] = field(default_factory=list)  # per message: holds a placeholder

    @property
    def personalized(self) -> bool:
        return bool(self.slots)

    @property
    def columns(self) -> list[str]:
        """Return the segment columns the messages read, in order of first use."""
        return list(dict.fromkeys(slot.column for slot in self.slots))

    def filled(self, values: Mapping[str, Any] | None) -> list[str]:
        """Return each slot's text for one recipient: its value as text, the default when empty."""
        texts = []
        for slot in self.slots:
            raw = None if values is None else values.get(slot.column)
            text = "" if raw is None else str(raw)
            texts.append(text if text.strip() else slot.default)
        return texts

    def render(self, values: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Return LINE's ``messages`` for one recipient (``values``: its row's columns by name)."""
        if not self.slots:
            return self.wire
        return self._filled_with(self.filled(values), encode=True)

    def as_written(self) -> list[dict[str, Any]]:
        """Return the bundle as sent with each placeholder shown as ``{{ profile.<column> }}`` (docs, logs)."""
        if not self.slots:
            return self.wire
        return self._filled_with([slot.written for slot in self.slots], encode=False)

    def _filled_with(self, texts: list[str], *, encode: bool) -> list[dict[str, Any]]:
        rendered = []
        for message, templated in zip(self.wire, self.templated, strict=True):
            if not templated:
                rendered.append(message)  # nothing to fill: shared, not copied per recipient
                continue
            body = copy.deepcopy(message)
            if body["type"] == "text":
                _render_text(body, texts, encode=encode)
            else:
                body["altText"] = _substitute(body["altText"], texts)[0]
                for action in body["actions"]:
                    if action["type"] == "uri":
                        action["linkUri"] = _substitute(action["linkUri"], texts, encode=encode)[0]
                external = body.get("video", {}).get("externalLink")
                if external:
                    external["linkUri"] = _substitute(external["linkUri"], texts, encode=encode)[0]
            rendered.append(body)
        return rendered


def field_text(messages: list[dict[str, Any]], loc: Loc) -> str:
    """Return the text at ``loc`` (a ``Templated.loc``) of a rendered bundle."""
    _content, _messages, number, *rest = loc
    value: Any = messages[int(number)]
    names = {"alt_text": "altText", "link_uri": "linkUri", "external_link": "externalLink"}
    for part in rest:
        value = value[part] if isinstance(part, int) else value[names.get(str(part), str(part))]
    return str(value)


def sample_renderings(bundle: PersonalizedBundle) -> list[tuple[str, list[tuple[str, str]]]]:
    """Return what the preview shows of a personalized bundle: per sample, each templated field filled.

    Two samples: every value shown as ``‹column›`` (where each value goes), and every value empty (the
    defaults). Empty for a bundle that is the same for everyone.
    """
    if not bundle.personalized:
        return []
    samples = [
        ("each value shown as ‹column›", {column: f"‹{column}›" for column in bundle.columns}),
        ("every value empty (the defaults)", {}),
    ]
    shown = []
    for label, values in samples:
        rendered = bundle.render(values)
        where = [(_path(item.loc), field_text(rendered, item.loc)) for item in bundle.fields]
        shown.append((label, where))
    return shown


def _path(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _substitute(
    text: str, texts: list[str], *, encode: bool = False, spans: list[tuple[int, int]] | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """Replace every token of ``text``; return the text and, per token, (UTF-16 offset, length change).

    A token inside a link (``encode``, or inside one of ``spans``) gets its value percent-encoded.
    """
    pieces, shifts, cursor = [], [], 0
    for match in TOKEN.finditer(text):
        value = texts[int(match.group(1))]
        in_link = encode or any(start <= match.start() < end for start, end in spans or ())
        value = quote(value, safe="") if in_link else value
        pieces += [text[cursor : match.start()], value]
        offset = utf16_len(text[: match.start()])
        shifts.append((offset, utf16_len(value) - utf16_len(match.group(0))))
        cursor = match.end()
    pieces.append(text[cursor:])
    return "".join(pieces), shifts


def _render_text(body: dict[str, Any], texts: list[str], *, encode: bool = True) -> None:
    spans = list(utm.find_urls(body["text"])) if encode else []
    body["text"], shifts = _substitute(body["text"], texts, spans=spans)
    for emoji in body.get("emojis") or []:
        emoji["index"] += sum(delta for offset, delta in shifts if offset < emoji["index"])


def is_personalized(content: Content) -> bool:
    """Tell whether any message holds a placeholder where one is filled (cheap: no bundle is built)."""
    return any(
        filled and placeholders(text)
        for message in content.messages
        for _loc, text, filled, _is_link in _strings(message)
    )


def bundle_of(campaign: Campaign) -> PersonalizedBundle:
    """Return the campaign's bundle as sent; its placeholders, if any, as tokens."""
    params = campaign.utm_parameters()
    bundle = PersonalizedBundle(wire=[])
    for number, message in enumerate(campaign.content.messages):
        data = message.model_dump()
        slots_before = len(bundle.slots)
        _tokenize_message(data, bundle.slots)
        sent = type(message).model_validate(data).wire_tagged(params)
        bundle.wire.append(sent)
        bundle.templated.append(len(bundle.slots) > slots_before)
        if len(bundle.slots) > slots_before:
            bundle.fields += _fields_of(sent, ("content", "messages", number))
    return bundle


def _tokenize(text: str, slots: list[Slot]) -> tuple[str, list[tuple[int, int]]]:
    pieces, shifts, cursor = [], [], 0
    for placeholder in placeholders(text):
        mark = token(len(slots))
        slots.append(Slot(placeholder.column, placeholder.default))
        pieces += [text[cursor : placeholder.start], mark]
        written = text[placeholder.start : placeholder.end]
        shifts.append((utf16_len(text[: placeholder.start]), utf16_len(mark) - utf16_len(written)))
        cursor = placeholder.end
    pieces.append(text[cursor:])
    return "".join(pieces), shifts


def _tokenize_message(data: dict[str, Any], slots: list[Slot]) -> None:
    if data["type"] == "text":
        data["text"], shifts = _tokenize(data["text"], slots)
        for emoji in data.get("emojis") or []:
            emoji["index"] += sum(delta for offset, delta in shifts if offset < emoji["index"])
        return
    data["alt_text"] = _tokenize(data["alt_text"], slots)[0]
    for action in data["actions"]:
        if action["type"] == "uri":
            action["link_uri"] = _tokenize(action["link_uri"], slots)[0]
    external = (data.get("video") or {}).get("external_link")
    if external:
        external["link_uri"] = _tokenize(external["link_uri"], slots)[0]


def _fields_of(sent: dict[str, Any], at: Loc) -> list[Templated]:
    """Describe the sent message's fields that hold tokens, for the length checks."""
    found: list[tuple[Loc, str, int, str, bool]] = []
    if sent["type"] == "text":
        found.append(((*at, "text"), sent["text"], TEXT_MAX, "characters (UTF-16)", False))
    else:
        found.append(((*at, "alt_text"), sent["altText"], ALT_TEXT_MAX, "characters (UTF-16)", False))
        for number, action in enumerate(sent["actions"]):
            if action["type"] == "uri":
                found.append(
                    (
                        (*at, "actions", number, "link_uri"),
                        action["linkUri"],
                        LINK_URI_MAX,
                        "characters",
                        True,
                    )
                )
        external = sent.get("video", {}).get("externalLink")
        if external:
            loc = (*at, "video", "external_link", "link_uri")
            found.append((loc, external["linkUri"], LINK_URI_MAX, "characters", True))
    fields = []
    for loc, text, limit, unit, encode in found:
        spans = [] if encode else list(utm.find_urls(text))
        slots = tuple(
            (int(match.group(1)), encode or any(start <= match.start() < end for start, end in spans))
            for match in TOKEN.finditer(text)
        )
        if slots:
            fixed = utf16_len(TOKEN.sub("", text)) if unit.endswith("(UTF-16)") else len(TOKEN.sub("", text))
            fields.append(Templated(loc, limit, unit, fixed, slots))
    return fields


# --- checks -----------------------------------------------------------------------------------------


def static_problems(content: Content) -> list[tuple[Loc, str]]:
    """List what is wrong with the placeholders of the messages, without the segment's data.

    A ``{{`` that is not a placeholder; a placeholder where none is filled; in a link, a placeholder
    outside a query value; a personalized bundle with ``delivery_mode: multicast`` (one body for all).
    """
    problems: list[tuple[Loc, str]] = []
    used: Loc | None = None
    for number, message in enumerate(content.messages):
        at: Loc = ("content", "messages", number)
        for loc, text, filled, is_link in _strings(message):
            if TOKEN.search(text):
                problems.append(
                    ((*at, *loc), f"{TOKEN.search(text).group(0)!r} is reserved for placeholders")
                )
            for written in malformed(text):
                problems.append(((*at, *loc), f"{written!r} is not a placeholder; write {SYNTAX}"))
            if not placeholders(text):
                continue
            used = used or (*at, *loc)
            if not filled:
                problems.append(((*at, *loc), f"placeholders are filled only in {WHERE}"))
            elif is_link or message.type == "text":
                problems += [((*at, *loc), problem) for problem in _link_problems(text, is_link)]
        if isinstance(message, TextMessage):
            problems += [((*at, *loc), problem) for loc, problem in _emoji_problems(message)]
    if used is not None and content.delivery_mode == "multicast":
        shown = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in used[1:])
        problems.append(
            (
                ("content", "delivery_mode"),
                f"multicast sends one body to every recipient, but the messages are personalized "
                f"({shown.replace('.[', '[')}); use push or auto (a personalized bundle is sent by push)",
            )
        )
    return problems


def _emoji_problems(message: TextMessage) -> list[tuple[Loc, str]]:
    """A LINE emoji must not point at a '$' inside a placeholder (its default text is not sent as is)."""
    spans = [
        (utf16_len(message.text[: p.start]), utf16_len(message.text[: p.end]))
        for p in placeholders(message.text)
    ]
    return [
        (
            ("emojis", number, "index"),
            f"{emoji.index} points inside a placeholder; put the emoji's '$' outside it",
        )
        for number, emoji in enumerate(message.emojis or [])
        if any(start <= emoji.index < end for start, end in spans)
    ]


def _strings(message: TextMessage | ImagemapMessage) -> Iterable[tuple[Loc, str, bool, bool]]:
    """Yield (loc, text, placeholders filled there, is a link) for every text field of a message."""
    if isinstance(message, TextMessage):
        yield ("text",), message.text, True, False
        return
    yield ("alt_text",), message.alt_text, True, False
    yield ("base_url",), message.base_url, False, True
    for number, action in enumerate(message.actions):
        if isinstance(action, UriAction):
            yield ("actions", number, "link_uri"), action.link_uri, True, True
        else:
            yield ("actions", number, "text"), action.text, False, False
        if action.label is not None:
            yield ("actions", number, "label"), action.label, False, False
    if message.video is not None:
        video = message.video
        yield ("video", "original_content_url"), video.original_content_url, False, True
        yield ("video", "preview_image_url"), video.preview_image_url, False, True
        if video.external_link is not None:
            yield ("video", "external_link", "link_uri"), video.external_link.link_uri, True, True
            yield ("video", "external_link", "label"), video.external_link.label, False, False


def _link_problems(text: str, is_link: bool) -> list[str]:
    """A placeholder in a link may stand only in a query value (``?name={{ profile.first_name }}``)."""
    slots: list[Slot] = []
    tokenized = _tokenize(text, slots)[0]
    links = [(0, len(tokenized))] if is_link else list(utm.find_urls(tokenized))
    problems = []
    for start, end in links:
        link = tokenized[start:end]
        if not TOKEN.search(link):
            continue
        address, _, rest = link.partition("?")
        query = rest.partition("#")[0]
        in_values = sum(len(TOKEN.findall(pair.partition("=")[2])) for pair in query.split("&"))
        if len(TOKEN.findall(link)) > in_values:
            shown = TOKEN.sub("{{…}}", link)[:80]
            problems.append(
                f"in the link {shown!r} a placeholder may only stand in a query value "
                "(?name={{ profile.first_name }}), not in its address, path, parameter name or fragment"
            )
    return problems


def column_problems(
    bundle: PersonalizedBundle, columns: Iterable[str], segment_file: str
) -> list[tuple[Loc, str]]:
    """List the placeholders naming a column the segment's query does not return."""
    available = list(columns)
    known = {column.lower() for column in available}
    problems = []
    for column in bundle.columns:
        if column.lower() not in known:
            loc = next(
                f.loc for f in bundle.fields if any(bundle.slots[i].column == column for i, _ in f.slots)
            )
            problems.append(
                (
                    loc,
                    f"{{{{ profile.{column} }}}}: the segment query {segment_file} returns no column "
                    f"{column!r} (it returns {', '.join(available)})",
                )
            )
    return problems


@dataclass
class Longest:
    """The longest value of one column: as text (UTF-16 units) and percent-encoded (characters)."""

    text: int = 0
    encoded: int = 0

    def add(self, value: Any) -> None:
        if value is None:
            return
        text = str(value)
        self.text = max(self.text, utf16_len(text))
        self.encoded = max(self.encoded, len(quote(text, safe="")))


def length_problems(bundle: PersonalizedBundle, longest: Mapping[str, Longest]) -> list[tuple[Loc, str]]:
    """List the fields that the longest values (or defaults) would take past LINE's limits."""
    problems = []
    for item in bundle.fields:
        total, widest = item.fixed, ""
        for index, encoded in item.slots:
            slot = bundle.slots[index]
            seen = longest.get(slot.column, Longest())
            default = len(quote(slot.default, safe="")) if encoded else utf16_len(slot.default)
            size = max(seen.encoded if encoded else seen.text, default)
            total += size
            widest = widest or f"{slot.column}: {size} characters"
        if total > item.limit:
            problems.append(
                (item.loc, f"up to {total:,} {item.unit} with the segment's longest values ({widest}), "
                 f"LINE allows {item.limit:,}")
            )  # fmt: skip
    return problems
