"""The ``line_campaign_insights`` DAG: collect LINE's impressions and clicks of recent campaigns daily.

find_campaigns ─▶ collect[campaign] (mapped, one at a time) ─▶ refresh_reports

- ``find_campaigns``: the campaigns with real sends in the 14 days before the run's date (LINE updates
  a message's figures for 14 days), each with the unit its runs recorded, the period (UTC+9) and the
  sender account;
- ``collect``: one statistics request per campaign through ``LineOAHook``, 429s waited out with
  exponential backoff, rows upserted into the statistics table. LINE allows 60 insight requests an hour
  per channel: the tasks run one at a time (``max_active_tis_per_dag=1``, one run at a time), in the pool
  ``line_oa_insights`` when ``[line_oa] channel_pools`` is on;
- ``refresh_reports``: each collected campaign's latest delivery report is rendered again with them.

The run's date is its logical date (now for a manual run without one): a run for a past day collects
the figures as LINE has them up to that day.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSkipException

from line_oa import settings

log = logging.getLogger(__name__)

INSIGHTS_DAG_ID = "line_campaign_insights"
INSIGHTS_POOL = "line_oa_insights"
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_CONN_ID = "line_oa_default"


def _as_of(context: dict[str, Any]) -> datetime:
    when = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
    return when or datetime.now(UTC)


def campaign_facts(campaign_id: str) -> tuple[str, str]:
    """Return a campaign's unit and sender account from its file (defaults when the file is gone)."""
    from line_oa.campaign.loading import load_campaign
    from line_oa.campaign.units import unit_for_campaign
    from line_oa.errors import CampaignFileError

    path = settings.campaigns_dir() / f"{campaign_id}.yaml"
    try:
        campaign = load_campaign(path)
    except (CampaignFileError, OSError) as err:
        log.warning(
            "%s: campaign file unusable (%s); using the derived unit and %s", path, err, DEFAULT_CONN_ID
        )
        return unit_for_campaign(campaign_id), DEFAULT_CONN_ID
    return campaign.insight_unit, campaign.content.line_config


@task
def find_campaigns() -> list[dict[str, str]]:
    """List one statistics request per campaign with real sends in the last 14 days."""
    from line_oa.insights.collect import fetches_due
    from line_oa.insights.store import InsightStore

    as_of = _as_of(get_current_context())
    facts: dict[str, tuple[str, str]] = {}

    def facts_of(campaign_id: str) -> tuple[str, str]:
        if campaign_id not in facts:
            facts[campaign_id] = campaign_facts(campaign_id)
        return facts[campaign_id]

    store = InsightStore.connect()
    try:
        fetches = fetches_due(store, as_of=as_of, unit_of=lambda campaign_id: facts_of(campaign_id)[0])
    finally:
        store.close()
    log.info("as of %s: %d campaigns sent in the last 14 days", as_of.isoformat(), len(fetches))
    return [{**fetch.to_dict(), "line_config": facts_of(fetch.campaign_id)[1]} for fetch in fetches]


@task
def collect(target: dict[str, str]) -> dict[str, Any]:
    """Fetch one campaign's statistics from LINE and upsert them (no duplicate rows on a re-run)."""
    from line_oa.insights.collect import Backoff
    from line_oa.insights.collect import collect as collect_one
    from line_oa.insights.periods import Fetch
    from line_oa.insights.store import InsightStore
    from line_oa.integration.hooks import LineOAHook

    params = get_current_context()["params"]
    backoff = Backoff(initial_seconds=float(params["backoff_seconds"]))
    fetch = Fetch(
        **{key: target[key] for key in ("campaign_id", "unit", "date_from", "date_to", "as_of_day")}
    )
    hook = LineOAHook(line_oa_conn_id=target["line_config"])
    try:
        hook.settings  # noqa: B018 - resolves the connection now
    except AirflowNotFoundException:
        # a sender account removed since the delivery: nothing to ask LINE with; the others go on
        raise AirflowSkipException(
            f"{target['campaign_id']}: sender account connection {target['line_config']!r} is not "
            "defined any more; LINE's figures of this campaign cannot be collected"
        ) from None
    store = InsightStore.connect()
    try:
        return collect_one(hook, store, fetch, backoff=backoff)
    finally:
        store.close()
        hook.close()


@task
def refresh_reports(outcomes: list[dict[str, Any]]) -> list[str]:
    """Render each collected campaign's latest delivery report again, with its LINE figures."""
    from line_oa.integration.insights_report import refresh_report

    paths = []
    for outcome in outcomes[:] if outcomes else []:
        if outcome and outcome.get("status") == "stored":  # a skipped collect has no outcome
            path = refresh_report(outcome["campaign_id"])
            if path is not None:
                log.info("%s: report %s", outcome["campaign_id"], path)
                paths.append(str(path))
    return paths


def build_insights_dag() -> DAG:
    """Return the ``line_campaign_insights`` DAG (daily; trigger it to collect now)."""
    with DAG(
        dag_id=INSIGHTS_DAG_ID,
        description="Collect LINE's impressions and clicks of campaigns sent in the last 14 days",
        doc_md=__doc__,
        schedule="@daily",
        start_date=DEFAULT_START,
        catchup=False,
        max_active_runs=1,
        tags=["line", "insights"],
        params={
            "backoff_seconds": Param(
                60,
                type="number",
                minimum=0,
                title="Backoff after a 429",
                description="Seconds to wait after LINE's rate limit (429) before asking again; doubles.",
            ),
        },  # fmt: skip
        default_args={"owner": "marketing", "retries": 2, "retry_delay": timedelta(minutes=5)},
    ) as dag:
        pool = {"pool": INSIGHTS_POOL} if settings.channel_pools() else {}
        outcomes = collect.override(max_active_tis_per_dag=1, **pool).expand(target=find_campaigns())
        refresh_reports.override(trigger_rule=TriggerRule.NONE_FAILED)(outcomes)
    return dag
