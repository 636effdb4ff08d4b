"""Draw a message bundle as LINE shows it on a smartphone: the chat screen and one bubble per message.

The bubbles are drawn from LINE's wire JSON (``Campaign.wire_messages()``), so the preview shows what
LINE receives: links already carry their UTM tags and emoji indexes point into the tagged text. Every
text that comes from the campaign file goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from line_oa.campaign import utm
from line_oa.campaign.preview_style import IMAGEMAP_WIDTH

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

LINKABLE_SCHEMES = ("http:", "https:", "line:", "tel:")
_CSS_UNSAFE = {'"': "%22", "'": "%27", "(": "%28", ")": "%29", "\\": "%5C", " ": "%20"}


def escape(value: object) -> str:
    """Escape any value for HTML text or a double-quoted attribute."""
    return html.escape(str(value), quote=True)


def link(url: str, text: str | None = None, *, css_class: str = "") -> str:
    """Return an ``<a>`` that opens ``url`` in a new tab, or plain text for a scheme LINE does not open."""
    shown = escape(url if text is None else text)
    if not url.lower().startswith(LINKABLE_SCHEMES):
        return f'<span class="{css_class}">{shown}</span>' if css_class else shown
    classes = f' class="{css_class}"' if css_class else ""
    return f'<a{classes} href="{escape(url)}" target="_blank" rel="noopener noreferrer">{shown}</a>'


def chat_screen(sender: str, day_label: str, messages: Sequence[Mapping[str, Any] | None]) -> str:
    """Return the phone: status bar, chat header with the sender's name, the bubbles in order.

    :param messages: LINE wire JSON of each message; ``None`` for a message that cannot be drawn
        (the page lists its problems).
    """
    rows = [_row(sender, number, message) for number, message in enumerate(messages)]
    return (
        '<div class="lo-phone"><div class="lo-screen">'
        '<div class="lo-statusbar"><span>10:00</span><span>&#9679;&#9679;&#9679;&#9679; 5G &#9646;</span></div>'
        '<div class="lo-chat-header"><span class="lo-back">&#8249;</span>'
        f'<span class="lo-official" title="LINE Official Account">&#10004;</span>'
        f'<span class="lo-chat-title">{escape(sender)}</span></div>'
        f'<div class="lo-chat"><div class="lo-day"><span>{escape(day_label)}</span></div>'
        f"{''.join(rows)}</div></div></div>"
    )


def _row(sender: str, number: int, message: Mapping[str, Any] | None) -> str:
    """Return one chat row: the account's avatar and name on the first bubble, then the bubble."""
    first = number == 0
    initial = escape((sender.strip()[:1] or "?").upper())
    avatar = f'<div class="lo-avatar">{initial}</div>' if first else '<div class="lo-avatar lo-hidden"></div>'
    name = f'<div class="lo-sender">{escape(sender)}</div>' if first else ""
    kind = "invalid" if message is None else escape(message.get("type"))
    if message is None:
        body = (
            f'<div class="lo-broken">Message {number + 1} cannot be shown: '
            "see its problems under Campaign Content.</div>"
        )
    elif message.get("type") == "text":
        body = text_bubble(message)
    elif message.get("type") == "imagemap":
        body = imagemap_bubble(message, number)
    else:
        body = f'<div class="lo-broken">Message {number + 1}: type {kind} is not drawn by the preview</div>'
    return (
        f'<div class="lo-row" data-message="{number + 1}" data-type="{kind}">'
        f'{avatar}<div class="lo-message">{name}{body}</div></div>'
    )


def text_bubble(message: Mapping[str, Any]) -> str:
    """Return a text bubble: links clickable, each LINE emoji ``$`` drawn as a chip naming the emoji."""
    text: str = message["text"]
    emoji_at = {emoji["index"]: emoji for emoji in message.get("emojis") or []}
    pieces: list[tuple[int, int, str]] = [
        (start, end, link(text[start:end])) for start, end in utm.find_urls(text)
    ]
    offset = 0  # LINE counts emoji indexes in UTF-16 code units
    for position, character in enumerate(text):
        if character == "$" and offset in emoji_at:
            pieces.append((position, position + 1, emoji_chip(emoji_at[offset])))
        offset += 2 if ord(character) > 0xFFFF else 1
    out, cursor = [], 0
    for start, end, piece in sorted(pieces):
        out += [escape(text[cursor:start]), piece]
        cursor = end
    out.append(escape(text[cursor:]))
    return f'<div class="lo-bubble lo-text">{"".join(out)}</div>'


def emoji_chip(emoji: Mapping[str, Any]) -> str:
    """Return the chip drawn in place of a LINE emoji: a face, the product id's start and the emoji id."""
    product, emoji_id = str(emoji.get("productId", "")), str(emoji.get("emojiId", ""))
    short = escape(product) if len(product) <= 8 else escape(product[:6]) + "&#8230;"
    return (
        f'<span class="lo-emoji" title="LINE emoji {escape(product)}/{escape(emoji_id)}" '
        f'data-product-id="{escape(product)}" data-emoji-id="{escape(emoji_id)}">'
        f"&#9786; {short}/"
        f"{escape(emoji_id)}</span>"
    )


def imagemap_size(message: Mapping[str, Any]) -> tuple[int, float]:
    """Return the width and height the imagemap is drawn at: :data:`IMAGEMAP_WIDTH` wide, ``base_size``'s ratio."""
    size = message["baseSize"]
    return IMAGEMAP_WIDTH, round(IMAGEMAP_WIDTH * size["height"] / size["width"], 2)


def imagemap_bubble(message: Mapping[str, Any], number: int) -> str:
    """Return the imagemap at its aspect ratio, its tappable areas outlined and labelled, video marked.

    The image is a CSS background over a striped placeholder of the same size: when the image does not
    load (offline, not yet uploaded) the placeholder and the areas keep the layout.
    """
    size = message["baseSize"]
    width, height = imagemap_size(message)
    image_url = "".join(_CSS_UNSAFE.get(character, character) for character in f"{message['baseUrl']}/1040")
    areas = [_action_area(action, index, size) for index, action in enumerate(message["actions"])]
    if message.get("video"):
        areas.append(_video_area(message["video"], size))
    return (
        f'<div class="lo-imagemap" data-message="{number + 1}" data-base-width="{size["width"]}" '
        f'data-base-height="{size["height"]}" style="width: {width}px; height: {height}px">'
        f'<div class="lo-placeholder">image {size["width"]} &#215; {size["height"]}</div>'
        f'<div class="lo-image" style="background-image: url(&quot;{escape(image_url)}&quot;)"></div>'
        f"{''.join(areas)}</div>"
        f'<div class="lo-caption">Imagemap &#183; alt text: {escape(message["altText"])}<br/>'
        f"image {escape(message['baseUrl'])}/1040</div>"
    )


def _box(area: Mapping[str, int], size: Mapping[str, int]) -> str:
    """Return the CSS that places ``area`` (pixels of the base image) on the drawn image, in percent."""
    return (
        f"left: {100 * area['x'] / size['width']:.4g}%; top: {100 * area['y'] / size['height']:.4g}%; "
        f"width: {100 * area['width'] / size['width']:.4g}%; "
        f"height: {100 * area['height'] / size['height']:.4g}%"
    )


def _action_area(action: Mapping[str, Any], index: int, size: Mapping[str, int]) -> str:
    """Return one tappable area: a link for a ``uri`` action, a box saying what a ``message`` action sends."""
    label = f"<b>{index + 1}</b> {escape(action['label'])}" if action.get("label") else f"<b>{index + 1}</b>"
    data = f'data-action="{escape(action["type"])}" data-area="{index + 1}"'
    if action["type"] == "uri":
        target = action["linkUri"]
        inner = (
            f'<span class="lo-area-label">{label}<span class="lo-action">opens {escape(target)}</span></span>'
        )
        if target.lower().startswith(LINKABLE_SCHEMES):
            return (
                f'<a class="lo-area lo-uri-area" {data} style="{_box(action["area"], size)}" '
                f'href="{escape(target)}" target="_blank" rel="noopener noreferrer" '
                f'title="{escape(target)}">{inner}</a>'
            )
        return f'<div class="lo-area lo-uri-area" {data} style="{_box(action["area"], size)}">{inner}</div>'
    text = action.get("text", "")
    return (
        f'<div class="lo-area lo-message-area" {data} style="{_box(action["area"], size)}" '
        f'title="sends: {escape(text)}"><span class="lo-area-label">{label}'
        f'<span class="lo-action">sends &#8220;{escape(text)}&#8221;</span></span></div>'
    )


def _video_area(video: Mapping[str, Any], size: Mapping[str, int]) -> str:
    """Return the video's area: dashed, a play mark, the external link shown after it plays."""
    external = video.get("externalLink")
    after = ""
    if external:
        after = f" then {escape(external['label'])}: {escape(external['linkUri'])}"
    return (
        f'<div class="lo-area lo-video" data-action="video" style="{_box(video["area"], size)}" '
        f'title="video {escape(video["originalContentUrl"])}">'
        f'<span class="lo-area-label"><b>Video</b><span class="lo-action">plays '
        f"{escape(video['originalContentUrl'])}{after}</span></span>"
        '<span class="lo-play">&#9654;</span></div>'
    )
