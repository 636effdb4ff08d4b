"""LINE message objects of a campaign: snake_case in YAML, camelCase on the wire, LINE's limits enforced.

Limits follow the Messaging API reference: text is counted in UTF-16 code units (an emoji outside the
Basic Multilingual Plane counts 2), labels and action texts in characters. A rule that involves
several fields (an action area inside the image, an emoji index on a ``$``) is reported on the field
a user has to change, through :func:`rule_errors`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from line_oa.campaign import utm
from line_oa.campaign.placeholders import without_placeholders

TEXT_MAX = 5000
EMOJIS_MAX = 20
BASE_URL_MAX = 2000
ALT_TEXT_MAX = 1500
IMAGEMAP_WIDTH = 1040
ACTIONS_MAX = 50
LINK_URI_MAX = 1000
ACTION_TEXT_MAX = 400
ACTION_LABEL_MAX = 100
VIDEO_URL_MAX = 2000
VIDEO_LABEL_MAX = 30
LINK_SCHEMES = ("http", "https", "line", "tel")
_FILE_EXTENSION = re.compile(r"\.(png|jpe?g|gif|webp|bmp|svg|tiff?|heic|avif|html?)$", re.IGNORECASE)

Loc = tuple[str | int, ...]


def utf16_len(text: str) -> int:
    """Count ``text`` the way LINE does: in UTF-16 code units (a character outside the BMP counts 2)."""
    return sum(2 if ord(character) > 0xFFFF else 1 for character in text)


def rule_error(message: str) -> PydanticCustomError:
    """Build a validation error whose message is shown to the user as written."""
    return PydanticCustomError("line_rule", message)


def rule_errors(problems: list[tuple[Loc, str]]) -> PydanticCustomError:
    """Build one validation error that carries several problems, each at a path below the validated value."""
    return PydanticCustomError(
        "line_rules", "; ".join(message for _, message in problems), {"problems": problems}
    )


def check_length(value: str, limit: int, *, unit: str = "characters", counted: int | None = None) -> str:
    """Raise a rule error when ``value`` is empty or longer than ``limit``; return it otherwise."""
    length = len(value) if counted is None else counted
    if length == 0:
        raise rule_error(f"is empty; LINE requires 1 to {limit} {unit}")
    if length > limit:
        raise rule_error(f"{length} {unit}, LINE allows {limit}")
    return value


def check_link(value: str, limit: int, schemes: tuple[str, ...] = LINK_SCHEMES, *, iri: bool = False) -> str:
    """Raise a rule error unless ``value`` is a URL LINE accepts: length, encoding and scheme.

    :param iri: the link is sent through ``utm.sent_link``, which percent-encodes non-ASCII characters
        and writes an IDN host in punycode, so printable non-ASCII characters are allowed (the length
        limit is checked again on the form sent, see ``tagging_problems``).
    """
    written = value
    if iri:  # a profile placeholder is filled (percent-encoded) per recipient: check the rest
        value = without_placeholders(value)
    check_length(value, limit)
    for position, character in enumerate(value):
        if iri and not character.isascii() and character.isprintable() and not character.isspace():
            continue
        if character.isspace() or ord(character) > 0x7E or ord(character) < 0x21:
            raise rule_error(
                f"contains {character!r} at position {position}; spaces and "
                + ("control" if iri else "non-ASCII")
                + " characters must be percent-encoded (UTF-8)"
            )
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in schemes:
        allowed = ", ".join(f"{name}:" for name in schemes)
        shown = f"'{scheme}:'" if scheme else "missing"
        raise rule_error(f"scheme {shown} is not allowed; LINE accepts {allowed}")
    if scheme in ("http", "https"):
        try:
            host = urlsplit(value).hostname
        except ValueError:
            host = None
        if not host:
            raise rule_error("is not a valid web address: the host name is missing or malformed")
        if has_credentials(value):
            raise rule_error(CREDENTIALS_MESSAGE)
    return written


CREDENTIALS_MESSAGE = (
    "carries a user name or password ('user:password@host'); every recipient would see it: remove it"
)


def has_credentials(url: str) -> bool:
    """Tell whether a web address carries ``user[:password]@`` before its host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.username or parts.password)


class WireModel(BaseModel):
    """Base of the message models: closed schema, camelCase names when dumped for LINE."""

    model_config = ConfigDict(extra="forbid", alias_generator=AliasGenerator(serialization_alias=to_camel))

    def wire(self) -> dict[str, Any]:
        """Return the LINE JSON of this object (camelCase keys, unset optional fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Emoji(WireModel):
    """A LINE emoji shown in place of the ``$`` at ``index`` (UTF-16 code units from 0)."""

    index: int = Field(ge=0)
    product_id: str = Field(min_length=1)
    emoji_id: str = Field(min_length=1)


class TextMessage(WireModel):
    """A text message, optionally with LINE emojis."""

    type: Literal["text"]
    text: str
    emojis: list[Emoji] | None = None

    @field_validator("text")
    @classmethod
    def _text_length(cls, value: str) -> str:
        # A profile placeholder counts as one character here; the launch checks the longest values.
        counted = utf16_len(without_placeholders(value))
        check_length(value, TEXT_MAX, unit="characters (UTF-16)", counted=counted)
        for start, end in utm.find_urls(value):
            if has_credentials(value[start:end]):
                raise rule_error(f"the link at position {start} {CREDENTIALS_MESSAGE}")
        return value

    @field_validator("emojis")
    @classmethod
    def _emoji_count(cls, value: list[Emoji] | None) -> list[Emoji] | None:
        if value is not None and len(value) > EMOJIS_MAX:
            raise rule_error(f"{len(value)} LINE emojis, LINE allows {EMOJIS_MAX} in one text message")
        return value

    @model_validator(mode="after")
    def _emojis_on_placeholders(self) -> TextMessage:
        dollars = _dollar_positions(self.text)
        problems: list[tuple[Loc, str]] = [
            (
                ("emojis", number, "index"),
                f"{emoji.index} does not point at a '$' in the text (LINE replaces a '$' with the emoji; "
                "index counts UTF-16 code units from 0)",
            )
            for number, emoji in enumerate(self.emojis or [])
            if emoji.index not in dollars
        ]
        if problems:
            raise rule_errors(problems)
        return self

    def wire_tagged(self, params: dict[str, str]) -> dict[str, Any]:
        """Return the LINE JSON with UTM tags in every link and emoji indexes moved to match."""
        body = self.wire()
        body["text"] = utm.tag_text(self.text, params)
        if self.emojis:
            old_dollars = sorted(_dollar_positions(self.text))
            new_dollars = sorted(_dollar_positions(body["text"]))
            moved = dict(zip(old_dollars, new_dollars, strict=True))
            for emoji in body["emojis"]:
                emoji["index"] = moved[emoji["index"]]
        return body

    def tagging_problems(self, params: dict[str, str]) -> list[tuple[Loc, str]]:
        """List the limits this message passes only before UTM tagging."""
        length = utf16_len(utm.tag_text(without_placeholders(self.text), params))
        if length > TEXT_MAX:
            return [(("text",), f"{length} characters (UTF-16) after UTM tagging, LINE allows {TEXT_MAX}")]
        return []


def _dollar_positions(text: str) -> set[int]:
    """Return the UTF-16 offsets of every ``$`` in ``text``."""
    positions, offset = set(), 0
    for character in text:
        if character == "$":
            positions.add(offset)
        offset += 2 if ord(character) > 0xFFFF else 1
    return positions


class Area(WireModel):
    """A tappable rectangle, in pixels of the 1040-wide base image."""

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class BaseSize(WireModel):
    """Size of the imagemap's base image: LINE requires a width of 1040."""

    width: int
    height: int = Field(gt=0)

    @field_validator("width")
    @classmethod
    def _width_1040(cls, value: int) -> int:
        if value != IMAGEMAP_WIDTH:
            raise rule_error(
                f"is {value}; LINE requires the imagemap base width to be exactly {IMAGEMAP_WIDTH}"
            )
        return value


def _check_label(value: str | None, limit: int) -> str | None:
    if value is not None:
        check_length(value, limit)
    return value


class UriAction(WireModel):
    """Open ``link_uri`` when the area is tapped."""

    type: Literal["uri"]
    link_uri: str
    area: Area
    label: str | None = None

    _link = field_validator("link_uri")(lambda value: check_link(value, LINK_URI_MAX, iri=True))
    _label = field_validator("label")(lambda value: _check_label(value, ACTION_LABEL_MAX))


class MessageAction(WireModel):
    """Send ``text`` as the user when the area is tapped."""

    type: Literal["message"]
    text: str
    area: Area
    label: str | None = None

    _text = field_validator("text")(lambda value: check_length(value, ACTION_TEXT_MAX))
    _label = field_validator("label")(lambda value: _check_label(value, ACTION_LABEL_MAX))


ImagemapAction = Annotated[UriAction | MessageAction, Field(discriminator="type")]


class ExternalLink(WireModel):
    """The link shown under an imagemap video once it has played."""

    link_uri: str
    label: str

    _link = field_validator("link_uri")(lambda value: check_link(value, LINK_URI_MAX, iri=True))
    _label = field_validator("label")(lambda value: check_length(value, VIDEO_LABEL_MAX))


class ImagemapVideo(WireModel):
    """A video played inside an imagemap."""

    original_content_url: str
    preview_image_url: str
    area: Area
    external_link: ExternalLink | None = None

    _urls = field_validator("original_content_url", "preview_image_url")(
        lambda value: check_link(value, VIDEO_URL_MAX, ("https",))
    )


class ImagemapMessage(WireModel):
    """An image with tappable areas; LINE fetches ``{base_url}/{width}`` for each screen size."""

    type: Literal["imagemap"]
    base_url: str
    alt_text: str
    base_size: BaseSize
    actions: list[ImagemapAction]
    video: ImagemapVideo | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        check_link(value, BASE_URL_MAX, ("https",))
        path = urlsplit(value).path
        if _FILE_EXTENSION.search(path):
            raise rule_error(
                "ends with a file extension; LINE appends /1040, /700, ... to the base URL, "
                "so give the folder of the images without an extension"
            )
        return value

    @field_validator("alt_text")
    @classmethod
    def _alt_text(cls, value: str) -> str:
        counted = utf16_len(without_placeholders(value))  # see TextMessage._text_length
        return check_length(value, ALT_TEXT_MAX, unit="characters (UTF-16)", counted=counted)

    @field_validator("actions")
    @classmethod
    def _action_count(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise rule_error(f"no actions; an imagemap needs 1 to {ACTIONS_MAX} tappable areas")
        if len(value) > ACTIONS_MAX:
            raise rule_error(f"{len(value)} actions, LINE allows {ACTIONS_MAX}")
        return value

    @model_validator(mode="after")
    def _areas_inside_image(self) -> ImagemapMessage:
        problems = [
            (("actions", number, "area", *where), message)
            for number, action in enumerate(self.actions)
            for where, message in _area_problems(action.area, self.base_size)
        ]
        if self.video is not None:
            problems += [
                (("video", "area", *where), message)
                for where, message in _area_problems(self.video.area, self.base_size)
            ]
        if problems:
            raise rule_errors(problems)
        return self

    def wire_tagged(self, params: dict[str, str]) -> dict[str, Any]:
        """Return the LINE JSON with UTM tags on every uri action and on the video's external link."""
        body = self.wire()
        for action in body["actions"]:
            if action["type"] == "uri":
                action["linkUri"] = utm.sent_link(action["linkUri"], params)
        external_link = body.get("video", {}).get("externalLink")
        if external_link:
            external_link["linkUri"] = utm.sent_link(external_link["linkUri"], params)
        return body

    def tagging_problems(self, params: dict[str, str]) -> list[tuple[Loc, str]]:
        """List the links that pass LINE's length limit only before UTM tagging."""
        links: list[tuple[Loc, str]] = [
            (("actions", number, "link_uri"), action.link_uri)
            for number, action in enumerate(self.actions)
            if isinstance(action, UriAction)
        ]
        if self.video is not None and self.video.external_link is not None:
            links.append((("video", "external_link", "link_uri"), self.video.external_link.link_uri))
        problems = []
        for loc, link in links:
            length = len(utm.sent_link(without_placeholders(link), params))
            if length > LINK_URI_MAX:
                problems.append((loc, f"{length} characters after UTM tagging, LINE allows {LINK_URI_MAX}"))
        return problems


def _area_problems(area: Area, size: BaseSize) -> list[tuple[Loc, str]]:
    """Say where ``area`` leaves the base image, if it does."""
    problems: list[tuple[Loc, str]] = []
    if area.x + area.width > size.width:
        problems.append(
            (
                ("width",),
                f"x {area.x} + width {area.width} = {area.x + area.width} goes past the "
                f"right edge of the image (base_size.width {size.width})",
            )
        )
    if area.y + area.height > size.height:
        problems.append(
            (
                ("height",),
                f"y {area.y} + height {area.height} = {area.y + area.height} goes past the "
                f"bottom edge of the image (base_size.height {size.height})",
            )
        )
    return problems


Message = Annotated[TextMessage | ImagemapMessage, Field(discriminator="type")]
