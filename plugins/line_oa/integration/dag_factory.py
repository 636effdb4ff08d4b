"""Render campaign files into Airflow DAGs: validate → extract_segment → chunk_profiles → push → summarize.

This is the one module of the library that knows about DAGs; the tasks only call ``line_oa.integration.pipeline``
and ``LineOAPushOperator``. Parsing touches neither the network nor a database: it reads YAML files.
"""

from __future__ import annotations

import logging
import math
import pathlib
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from line_oa import settings
from line_oa.campaign.loading import load_campaign
from line_oa.campaign.personalization import is_personalized
from line_oa.delivery.client import DEFAULT_MULTICAST_RATE_LIMIT, DEFAULT_PUSH_RATE_LIMIT
from line_oa.delivery.plan import MULTICAST_MAX_RECIPIENTS
from line_oa.errors import CampaignFileError, LineOAError
from line_oa.integration.collector import collecting_young_objects_only
from line_oa.integration.dag_docs import describe, trigger_params
from line_oa.integration.operators import LineOAPushOperator
from line_oa.integration.quiet_hours import QuietHoursOperator

if TYPE_CHECKING:
    from line_oa.campaign.model import Campaign

log = logging.getLogger(__name__)
DAG_PREFIX = "line_campaign__"
DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
PUSH_TIMEOUT_SAFETY = 3  # the time to send a chunk at full rate, times this
PUSH_TIMEOUT_MARGIN = timedelta(minutes=10)  # start-up, log writes, a claim, LINE's latency


def push_task_timeout(campaign: Campaign) -> timedelta:
    """Return the ``execution_timeout`` of a campaign's push tasks: a chunk task may hang, never forever.

    ``sending × PUSH_TIMEOUT_SAFETY + backoff + PUSH_TIMEOUT_MARGIN`` where

    - *sending* is the time to send one chunk (``activation.chunk_size`` rows) at the campaign's rate:
      ``push`` sends one request per row at LINE's push limit (2,000/s); ``multicast`` and ``auto``
      send one request per 500 rows at LINE's multicast limit (200/s); ``activation.rate_limit_per_second``,
      when set, caps that rate (the engine never goes above LINE's limit, whatever the cap);
    - *backoff* is the retry policy's worst-case wait for one request: the sum of its exponential waits
      (``initial_backoff_seconds × 2^n``, each at most ``max_backoff_seconds``) over ``max_attempts``.

    Computed at parse time from the campaign file alone (no connection is read): a channel's rate shared
    by several concurrent senders, or a chunk grown past ``chunk_size`` because the segment needs more
    than 512 chunks, is left to the safety factor and the margin. A push task that times out fails and
    is retried; the retry sends only the rows that are not final, with their keys.
    """
    activation = campaign.activation
    rows = activation.chunk_size
    if campaign.content.delivery_mode == "push" or is_personalized(campaign.content):
        requests, limit = rows, DEFAULT_PUSH_RATE_LIMIT
    else:
        requests, limit = math.ceil(rows / MULTICAST_MAX_RECIPIENTS), DEFAULT_MULTICAST_RATE_LIMIT
    cap = activation.rate_limit_per_second
    rate = min(limit, cap) if cap else limit
    retry = activation.retry
    backoff = sum(
        min(retry.max_backoff_seconds, retry.initial_backoff_seconds * 2**wait)
        for wait in range(retry.max_attempts - 1)
    )
    seconds = math.ceil(requests / rate * PUSH_TIMEOUT_SAFETY + backoff)
    return timedelta(seconds=seconds) + PUSH_TIMEOUT_MARGIN


def channel_pool(line_config: str) -> str | None:
    """Return the pool shared by every campaign's push tasks on one sender account, when enabled.

    With ``[line_oa] channel_pools`` on, push tasks run in pool ``line_oa__<connection id>`` (create it
    with as many slots as the connection's ``concurrent_senders``), so campaigns on one LINE channel
    share its rate limit; otherwise they use Airflow's default pool.
    """
    if not settings.channel_pools():
        return None
    return f"line_oa__{line_config}"


def schedule_args(campaign: Campaign) -> dict[str, Any]:
    """Return ``schedule``, ``start_date`` and ``end_date`` for the campaign's delivery schedule."""
    schedule = campaign.delivery_schedule
    if campaign.is_draft:
        # A draft refuses to deliver: a schedule would only show a next run that fails.
        return {"schedule": None, "start_date": DEFAULT_START}
    if schedule.type == "scheduled":
        # An events timetable, not start_date=send_at: the DAG stays triggerable before send_at
        # (test sends, dry runs), and the scheduler still starts exactly one run at send_at.
        import pendulum
        from airflow.timetables.events import EventsTimetable

        send_at = pendulum.instance(schedule.send_at)
        timetable = EventsTimetable([send_at], description=f"once at {send_at.isoformat()}")
        return {"schedule": timetable, "start_date": DEFAULT_START}
    if schedule.type == "recurring":
        from airflow.timetables.trigger import CronTriggerTimetable

        return {
            "schedule": CronTriggerTimetable(schedule.cron, timezone=schedule.timezone),
            "start_date": schedule.start_at or DEFAULT_START,
            "end_date": schedule.end_at,
        }
    return {"schedule": None, "start_date": DEFAULT_START}


def build_campaign_dag(campaign: Campaign) -> DAG:
    """Return the delivery DAG of one campaign."""
    campaign_file = str(campaign.source_path)
    with DAG(
        dag_id=campaign.dag_id,
        dag_display_name=campaign.name,
        description=f"LINE campaign: {campaign.name}"[:200],
        doc_md=describe(campaign),
        tags=["line", "campaign", campaign.workspace],
        max_active_runs=1,
        catchup=False,
        params=trigger_params(),
        default_args={"owner": campaign.owner, "retries": 2, "retry_delay": timedelta(seconds=15)},
        **schedule_args(campaign),
    ) as dag:
        for kind, label in RUN_KIND_TASKS.items():
            run_kind_marker.override(task_id=f"kind_{kind}", task_display_name=label)(kind)
        # Refusals raise AirflowFailException, which is never retried; retries cover infrastructure
        # failures (a task killed before it ran, an API timeout). Both tasks are idempotent.
        validation = validate(campaign_file)
        # Between validate and the segment: a held run extracts when the window ends (today's opt-outs),
        # and waits deferred, in the triggerer. The push tasks check again right before sending.
        quiet = QuietHoursOperator(
            task_id="quiet_hours", task_display_name="wait out quiet hours", campaign_file=campaign_file
        )
        segment = extract_segment(campaign_file, validation)
        validation >> quiet >> segment
        chunks = chunk_profiles(campaign_file, segment)
        pool = channel_pool(campaign.content.line_config)
        pushed = LineOAPushOperator.partial(
            task_id="push",
            **({"pool": pool} if pool else {}),
            campaign_file=campaign_file,
            dry_run="{{ params.dry_run }}",
            max_active_tis_per_dagrun=1,
            retries=3,
            retry_delay=timedelta(seconds=settings.push_retry_delay()),
            execution_timeout=push_task_timeout(campaign),
        ).expand(chunk=chunks)
        pushed >> summarize.override(trigger_rule=TriggerRule.ALL_DONE)(campaign_file)
    return dag


def _context() -> tuple[dict[str, Any], Any]:
    from line_oa.integration.pipeline import TriggerOptions

    context = get_current_context()
    return context, TriggerOptions.from_params(dict(context["params"]))


def _run_type(context: dict[str, Any]) -> str:
    """Return the run's ``run_type`` as text: ``manual``, ``scheduled``, ``backfill``..."""
    run_type = getattr(context.get("dag_run"), "run_type", "")
    return str(getattr(run_type, "value", run_type) or "")


def _ledger(campaign_id: str, run_id: str):
    from line_oa.delivery_log.store import DeliveryLog

    return DeliveryLog.connect(campaign_id=campaign_id, run_id=run_id)


def _line_hook(conn_id: str):
    from line_oa.integration.hooks import LineOAHook

    return LineOAHook(line_oa_conn_id=conn_id)


RUN_KIND_TASKS = {"delivery": "real delivery", "dry_run": "dry run", "test_send": "test send"}


@task(retries=0)
def run_kind_marker(kind: str) -> str:
    """Succeed when the run is of this kind, else skip: the grid shows each run's kind in one row."""
    from airflow.sdk.exceptions import AirflowSkipException

    from line_oa.campaign.states import run_kind

    context, _ = _context()
    actual = run_kind(dict(context["params"]))
    if ("delivery" if actual.is_real else actual.name.lower()) != kind:
        raise AirflowSkipException(f"this run is a {actual.value}")
    log.info("this run is a %s", actual.value)
    return actual.value


@task
@collecting_young_objects_only
def validate(campaign_file: str) -> dict[str, Any]:
    """Check the campaign is ready to launch: schema, LINE rules, sender account, segment, quota."""
    from line_oa.integration.launch import validate_for_launch
    from line_oa.integration.pipeline import LaunchRefused

    context, options = _context()
    try:
        facts = validate_for_launch(
            campaign_file,
            run_id=context["run_id"],
            options=options,
            hook_factory=_line_hook,
            ledger_factory=_ledger,
            scheduled_run=_run_type(context) == "scheduled",
        )
    except (LaunchRefused, CampaignFileError) as err:
        raise AirflowFailException(f"not launched: {err}") from None
    log.info(
        "ready: %d reachable recipients, quota %s, %s left this month%s",
        facts["reachable"], facts["quota"].get("type"), facts["remaining"] if facts["remaining"] is not None else "no limit",
        " (dry run)" if options.dry_run else "",
    )  # fmt: skip
    if facts.get("quiet_hours"):
        log.info("%s", facts["quiet_hours"])
    return facts


@task
@collecting_young_objects_only
def extract_segment(campaign_file: str, validation: dict[str, Any]) -> dict[str, Any]:
    """Stream the segment from the CDP; log exclusions; stage the eligible recipients."""
    from line_oa.integration import pipeline, segment
    from line_oa.integration.frequency_cap import FrequencyCheck

    context, options = _context()
    campaign = load_campaign(campaign_file)
    ledger = _ledger(campaign.id, context["run_id"])
    frequency = None
    # a personalized campaign's columns: {placeholder's name: the column as the segment query returns it}
    personal = (validation.get("personalization") or {}).get("columns") or {}
    try:
        if options.is_test:  # test sends are exempt from frequency caps, and never counted
            rows = sorted(segment.rows_for_test_send(options.test_recipients), key=lambda r: r[1])
        else:
            frequency = FrequencyCheck.for_run(
                campaign, ledger, real=not options.dry_run, validation=validation
            )
            suppressions = pipeline.suppression_sqls(campaign)
            sql = segment.wrap_segment_sql(
                pipeline.segment_sql(campaign), suppressions, list(personal.values())
            )
            rows = pipeline.run_segment_query(
                campaign, lambda: segment.stream_rows(pipeline.cdp_hook(campaign), sql)
            )
        result = segment.extract_segment(
            rows=rows,
            ledger=ledger,
            staging_dir=pipeline.run_staging_uri(campaign.id, context["run_id"]),
            max_recipients=options.max_recipients,
            is_test=options.is_test,
            frequency=frequency,
            value_columns=list(personal),
        )
    finally:
        ledger.close()
    log.info(
        "segment: %d profiles, %d eligible, excluded %s, failed %s",
        result.profiles, result.eligible, dict(result.excluded) or "none", dict(result.failed) or "none",
    )  # fmt: skip
    return result.to_dict()


@task
@collecting_young_objects_only
def chunk_profiles(campaign_file: str, segment: dict[str, Any]) -> list[dict[str, Any]]:
    """Write chunk files of eligible recipients and register them as pending in the delivery log."""
    from line_oa.integration.pipeline import RowCountMismatch
    from line_oa.integration.pipeline import chunk_profiles as make_chunks

    context, _ = _context()
    campaign = load_campaign(campaign_file)
    ledger = _ledger(campaign.id, context["run_id"])
    try:
        chunks = make_chunks(segment, campaign=campaign, ledger=ledger)
    except RowCountMismatch as err:
        raise AirflowFailException(str(err)) from None  # the log will not change by retrying
    finally:
        ledger.close()
    log.info("%d chunks of up to %d recipients", len(chunks), max((c["rows"] for c in chunks), default=0))
    return chunks


@task
@collecting_young_objects_only
def summarize(campaign_file: str) -> dict[str, Any]:
    """Count the run from the delivery log, log the summary block, write the summary row and report."""
    from line_oa.integration.summary import summarize_run, summary_block

    context, options = _context()
    campaign = load_campaign(campaign_file)
    ti = context["ti"]
    validation = ti.xcom_pull(task_ids="validate")
    pushed = ti.xcom_pull(task_ids="push", default=None)
    push_results = [r for r in (pushed if isinstance(pushed, list) else [pushed]) if isinstance(r, dict)]
    started = validation is not None and ti.xcom_pull(task_ids="chunk_profiles") is not None
    consumption = None
    if validation is not None and not options.dry_run:
        try:
            hook = _line_hook(campaign.content.line_config)
            consumption = hook.get_quota_consumption()
            hook.close()
        except LineOAError as err:
            log.warning("could not read LINE's quota consumption: %s", err)
    ledger = _ledger(campaign.id, context["run_id"])
    try:
        summary = summarize_run(
            campaign,
            ledger=ledger,
            options=options,
            validation=validation,
            push_results=push_results,
            delivery_incomplete=not started,
            consumption_now=consumption,
            segment=ti.xcom_pull(task_ids="extract_segment", default=None),
            quiet_hours=ti.xcom_pull(task_ids="quiet_hours", default=None),
        )
    finally:
        ledger.close()
    log.info("delivery summary\n%s", summary_block(summary))
    if summary["state"] == "Suspended":
        raise AirflowFailException(
            f"campaign suspended: {summary['sent']} sent, {summary['not_sent']} not yet sent, failed {summary['failed']}"
            + ("" if started else " (delivery did not start: see the validate task's log)")
        )
    return summary


def _broken_campaign_dag(path: pathlib.Path, error: str) -> DAG:
    """Return a placeholder DAG that shows a broken campaign file's error in the UI and fails when run."""
    stem = re.sub(r"[^a-z0-9_-]", "_", path.stem.lower()) or "unnamed"
    with DAG(
        dag_id=f"{DAG_PREFIX}{stem}",
        description=f"INVALID campaign file {path.name}",
        doc_md=f"# Invalid campaign file `{path.name}`\n\n```\n{error}\n```\nFix the file; this DAG never sends.",
        tags=["line", "campaign", "invalid"],
        schedule=None,
        start_date=DEFAULT_START,
        catchup=False,
    ) as dag:

        @task(task_id="report_invalid_campaign_file", retries=0)
        def report_invalid() -> None:
            raise AirflowFailException(f"{path.name} is not a valid campaign file:\n{error}")

        report_invalid()
    return dag


def _render_one(path: pathlib.Path, dags: dict[str, DAG]) -> str | None:
    """Add the DAG of one campaign file to ``dags``; return the error text instead when it cannot be."""
    try:
        campaign = load_campaign(path)
    except LineOAError as err:
        return str(err)
    if campaign.dag_id in dags:
        return f"{path.name}: campaign id {campaign.id!r} is used by another file"
    try:
        dags[campaign.dag_id] = build_campaign_dag(campaign)
    except Exception as err:  # one file must never hide the others, whatever went wrong
        return f"{path.name}: the DAG could not be built: {type(err).__name__}: {err}"
    return None


def _parsing_for_task() -> str | None:
    """Return the DAG id whose task this process runs, or None when parsing for the DAG processor."""
    try:
        from airflow.sdk import get_parsing_context
    except ImportError:  # pragma: no cover - Airflow before 3.0
        return None
    return get_parsing_context().dag_id


def _files_to_render(directory: pathlib.Path, running_task_of: str | None) -> list[pathlib.Path]:
    """Every campaign file for the DAG processor; in a task process only the file of its own DAG.

    A campaign's id is its file's name (validation refuses anything else), so the DAG
    ``line_campaign__<id>`` comes from ``<id>.yaml``; a task process then builds one DAG, not every
    campaign's (Airflow's parsing context, as its docs recommend for generated DAGs). A task of any
    other DAG (``line_campaign_insights``, a user's own) builds none: it never needs a campaign's.
    """
    if running_task_of is not None and not running_task_of.startswith(DAG_PREFIX):
        return []
    if running_task_of is not None:
        own = directory / f"{running_task_of.removeprefix(DAG_PREFIX)}.yaml"
        if own.is_file():
            return [own]
    return sorted(directory.glob("*.yaml"))


def build_campaign_dags(
    campaigns_dir: pathlib.Path | str | None = None, *, strict: bool | None = None
) -> tuple[dict[str, DAG], dict[str, str]]:
    """Render every ``*.yaml`` in ``campaigns_dir`` (sorted) into a DAG.

    A broken file never hides the others: it becomes a placeholder DAG showing its error, and the
    error is logged with the file name. Under ``strict`` (or ``[line_oa] strict_dags``, as in CI) any
    broken file raises instead, so the loader shows an import error.

    :return: (DAGs by id, error text by file name).
    """
    directory = pathlib.Path(campaigns_dir or settings.campaigns_dir())
    strict = settings.strict_dags() if strict is None else strict
    dags: dict[str, DAG] = {}
    errors: dict[str, str] = {}
    running_task_of = _parsing_for_task()
    for path in _files_to_render(directory, running_task_of):
        error = _render_one(path, dags)
        if error is not None:
            errors[path.name] = error
            placeholder = _broken_campaign_dag(path, error)
            dags.setdefault(placeholder.dag_id, placeholder)
            if running_task_of in (None, placeholder.dag_id):
                # Once, by the DAG processor (and in the broken file's own task), not in the log of
                # every task of every other campaign, which parses this folder too.
                log.error("campaign file %s is invalid and will not deliver:\n%s", path, error)
    if strict and errors:
        raise LineOAError(
            "invalid campaign files:\n" + "\n".join(f"{name}: {err}" for name, err in errors.items())
        )
    return dags, errors
