"""HTML of the campaign pages: the campaigns list, a campaign's tab and a run's Delivery tab.

Plain server-rendered HTML with inline CSS, shown inside the Airflow UI (external views are iframes).
Every value from a campaign file, the delivery log or Airflow is escaped.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from line_oa.campaign.states import STATE_MEANINGS, CampaignState, RunKind

if TYPE_CHECKING:
    from datetime import datetime

    from line_oa.ui.data import CampaignEntry, Reach, RunView

PREFIX = "/line-campaigns"
STATE_COLOURS = {
    "Draft": "#6e7781",
    "Planned": "#0969da",
    "Active": "#8250df",
    "Finished": "#1a7f37",
    "Suspended": "#cf222e",
    "Invalid": "#9a6700",
}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.muted{color:#656d76;font-size:12px} .problem{color:#cf222e} .note{color:#9a6700}
form.filters{margin:0 0 12px;display:flex;gap:8px;align-items:center}
.bar{background:#eaeef2;border-radius:4px;height:14px;width:100%;max-width:480px;overflow:hidden}
.bar>div{background:#1a7f37;height:14px}
.kind{font-weight:700;font-size:15px} a{color:#0969da}
.grid{display:grid;grid-template-columns:auto 1fr;gap:2px 16px;max-width:720px}
iframe.report{width:100%;height:1400px;border:1px solid #d0d7de}
.tiles{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0} .tile{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px}
.tile .value{font-size:20px;font-weight:600} .tile .label,.meta{color:#656d76;font-size:12px}
"""


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, refresh_seconds: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}<title>{e(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )


def state_badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#6e7781")
    meaning = STATE_MEANINGS.get(CampaignState(state)) if state in CampaignState._value2member_map_ else ""
    return f'<span class="state" style="background:{colour}" title="{e(meaning)}">{e(state)}</span>'


def _counts_cell(counts: dict[str, Any] | None) -> str:
    if not counts:
        return '<span class="muted">no delivery yet</span>'
    failed = sum(counts.get("failed", {}).values())
    left = int(counts.get("not_sent") or 0) + int(counts.get("to_resume") or 0)
    text = f"{counts.get('sent', 0):,} sent · {failed:,} failed · {sum(counts.get('excluded', {}).values()):,} excluded"
    return e(text + (f" · {left:,} not yet sent" if left else ""))


def _schedule_text(entry: CampaignEntry) -> str:
    schedule = entry.campaign.delivery_schedule
    if schedule.type == "scheduled":
        return f"once at {schedule.send_at.isoformat()}"
    if schedule.type == "recurring":
        return f"cron {schedule.cron} ({schedule.timezone})"
    return "when triggered"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="minutes") if moment else "—"


def campaigns_page(entries: list[CampaignEntry], *, workspaces: list[str], workspace: str, state: str) -> str:
    """Return the "LINE campaigns" page: one row per campaign file, filterable by workspace and state."""
    options_ws = "".join(
        f'<option value="{e(w)}"{" selected" if w == workspace else ""}>{e(w)}</option>' for w in workspaces
    )
    states = [*STATE_COLOURS]
    options_state = "".join(
        f'<option value="{e(s)}"{" selected" if s == state else ""}>{e(s)}</option>' for s in states
    )
    filters = (
        f'<form class="filters" method="get" action="{PREFIX}/campaigns">'
        f'<label>Workspace <select name="workspace"><option value="">all</option>{options_ws}</select></label>'
        f'<label>State <select name="state"><option value="">all</option>{options_state}</select></label>'
        '<button type="submit">Filter</button></form>'
    )
    rows = [
        "<tr><th>Campaign</th><th>State</th><th>Schedule · next send</th><th>Sender account</th>"
        "<th>Workspace</th><th>Segment</th><th>Latest delivery</th><th>Problems</th><th>Links</th></tr>"
    ]
    for entry in entries:
        rows.append(_campaign_row(entry))
    if len(rows) == 1:
        rows.append('<tr><td colspan="9" class="muted">no campaign matches</td></tr>')
    return page(
        "LINE campaigns",
        f'<h1>LINE campaigns</h1>{filters}<table id="campaigns">{"".join(rows)}</table>'
        f'<p class="muted">{len(entries)} campaign(s). States: '
        + " · ".join(f"<b>{e(s.value)}</b> {e(m)}" for s, m in STATE_MEANINGS.items())
        + "</p>",
    )


def _campaign_row(entry: CampaignEntry) -> str:
    dag = quote(entry.dag_id)
    links = (
        f'<a href="/dags/{dag}" target="_top">DAG</a> · <a href="{PREFIX}/dags/{dag}/campaign">preview</a>'
    )
    if entry.campaign is None:
        return (
            f'<tr data-campaign="{e(entry.path.stem)}"><td>{e(entry.path.name)}</td><td>{state_badge("Invalid")}</td>'
            f'<td colspan="5" class="problem">{e(entry.error)}</td><td class="num">1</td><td>{links}</td></tr>'
        )
    campaign = entry.campaign
    if entry.latest_run_id:
        run = quote(entry.latest_run_id, safe="")
        links += f' · <a href="{PREFIX}/dags/{dag}/runs/{run}/delivery">latest report</a>'
    notes = "".join(f'<div class="note">{e(n)}</div>' for n in entry.notes)
    problems = "".join(f'<div class="problem">{e(p)}</div>' for p in entry.problems[:3])
    more = len(entry.problems) - 3
    problems += f'<div class="muted">and {more} more</div>' if more > 0 else ""
    return (
        f'<tr data-campaign="{e(campaign.id)}"><td><b>{e(campaign.name)}</b><div class="muted">{e(campaign.id)}</div></td>'
        f'<td class="state-cell">{state_badge(entry.state)}{notes}</td>'
        f'<td>{e(_schedule_text(entry))}<div class="muted">next: {e(_when(entry.next_run))}</div></td>'
        f"<td>{e(campaign.content.line_config)}</td><td>{e(campaign.workspace)}</td>"
        f"<td>{e(campaign.target_audience.parent_segment)}/{e(campaign.target_audience.segment)}</td>"
        f"<td>{_counts_cell(entry.latest_counts)}</td>"
        f"<td>{problems or '<span class=muted>none</span>'}</td><td>{links}</td></tr>"
    )


def campaign_tab(entry: CampaignEntry, preview_html: str, reach: Reach | None) -> str:
    """Return the Campaign tab: state, the smartphone preview, problems and the reach estimate."""
    if entry.campaign is None:
        return page(
            entry.path.name,
            f'<h1>{e(entry.path.name)}</h1>{state_badge("Invalid")}<pre class="problem">{e(entry.error)}</pre>',
        )
    campaign = entry.campaign
    notes = "".join(f'<div class="note">{e(n)}</div>' for n in entry.notes)
    header = (
        f"<h1>{e(campaign.name)} {state_badge(entry.state)}</h1>{notes}"
        f'<p class="muted">{e(campaign.id)} · workspace {e(campaign.workspace)} · sender account '
        f"{e(campaign.content.line_config)} · {e(_schedule_text(entry))} · next send {e(_when(entry.next_run))}</p>"
    )
    return page(campaign.name, header + preview_html + reach_section(entry, reach))


def reach_section(entry: CampaignEntry, reach: Reach | None) -> str:
    action = f"{PREFIX}/dags/{quote(entry.dag_id)}/campaign"
    if reach is None:
        return (
            '<h2>Reach estimate</h2><p class="muted">Runs the segment SQL now and reads the sender '
            f'account\'s quota (for users who may trigger the campaign).</p><form method="post" '
            f'action="{e(action)}"><button type="submit" id="estimate">Estimate reach</button></form>'
        )
    lines = [("profiles in the segment", reach.profiles)]
    lines += [(f"not reached: {reason}", count) for reason, count in sorted(reach.by_reason.items())]
    lines.append(("effective reach (messages LINE bills: one per recipient)", reach.effective))
    if reach.quota_type is not None:
        lines.append(
            ("remaining quota this month", "no limit" if reach.remaining is None else reach.remaining)
        )
    cells = "".join(
        f"<tr><td>{e(label)}</td><td class=num>{value:,}</td></tr>"
        if isinstance(value, int)
        else f"<tr><td>{e(label)}</td><td class=num>{e(value)}</td></tr>"
        for label, value in lines
    )
    verdict = ""
    if reach.fits is False:
        verdict = f'<p class="problem">The quota cannot cover {reach.effective:,} recipients.</p>'
    elif reach.fits:
        verdict = "<p>The remaining quota covers every recipient.</p>"
    error = f'<p class="note">{e(reach.error)}</p>' if reach.error else ""
    return f'<h2>Reach estimate</h2><table id="reach" style="max-width:640px">{cells}</table>{verdict}{error}'


KIND_TEXT = {
    RunKind.DELIVERY: "Real delivery",
    RunKind.REDELIVERY: "Redelivery (recipients may get the messages a second time)",
    RunKind.DRY_RUN: "Dry run: nothing is sent",
    RunKind.TEST_SEND: "Test send: only the listed test recipients",
}


def delivery_tab(entry: CampaignEntry, view: RunView) -> str:
    """Return the Delivery tab of a run: its kind, live progress from the log, then its report."""
    counts = view.counts
    running = view.airflow_state in ("queued", "running")
    share = (view.done / view.total) if view.total else (1.0 if not running else 0.0)
    failures = (
        "".join(
            f"<tr><td>{e(reason)}</td><td class=num>{count:,}</td></tr>"
            for reason, count in sorted(counts["failed"].items())
        )
        or '<tr><td colspan="2" class="muted">none</td></tr>'
    )
    eta = f"{view.eta_seconds:,.0f} s" if view.eta_seconds is not None else "—"
    progress = (
        f'<div class="grid" id="progress"><span>Airflow state</span><b>{e(view.airflow_state)}</b>'
        f'<span>done / to do</span><b id="done">{view.done:,} / {view.total:,}</b>'
        f'<span>sent</span><b id="sent">{counts["sent"]:,}</b>'
        f"<span>rate</span><span>{view.rate_per_second:,.0f} recipients/s (last seconds that sent)</span>"
        f"<span>ETA</span><span>{e(eta)}</span>"
        f"<span>excluded</span><span>{sum(counts['excluded'].values()):,}</span></div>"
        f'<div class="bar"><div style="width:{share * 100:.1f}%"></div></div>'
        f'<h2>Failures by reason</h2><table style="max-width:480px">{failures}</table>'
    )
    history = ""
    if view.history:
        items = "".join(
            f"<tr><td>{e(h['at'])}</td><td>{e(h['event'])}</td><td>{e(h['detail'])}</td></tr>"
            for h in view.history
        )
        history = f'<h2>History of this run</h2><table id="history" style="max-width:720px">{items}</table>'
    report = ""
    if view.report_html:
        report = f'<h2>Report</h2><iframe class="report" sandbox="" srcdoc="{e(view.report_html)}"></iframe>'
    elif not running:
        report = '<p class="muted">No report: the run has not been summarized.</p>'
    body = (
        f"<h1>{e(entry.name)} · run {e(view.run_id)}</h1>"
        f'<p class="kind" id="kind">{e(KIND_TEXT[view.kind])}</p>{progress}{history}{report}'
    )
    return page(f"{entry.name} — {view.run_id}", body, refresh_seconds=5 if running else None)


def message_section(title: str, text: str) -> str:
    return f'<h2>{e(title)}</h2><p class="muted">{e(text)}</p>'


def message_page(title: str, text: str) -> str:
    return page(title, f"<h1>{e(title)}</h1><p>{e(text)}</p>")
