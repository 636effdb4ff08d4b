"""The smartphone preview of a campaign: its bundle as LINE shows it, its tagged links, its problems.

Pure HTML, no JavaScript, no external assets except the imagemap's own image (drawn over a placeholder
of the same size, so the layout holds when it does not load). Every text from the campaign file is
escaped. :func:`render_preview` returns a fragment for a page that has its own ``<html>`` (the
Airflow plugin's Campaign tab); :func:`preview_page` a whole document (``python -m line_oa preview``).
Both are well-formed XML as well as HTML, so tests and tools can parse them.

A file whose schema is broken still gets a preview: :func:`preview_file` draws every message that is
valid on its own and marks the others, beside every problem grouped by the product's tabs. Only a
file that cannot be read or parsed as a YAML mapping at all has nothing to draw.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import TypeAdapter, ValidationError

from line_oa.campaign import utm
from line_oa.campaign.messages import ImagemapMessage, Message, TextMessage, UriAction
from line_oa.campaign.model import (
    SECTIONS,
    Campaign,
    DeliverySchedule,
    RecurringSchedule,
    ScheduledSchedule,
    UtmTracking,
    utm_parameters_of,
)
from line_oa.campaign.personalization import bundle_of, sample_renderings
from line_oa.campaign.placeholders import with_tokens
from line_oa.campaign.preview_chat import chat_screen, escape, link
from line_oa.campaign.preview_style import STYLE
from line_oa.campaign.problems import ProblemCollector
from line_oa.campaign.quiet_hours import window_text
from line_oa.campaign.validation import load_yaml, read_campaign_text, validate_campaign_file

if TYPE_CHECKING:
    import os
    import pathlib
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from line_oa.campaign.problems import ValidationReport

TAB_TITLES = {
    "campaign": "Campaign file (id, name, workspace, status)",
    "target_audience": "Target Audience",
    "content": "Campaign Content",
    "delivery_schedule": "Delivery Schedule",
    "activation": "Activation",
    "utm_tracking": "UTM Tracking",
}
"""Heading of each group of problems, in the product's tab order (``Problem.tab`` values)."""


class ProblemLike(Protocol):
    """What the preview reads from a problem (``line_oa.campaign.problems.Problem`` has it)."""

    tab: str
    path: str
    line: int | None
    message: str


@dataclasses.dataclass(frozen=True)
class TaggedLink:
    """A link of the bundle: where it is, as written in the file and as sent (UTM-tagged)."""

    where: str
    original: str
    tagged: str


@dataclasses.dataclass(frozen=True)
class PreviewContent:
    """What the preview draws: the campaign's facts, its messages as LINE's wire JSON, its links.

    ``messages`` holds ``None`` for a message that is not valid on its own (only from a broken file).
    """

    campaign_id: str
    name: str
    workspace: str
    status: str
    sender: str
    schedule: str
    messages: tuple[dict[str, Any] | None, ...]
    links: tuple[TaggedLink, ...]
    quiet_hours: str = ""  # "quiet hours 21:00–09:00 Asia/Tokyo", or empty
    columns: tuple[str, ...] = ()  # the segment columns a personalized bundle reads
    samples: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()  # (sample, ((field, text), ...))

    @classmethod
    def of(cls, campaign: Campaign) -> PreviewContent:
        """Return the preview content of a valid campaign (a personalized one with its placeholders)."""
        params = campaign.utm_parameters()
        bundle = bundle_of(campaign)
        return cls(
            campaign.id,
            campaign.name,
            campaign.workspace,
            campaign.status,
            campaign.content.line_config,
            schedule_text(campaign.delivery_schedule),
            tuple(bundle.as_written()),
            tuple(tagged_links(campaign.content.messages, params)),
            quiet_hours_text(campaign.delivery_schedule),
            tuple(bundle.columns),
            tuple((label, tuple(fields)) for label, fields in sample_renderings(bundle)),
        )

    @classmethod
    def salvage(cls, data: dict[str, Any]) -> PreviewContent:
        """Return what can be drawn of a file whose schema has problems: each message valid on its own."""
        content = _mapping(data.get("content"))
        raw = content.get("messages")
        models = [_valid_message(item) for item in (raw if isinstance(raw, list) else [])]
        try:
            tracking = UtmTracking.model_validate(data.get("utm_tracking") or {})
        except ValidationError:
            tracking = UtmTracking()
        params = utm_parameters_of(str(data.get("id") or ""), str(data.get("name") or ""), tracking)
        try:
            valid_schedule = _schedule(data)
            schedule, quiet = schedule_text(valid_schedule), quiet_hours_text(valid_schedule)
        except ValidationError:
            schedule, quiet = "schedule not valid", ""
        return cls(
            str(data.get("id") or "?"),
            str(data.get("name") or data.get("id") or "Untitled campaign"),
            str(data.get("workspace") or "?"),
            str(data.get("status") or "?"),
            str(content.get("line_config") or "LINE Official Account"),
            schedule,
            tuple(None if model is None else model.wire_tagged(params) for model in models),
            tuple(tagged_links(models, params)),
            quiet,
        )


_MESSAGE = TypeAdapter(Message)
_SCHEDULE = TypeAdapter(DeliverySchedule)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _valid_message(item: Any) -> TextMessage | ImagemapMessage | None:
    try:
        return _MESSAGE.validate_python(item)
    except ValidationError:
        return None


def _schedule(data: dict[str, Any]) -> Any:
    return _SCHEDULE.validate_python(data.get("delivery_schedule"))


def schedule_text(schedule: Any) -> str:
    """Say when the bundle arrives: the chat's day label."""
    if isinstance(schedule, ScheduledSchedule):
        offset = schedule.send_at.strftime("%z")  # +0900
        return f"{schedule.send_at.strftime('%a %d %b %Y %H:%M')} {offset[:3]}:{offset[3:5]}"
    if isinstance(schedule, RecurringSchedule):
        return f"every {schedule.cron} ({schedule.timezone})"
    return "when the campaign is triggered"


def quiet_hours_text(schedule: Any) -> str:
    """Say when the campaign does not send (its own quiet hours), or nothing."""
    window = getattr(schedule, "quiet_hours", None)
    return "" if window is None else window_text(window.start, window.end, window.timezone)


def tagged_links(
    messages: Iterable[TextMessage | ImagemapMessage | None], params: dict[str, str]
) -> list[TaggedLink]:
    """List every link of the messages with its UTM-tagged form, in bundle order (``None`` is skipped)."""
    found: list[TaggedLink] = []
    for number, message in enumerate(messages, start=1):
        if message is None:
            continue
        if isinstance(message, TextMessage):
            text, restore = with_tokens(message.text)  # a placeholder in a link is shown as written
            for start, end in utm.find_urls(text):
                url = text[start:end]
                where = f"message {number} (text)"
                found.append(TaggedLink(where, restore(url), restore(utm.tag_url(url, params))))
            continue
        links = [
            (f"message {number} (imagemap), area {index}", action.link_uri)
            for index, action in enumerate(message.actions, start=1)
            if isinstance(action, UriAction)
        ]
        external = message.video.external_link if message.video else None
        if external is not None:
            links.append((f"message {number} (imagemap), video link", external.link_uri))
        for where, written in links:  # as sent: percent-encoded UTF-8, the domain name included
            url, restore = with_tokens(written)
            found.append(TaggedLink(where, written, restore(utm.sent_link(url, params))))
    return found


def render_preview(
    campaign: Campaign | PreviewContent | None,
    *,
    problems: Iterable[ProblemLike] = (),
    sender_name: str | None = None,
) -> str:
    """Return the preview as an HTML fragment: the phone with the bundle, the tagged links, the problems.

    :param campaign: the campaign (or :meth:`PreviewContent.salvage` of a broken file); ``None`` when
        the file could not be parsed at all: then only the problems are shown.
    :param problems: the validation problems (``ValidationReport.problems``), grouped by tab here.
    :param sender_name: the LINE Official Account's display name for the chat header (default: the
        campaign's ``line_config`` connection id).
    """
    content = PreviewContent.of(campaign) if isinstance(campaign, Campaign) else campaign
    problem_list = list(problems)
    if content is None:
        phone = '<div class="lo-phone"><div class="lo-screen"><div class="lo-chat">'
        phone += '<div class="lo-broken">This campaign file cannot be parsed: nothing to preview.</div>'
        phone += "</div></div></div>"
        side = _problems_section(problem_list)
    else:
        phone = chat_screen(sender_name or content.sender, content.schedule, content.messages)
        draft = content.status == "draft"
        side = _summary(content) + _personalization_section(content) + _links_section(content.links)
        side += _problems_section(problem_list, draft)
    return f'<div class="lo-preview"><style>{STYLE}</style>{phone}<div class="lo-side">{side}</div></div>'


def preview_page(
    campaign: Campaign | PreviewContent | None,
    *,
    problems: Iterable[ProblemLike] = (),
    sender_name: str | None = None,
    title: str | None = None,
) -> str:
    """Return :func:`render_preview` as a whole HTML document (images from ``https:`` only, no scripts)."""
    if title is None:
        name = campaign.name if campaign is not None else "campaign file"
        title = f"Preview: {name}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src https:; style-src 'unsafe-inline'\"/>\n"
        f"<title>{escape(title)}</title>\n</head>\n"
        '<body style="margin: 0; background: #f6f8fa">\n'
        f"{render_preview(campaign, problems=problems, sender_name=sender_name)}\n</body>\n</html>\n"
    )


def _summary(content: PreviewContent) -> str:
    """Return the heading beside the phone: name, id, workspace, status, sender account, schedule."""
    draft = content.status == "draft"
    badge = "draft: will not deliver" if draft else content.status
    return (
        f"<h2>{escape(content.name)}</h2>"
        f'<p class="lo-meta"><code>{escape(content.campaign_id)}</code> &#183; workspace '
        f"<code>{escape(content.workspace)}</code> &#183; "
        f'<span class="lo-badge{" lo-draft" if draft else ""}">{escape(badge)}</span></p>'
        f'<p class="lo-meta">Sender account <code>{escape(content.sender)}</code> &#183; '
        f"sends {escape(content.schedule)}"
        + (f" &#183; not in {escape(content.quiet_hours)}" if content.quiet_hours else "")
        + f" &#183; {len(content.messages)} message(s)</p>"
    )


def _personalization_section(content: PreviewContent) -> str:
    """Return how a personalized bundle is sent, and its sample renderings (nothing when not personalized)."""
    if not content.columns:
        return ""
    columns = ", ".join(f"<code>profile.{escape(column)}</code>" for column in content.columns)
    samples = "".join(
        f"<li>{escape(label)}:<ul>"
        + "".join(f"<li><code>{escape(where)}</code>: {escape(text)}</li>" for where, text in fields)
        + "</ul></li>"
        for label, fields in content.samples
    )
    return (
        '<h3>Personalized</h3><p class="lo-meta">Sent by push, one message per recipient, filled from the '
        f"segment's columns {columns} (a link carries its value percent-encoded). Sample renderings:</p>"
        f'<ul class="lo-samples">{samples}</ul>'
    )


def _links_section(links: Sequence[TaggedLink]) -> str:
    """Return the list of links: where, as written, as sent with UTM tags."""
    if not links:
        return '<h3>Tagged links</h3><p class="lo-meta">No links in this bundle.</p>'
    items = "".join(
        f'<li data-where="{escape(item.where)}">{escape(item.where)}: <code>{escape(item.original)}</code>'
        f"<br/>&#8594; {link(item.tagged)}"
        + (" <i>(unchanged)</i>" if item.original == item.tagged else "")
        + "</li>"
        for item in links
    )
    return f'<h3>Tagged links</h3><ol class="lo-links">{items}</ol>'


def _problems_section(problems: Sequence[ProblemLike], draft: bool = False) -> str:
    """Return the problems under one heading per tab, every tab listed, clean ones ticked."""
    count = len(problems)
    verdict = (
        f'<p class="lo-ok">No problems: {"a draft; set status: launched to deliver" if draft else "ready to launch"}.</p>'
        if not count
        else f'<p class="lo-count">{count} problem{"s" if count != 1 else ""} to fix before launch.</p>'
    )
    groups = []
    for tab, title in TAB_TITLES.items():
        found = [problem for problem in problems if tab_of(problem) == tab]
        state = (
            '<span class="lo-ok">&#10003; no problems</span>'
            if not found
            else f'<span class="lo-count">{len(found)} problem{"s" if len(found) != 1 else ""}</span>'
        )
        items = "".join(
            '<li class="lo-problem">'
            + (f"line {problem.line}: " if problem.line else "")
            + (f"<code>{escape(problem.path)}</code>: " if problem.path else "")
            + f"{escape(problem.message)}</li>"
            for problem in found
        )
        groups.append(
            f'<div class="lo-tab-group" data-tab="{tab}"><p class="lo-tab">{escape(title)} {state}</p>'
            + (f"<ul>{items}</ul>" if items else "")
            + "</div>"
        )
    return f"<h3>Validation</h3>{verdict}{''.join(groups)}"


def tab_of(problem: ProblemLike) -> str:
    """Return the tab a problem belongs to: its path's section, else its own tab, else ``campaign``."""
    section = problem.path.split(".", 1)[0].split("[", 1)[0] if problem.path else ""
    if section in SECTIONS:
        return section
    return problem.tab if problem.tab in TAB_TITLES else "campaign"


@dataclasses.dataclass(frozen=True)
class FilePreview:
    """A campaign file's validation report and what can be drawn of it (``None``: nothing parses)."""

    report: ValidationReport
    content: PreviewContent | None

    def fragment(self, *, sender_name: str | None = None) -> str:
        """Return :func:`render_preview` of this file."""
        return render_preview(self.content, problems=self.report.problems, sender_name=sender_name)

    def page(self, *, sender_name: str | None = None) -> str:
        """Return :func:`preview_page` of this file."""
        return preview_page(self.content, problems=self.report.problems, sender_name=sender_name)


def preview_file(
    path: str | os.PathLike[str], *, now: datetime | None = None, sql_root: pathlib.Path | None = None
) -> FilePreview:
    """Validate the campaign file at ``path`` (as ``validate`` does) and prepare its preview.

    :param now: and :param sql_root: as for :func:`~line_oa.campaign.validation.validate_campaign_file`.
    """
    report = validate_campaign_file(path, now=now, sql_root=sql_root)
    if report.campaign is not None:
        return FilePreview(report, PreviewContent.of(report.campaign))
    text, _ = read_campaign_text(path)
    data = load_yaml(text, ProblemCollector(str(path))) if text is not None else None
    return FilePreview(report, PreviewContent.salvage(data) if isinstance(data, dict) else None)
