"""Show a campaign's LINE figures: an HTML section for the delivery report, and plain text for a terminal.

Pure and escaped like the rest of the report (well-formed XML, inline SVG, no script).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from line_oa.insights.figures import CampaignFigures, DayFigures

NOT_COLLECTED = (
    "LINE's impressions and clicks have not been collected yet: the line_campaign_insights DAG fetches "
    "them daily for 14 days after sending (LINE computes them from the day after)."
)
CHART_WIDTH, CHART_HEIGHT, MARGIN = 640, 220, 40


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def insights_html(figures: CampaignFigures | None) -> str:
    """Return the report's "LINE insights" section (a note when nothing was collected yet)."""
    if figures is None:
        return f'<h2>LINE insights</h2>\n<p class="meta">{_e(NOT_COLLECTED)}</p>'
    tiles = [
        ("Delivered", f"{figures.delivered:,}"),
        ("Unique impressions", figures.unique_impressions.shown),
        ("Open rate", figures.open_rate),
        ("Unique clicks", figures.unique_clicks.shown),
    ]
    tile_html = "".join(
        f'<div class="tile"><div class="value">{_e(value)}</div><div class="label">{_e(label)}</div></div>'
        for label, value in tiles
    )
    rows = (
        "".join(
            f'<tr><td>{_e(link.url)}</td><td class="count">{_e(link.clicks.shown)}</td>'
            f'<td class="count">{_e(link.unique_clicks.shown)}</td>'
            f'<td class="count">{_e(link.unique_clicks.share_of(figures.delivered))}</td></tr>'
            for link in figures.links
        )
        or '<tr><td colspan="4">No links in the messages.</td></tr>'
    )
    return "\n".join(
        [
            "<h2>LINE insights</h2>",
            f'<p class="meta">Unit <code>{_e(figures.unit)}</code>, sends of {_e(figures.date_from)} to '
            f"{_e(figures.date_to)} (UTC+9), as of {_e(figures.as_of_day)}, fetched {_e(figures.fetched_at)}. "
            "LINE withholds values under 20 users.</p>",
            f'<div class="tiles">{tile_html}</div>',
            "<h3>Clicks per link (UTM parameters removed)</h3>",
            "<table><tr><th>link</th><th>clicks</th><th>unique clicks</th><th>click-through</th></tr>"
            f"{rows}</table>",
            "<h3>Over the days since sending</h3>",
            days_chart(figures.series),
        ]
    )


def days_chart(series: list[DayFigures]) -> str:
    """Return an inline SVG of unique impressions and clicks per collection day (withheld: no point)."""
    values = [v for day in series for v in (day.unique_impressions, day.unique_clicks) if v is not None]
    top = max(values, default=0) or 1
    span = max((day.days_since_sending for day in series), default=0) or 1
    width, height = CHART_WIDTH - 2 * MARGIN, CHART_HEIGHT - 2 * MARGIN

    def point(day: DayFigures, value: int) -> str:
        x = MARGIN + width * day.days_since_sending / span
        y = MARGIN + height * (1 - value / top)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        'role="img" aria-label="unique impressions and clicks over the days since sending">',
        f'<line x1="{MARGIN}" y1="{MARGIN + height}" x2="{MARGIN + width}" y2="{MARGIN + height}" stroke="#57606a"/>',
        f'<text x="{MARGIN}" y="{CHART_HEIGHT - 8}" font-size="12">days since sending</text>',
        f'<text x="4" y="{MARGIN - 8}" font-size="12">{top:,}</text>',
    ]
    for name, colour in (("unique_impressions", "#06c755"), ("unique_clicks", "#0969da")):
        points = [point(day, getattr(day, name)) for day in series if getattr(day, name) is not None]
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'
            )
            parts += [
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{colour}"/>'
                for p in points
            ]
    for day in series:
        x = MARGIN + width * day.days_since_sending / span
        parts.append(
            f'<text x="{x:.1f}" y="{MARGIN + height + 16}" font-size="11" text-anchor="middle">'
            f"{day.days_since_sending}</text>"
        )
    parts.append(
        f'<text x="{MARGIN + width - 190}" y="16" font-size="12" fill="#06c755">unique impressions</text>'
        f'<text x="{MARGIN + width - 60}" y="16" font-size="12" fill="#0969da">unique clicks</text></svg>'
    )
    return "\n".join(parts)


def insights_text(figures: CampaignFigures | None, campaign_id: str) -> str:
    """Return the same figures as plain text for ``python -m line_oa insights``."""
    if figures is None:
        return f"{campaign_id}: {NOT_COLLECTED}"
    lines = [
        f"{figures.campaign_id} (unit {figures.unit}), sends of {figures.date_from}-{figures.date_to} (UTC+9), "
        f"as of {figures.as_of_day}",
        f"  delivered:          {figures.delivered:,}",
        f"  unique impressions: {figures.unique_impressions.shown} (open rate {figures.open_rate})",
        f"  unique clicks:      {figures.unique_clicks.shown}",
        "  clicks per link (UTM parameters removed): clicks / unique clicks / click-through",
    ]
    lines += [
        f"    {link.url}: {link.clicks.shown} / {link.unique_clicks.shown} / "
        f"{link.unique_clicks.share_of(figures.delivered)}"
        for link in figures.links
    ] or ["    (no links)"]
    lines.append("  over the days since sending: day, unique impressions, unique clicks")
    lines += [
        f"    {day.days_since_sending:>3} ({day.as_of_day}): "
        f"{_count(day.unique_impressions)}, {_count(day.unique_clicks)}"
        for day in figures.series
    ]
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "fewer than 20" if value is None else f"{value:,}"
