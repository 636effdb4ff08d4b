"""Render a run's delivery report as one self-contained HTML page.

Pure: no Airflow import, no JavaScript, no network assets; charts are inline SVG and every value that
comes from the campaign or the run is escaped. The page is well-formed XML as well as HTML, so tests
and tools can parse it.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from line_oa.vocabulary import Reason

MAX_CHART_POINTS = 300

NOT_SENT = "not_sent"  # the report's row of recipients still pending or sending (not a reason)
NOT_SENT_HELP = (
    "The run stopped before these recipients were sent (still pending or sending).",
    "Clear the failed push tasks to resume; recipients already sent are not sent again.",
)
UNKNOWN_REASON_HELP = (
    "A reason this report does not describe.",
    "Read the delivery log rows with this reason.",
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 980px; color: #1f2328; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; } .meta code { color: #1f2328; }
.badge { display: inline-block; padding: 0.1rem 0.6rem; border-radius: 1rem; background: #ddf4ff; }
.badge.Finished { background: #dafbe1; } .badge.Suspended { background: #ffebe9; }
.badge.dry { background: #fff8c5; }
.tiles { display: flex; flex-wrap: wrap; gap: 0.8rem; margin-top: 1rem; }
.tile { border: 1px solid #d0d7de; border-radius: 8px; padding: 0.6rem 1rem; min-width: 120px; }
.tile .value { font-size: 1.6rem; font-weight: 600; } .tile .label { color: #57606a; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.4rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }
td.count { text-align: right; white-space: nowrap; }
.phone { background: #8cabd9; padding: 1rem; border-radius: 12px; max-width: 420px; }
.bubble { background: #fff; border-radius: 14px; padding: 0.6rem 0.8rem; margin: 0.5rem 0;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.imagemap { background: #fff; border: 2px dashed #57606a; border-radius: 8px; padding: 0.6rem; margin: 0.5rem 0; }
.imagemap ul { padding-left: 1.2rem; } svg { max-width: 100%; height: auto; }
"""


def render_report_html(
    summary: Mapping[str, Any],
    *,
    send_rate: Sequence[tuple[str, int]],
    messages_preview: Sequence[Mapping],
    insights_html: str = "",
) -> str:
    """Return the delivery report of one run as a complete HTML document.

    :param summary: the summarize task's counts (see the module's tests for the keys).
    :param send_rate: ``(bucket label, recipients sent in that bucket)`` in time order; long series
        are summed into at most :data:`MAX_CHART_POINTS` bars.
    :param messages_preview: the campaign's messages as LINE wire JSON.
    :param insights_html: the "LINE insights" section (``line_oa.insights.section``), escaped already.
    """
    name = str(summary.get("campaign_name") or summary.get("campaign_id") or "campaign")
    title = f"Delivery report: {name} ({summary.get('run_id', '')})"
    sections = [
        _header(summary),
        _tiles(summary),
        _history(summary),
        "<h2>Outcomes</h2>",
        _outcome_chart(summary),
        insights_html,
        "<h2>Send rate</h2>",
        _send_rate_chart(send_rate),
        "<h2>Failures and exclusions</h2>",
        _reasons_table(summary),
        "<h2>Messages</h2>",
        _messages(messages_preview),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def downsample(
    points: Sequence[tuple[str, int]], limit: int = MAX_CHART_POINTS
) -> tuple[list[tuple[str, int]], int]:
    """Sum runs of consecutive buckets so at most ``limit`` remain; return them and the run length.

    Each remaining point keeps the label of its first bucket, and the total is unchanged.
    """
    if limit < 1:
        raise ValueError(f"limit must be 1 or more, got {limit}")
    group = max(1, math.ceil(len(points) / limit))
    if group == 1:
        return [(str(label), int(count)) for label, count in points], 1
    merged = [
        (str(points[start][0]), sum(int(count) for _, count in points[start : start + group]))
        for start in range(0, len(points), group)
    ]
    return merged, group


def _header(summary: Mapping[str, Any]) -> str:
    state = str(summary.get("state", ""))
    dry_run = (
        '<span class="badge dry">dry run: nothing was sent to LINE</span>' if summary.get("dry_run") else ""
    )
    duration = float(summary.get("duration_seconds") or 0)
    throughput = float(summary.get("throughput_per_second") or 0)
    sending = float(summary.get("sending_seconds") or 0)
    sent = int(summary.get("sent") or 0)
    overall = sent / duration if duration else 0.0
    return (
        f"<header>\n<h1>{_e(summary.get('campaign_name', ''))}</h1>\n"
        f'<p class="meta">Campaign <code>{_e(summary.get("campaign_id", ""))}</code> · '
        f"DAG <code>{_e(summary.get('dag_id', ''))}</code> · run <code>{_e(summary.get('run_id', ''))}</code></p>\n"
        f'<p><span class="badge {_e(state)}">{_e(state)}</span> {dry_run}</p>\n'
        f'<p class="meta">Started {_e(summary.get("started_at") or "not started")}, '
        f"finished {_e(summary.get('finished_at') or 'not finished')}.</p>\n"
        f'<p class="meta" id="timing">Run time {duration:,.1f} s (from validation to this summary). '
        f"Recipients were sent during {sending:,.0f} s (the seconds with at least one send, "
        f"read from the delivery log; a suspension does not count) at {throughput:,.1f} recipients/s; {overall:,.1f} recipients/s over "
        f"the whole run time. {_n(summary.get('requests'))} requests to LINE, {_n(summary.get('retries'))} "
        f"retries, {_n(summary.get('test_sends'))} test sends.</p>\n</header>"
    )


def _tiles(summary: Mapping[str, Any]) -> str:
    if summary.get("dry_run"):
        tiles = [
            ("targeted", summary.get("targeted")),
            ("excluded", _total(summary.get("excluded"))),
            ("would send", summary.get("would_send")),
            ("failed", _total(summary.get("failed"))),
        ]
    else:
        tiles = [
            ("targeted", summary.get("targeted")),
            ("excluded", _total(summary.get("excluded"))),
            ("sent", summary.get("sent")),
            # failures a resume sends again count once, under "not sent": the tiles add up to targeted
            ("failed", _total(summary.get("failed")) - int(summary.get("to_resume") or 0)),
            ("not sent", int(summary.get("not_sent") or 0) + int(summary.get("to_resume") or 0)),
            ("messages billed", summary.get("messages_billed")),
        ]
    items = "\n".join(
        f'<div class="tile" id="tile-{_e(label.replace(" ", "-"))}"><div class="value">{_n(value)}</div>'
        f'<div class="label">{_e(label)}</div></div>'
        for label, value in tiles
    )
    return (
        f'<section class="tiles">\n{items}\n</section>'
        + _billing_note(summary)
        + _quiet_hours_note(summary)
        + _personalization_note(summary)
    )


def personalization_text(personal: dict[str, Any]) -> str:
    """Say which columns a personalized run read and how many recipients had no value (the default)."""
    empty = personal.get("empty") or {}
    return "; ".join(
        f"profile.{column}: {empty.get(column, 0):,} recipients without a value got the default"
        for column in personal.get("columns") or []
    )


def quiet_hours_text(hold: Mapping[str, Any]) -> str:
    """Say how long quiet hours held a run: launched inside them, sending from their end."""
    minutes = float(hold.get("seconds") or 0) / 60
    return f"held {minutes:,.1f} min, from the launch at {hold.get('from')} until {hold.get('until')} ({hold.get('note')})"


def _quiet_hours_note(summary: Mapping[str, Any]) -> str:
    hold = summary.get("quiet_hours")
    if not hold:
        return ""
    return (
        f'<p class="meta" id="quiet-hours">Quiet hours: {_e(quiet_hours_text(hold))}. '
        "The run time includes the hold; the sending time does not.</p>"
    )


def _personalization_note(summary: Mapping[str, Any]) -> str:
    """Say that the run was personalized: the columns read, the recipients who got a default."""
    personal = summary.get("personalization")
    if not personal:
        return ""
    return (
        '<p class="meta" id="personalization">Personalized: one message per recipient, sent by push. '
        f"{_e(personalization_text(personal))}.</p>"
    )


def _billing_note(summary: Mapping[str, Any]) -> str:
    """Explain sent vs billed: LINE bills the messages it delivers, not every recipient it accepts."""
    if summary.get("dry_run") or summary.get("test_send"):
        return ""
    sent, billed = int(summary.get("sent") or 0), int(summary.get("messages_billed") or 0)
    return (
        '<p class="meta" id="billing">"Sent" counts recipients LINE accepted a request for. "Messages billed" is '
        "LINE's own consumption figure, read before and after the run: LINE bills one message per recipient it "
        "delivers to (a bundle of up to five messages counts once), so users who blocked the account or are "
        "not its friends are accepted by a multicast but not billed; other sends of the same channel during "
        f"the run are billed too. Here: {_n(sent)} sent, {_n(billed)} billed, difference {_n(sent - billed)}.</p>"
    )


def _history(summary: Mapping[str, Any]) -> str:
    """The run's events: started, suspended (with what was left), resumed, finished."""
    events = summary.get("history") or []
    if not events:
        return ""
    rows = "".join(
        f"<tr><td>{_e(h.get('at'))}</td><td>{_e(h.get('event'))}</td><td>{_e(h.get('detail'))}</td></tr>"
        for h in events
    )
    resumed = sum(1 for h in events if h.get("event") == "resumed")
    suspended = sum(1 for h in events if h.get("event") == "suspended")
    note = f"Suspended {suspended} time(s), resumed {resumed} time(s)." if resumed or suspended else ""
    return (
        f'<h2>History</h2><p class="meta">{_e(note)}</p><table id="history"><thead><tr><th>when</th>'
        f"<th>event</th><th>detail</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _outcome_chart(summary: Mapping[str, Any]) -> str:
    bars = [
        ("sent", int(summary.get("sent") or 0), "#2da44e"),
        ("failed", _total(summary.get("failed")), "#cf222e"),
        ("excluded", _total(summary.get("excluded")), "#8c959f"),
        ("not sent", int(summary.get("not_sent") or 0), "#bf8700"),
    ]
    width, label_width, bar_height, gap = 900, 110, 26, 10
    scale = (width - label_width - 120) / max(1, max(count for _, count, _ in bars))
    height = len(bars) * (bar_height + gap) + gap
    shapes = []
    for row, (label, count, colour) in enumerate(bars):
        y = gap + row * (bar_height + gap)
        length = count * scale
        shapes.append(
            f'<text x="{label_width - 8}" y="{y + 18}" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{colour}"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 18}">{_n(count)}</text>'
        )
    description = ", ".join(f"{label} {_n(count)}" for label, count, _ in bars)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{_e("Outcomes: " + description)}" font-size="14">'
        f"<title>{_e('Outcomes: ' + description)}</title>{''.join(shapes)}</svg>"
    )


def _send_rate_chart(send_rate: Sequence[tuple[str, int]]) -> str:
    points, group = downsample(send_rate)
    if not points:
        return "<p>Nothing was sent in this run, so there is no send rate to show.</p>"
    width, height, left, bottom, top = 900, 260, 60, 40, 20
    plot_width, plot_height = width - left - 10, height - bottom - top
    peak = max(1, max(count for _, count in points))
    slot = plot_width / len(points)
    bars = []
    for position, (label, count) in enumerate(points):
        bar_height = count / peak * plot_height
        bars.append(
            f'<rect x="{left + position * slot:.2f}" y="{top + plot_height - bar_height:.2f}" '
            f'width="{max(slot * 0.85, 0.5):.2f}" height="{bar_height:.2f}" fill="#0969da">'
            f"<title>{_e(label)}: {_n(count)}</title></rect>"
        )
    first, last = points[0][0], points[-1][0]
    axis = (
        f'<line x1="{left}" y1="{top + plot_height}" x2="{width - 10}" y2="{top + plot_height}" stroke="#57606a"/>'
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{_n(peak)}</text>'
        f'<text x="{left - 6}" y="{top + plot_height}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 12}">{_e(first)}</text>'
        f'<text x="{width - 10}" y="{height - 12}" text-anchor="end">{_e(last)}</text>'
    )
    caption = "recipients sent per time bucket"
    if group > 1:
        caption += f"; each bar sums {group} consecutive buckets"
    total = sum(count for _, count in points)
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{_e(f"Send rate: {total:,} recipients from {first} to {last}")}" '
        f'font-size="12">{axis}{"".join(bars)}</svg><figcaption>{_e(caption.capitalize())}.</figcaption></figure>'
    )


def _reasons_table(summary: Mapping[str, Any]) -> str:
    targeted = int(summary.get("targeted") or 0)
    rows = [("excluded", reason, count) for reason, count in _reasons(summary.get("excluded"))]
    rows += [("failed", reason, count) for reason, count in _reasons(summary.get("failed"))]
    rows.sort(key=lambda row: -row[2])
    if int(summary.get("not_sent") or 0):
        rows.append(("not sent", NOT_SENT, int(summary["not_sent"])))
    if not rows:
        return "<p>No recipient failed or was excluded.</p>"
    lines = []
    for outcome, reason, count in rows:
        meaning, action = NOT_SENT_HELP if reason == NOT_SENT else reason_help(reason)
        share = f"{count / targeted:.1%}" if targeted else "–"
        lines.append(
            f'<tr><td>{_e(outcome)}</td><td><code>{_e(reason)}</code></td><td class="count">{_n(count)}</td>'
            f'<td class="count">{_e(share)}</td><td>{_code(meaning)}</td><td>{_code(action)}</td></tr>'
        )
    head = (
        "<tr><th>outcome</th><th>reason</th><th>recipients</th><th>of targeted</th>"
        "<th>what it means</th><th>what to do</th></tr>"
    )
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(lines) + "\n</tbody>\n</table>"


def _messages(messages: Sequence[Mapping]) -> str:
    if not messages:
        return "<p>No message to preview.</p>"
    parts = []
    for number, message in enumerate(messages, start=1):
        kind = str(message.get("type", ""))
        if kind == "text":
            parts.append(
                f'<div class="bubble" title="message {number}: text">{_linkify(str(message.get("text", "")))}</div>'
            )
        elif kind == "imagemap":
            parts.append(_imagemap(number, message))
        else:
            body = json.dumps(message, ensure_ascii=False, indent=2)
            parts.append(f'<div class="bubble">message {number}: {_e(kind)}<pre>{_e(body)}</pre></div>')
    return '<div class="phone">\n' + "\n".join(parts) + "\n</div>"


def _imagemap(number: int, message: Mapping[str, Any]) -> str:
    base_url = str(message.get("baseUrl", ""))
    size = message.get("baseSize") or {}
    actions = []
    for action in message.get("actions") or []:
        area = action.get("area") or {}
        where = f"{area.get('x', 0)},{area.get('y', 0)} {area.get('width', 0)}×{area.get('height', 0)}"
        kind = str(action.get("type", ""))
        if kind == "uri":
            target = _link(str(action.get("linkUri", "")))
        elif kind == "message":
            target = f"sends “{_e(action.get('text', ''))}”"
        elif kind == "clipboard":
            target = f"copies “{_e(action.get('clipboardText', ''))}”"
        else:
            target = _e(json.dumps(action, ensure_ascii=False))
        label = f" ({_e(action['label'])})" if action.get("label") else ""
        actions.append(f"<li>{_e(kind)} at {_e(where)}{label}: {target}</li>")
    action_list = f"<ul>{''.join(actions)}</ul>" if actions else "<p>No action areas.</p>"
    return (
        f'<div class="imagemap" title="message {number}: imagemap">'
        f"<strong>Imagemap</strong> {_e(size.get('width', '?'))}×{_e(size.get('height', '?'))}: "
        f"{_e(message.get('altText', ''))}<br/>image: {_link(base_url + '/1040')}{action_list}</div>"
    )


_URL = re.compile(r"https?://[^\s<>\"']+")


def _linkify(text: str) -> str:
    """Escape ``text`` and turn its http(s) URLs into links."""
    pieces, position = [], 0
    for match in _URL.finditer(text):
        url = match.group().rstrip(".,;:!?)")  # sentence punctuation after a URL is not part of it
        pieces.append(_e(text[position : match.start()]))
        pieces.append(_link(url))
        position = match.start() + len(url)
    pieces.append(_e(text[position:]))
    return "".join(pieces)


def _link(url: str) -> str:
    """Return a link for an http(s) URL; any other scheme (``line:``, ``tel:``...) is shown, not linked."""
    if re.match(r"https?://", url, flags=re.IGNORECASE):
        return f'<a href="{_e(url)}" rel="noopener noreferrer">{_e(url)}</a>'
    return f"<code>{_e(url)}</code>"


def reason_help(reason: str) -> tuple[str, str]:
    """Return what a reason means and what to do about it (``line_oa.vocabulary.Reason``)."""
    try:
        known = Reason(reason)
    except ValueError:
        return UNKNOWN_REASON_HELP
    return known.meaning, known.what_to_do


def _code(text: str) -> str:
    """Escape ``text`` and show its `backticked` names as code."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return _e(text)
    return "".join(f"<code>{_e(part)}</code>" if index % 2 else _e(part) for index, part in enumerate(parts))


def _reasons(counts: object) -> list[tuple[str, int]]:
    if not isinstance(counts, Mapping):
        return []
    return [(str(reason), int(count)) for reason, count in counts.items() if int(count or 0)]


def _total(counts: object) -> int:
    if isinstance(counts, Mapping):
        return sum(int(count or 0) for count in counts.values())
    return int(counts or 0)  # type: ignore[call-overload]


def _n(value: object) -> str:
    return f"{int(value or 0):,}"  # type: ignore[call-overload]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
