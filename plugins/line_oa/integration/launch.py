"""The validate task's body: may this run deliver the campaign now?

Every check that can refuse a launch, in the order a refusal is cheapest: the campaign file, the
trigger's test recipients, the sender account, the recipients the run will reach, LINE's verdict on
the messages and the monthly quota; then, for a real delivery only, the one-off guard, which records
the run in the delivery log.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from line_oa import settings
from line_oa.campaign.model import Retry
from line_oa.campaign.personalization import bundle_of
from line_oa.delivery.answers import TRANSIENT
from line_oa.errors import LineApiError, LineAuthError
from line_oa.integration import pipeline
from line_oa.integration.pipeline import LaunchRefused, TriggerOptions
from line_oa.integration.profile_values import columns_sql, distinct_values_sql
from line_oa.integration.quiet_hours import quiet_hours_note
from line_oa.integration.segment import LINE_USER_ID, count_sql, stream_rows

if TYPE_CHECKING:
    from line_oa.campaign.model import Campaign
    from line_oa.campaign.personalization import Longest, PersonalizedBundle


def validate_for_launch(
    campaign_file: str,
    *,
    run_id: str,
    options: TriggerOptions,
    hook_factory,
    ledger_factory,
    scheduled_run: bool = False,
) -> dict:
    """Run the launch checks; raise ``LaunchRefused`` naming every reason; return the pre-flight facts.

    The one-off guard (``enter_delivery``) comes last, for real deliveries only (not dry runs, not test
    sends), so a launch refused for any other reason records nothing.

    :param scheduled_run: the run was started by the scheduler (its ``run_type`` is ``scheduled``).
    """
    campaign = launchable_campaign(campaign_file)
    check_schedule(campaign, options, scheduled_run=scheduled_run)
    check_test_recipients(options)
    hook = hook_factory(campaign.content.line_config)
    check_sender_account(campaign, hook)
    frequency_cap = decide_frequency_cap(campaign, hook.settings)
    reachable = count_reachable(campaign, options)
    bundle = bundle_of(campaign)
    personal = check_personalization(campaign, bundle)
    facts = preflight(
        hook,
        # a personalized bundle is checked filled with its column names (an empty value may leave a
        # text empty, which LINE would refuse for that recipient only)
        bundle.render({column: column for column in bundle.columns}),
        reachable=reachable,
        mode="push" if bundle.personalized else campaign.content.delivery_mode,
        retry=campaign.activation.retry,
    )
    if not options.is_test:  # test sends carry no unit
        facts["aggregation_unit"] = check_unit_budget(
            hook, campaign.insight_unit, retry=campaign.activation.retry
        )
    hook.close()
    facts["quiet_hours"] = quiet_hours_note(campaign, options, sender=hook.quiet_hours)
    if not facts["fits"] and not options.dry_run and not options.allow_partial_delivery:
        raise LaunchRefused(
            f"quota: {facts['needed']} recipients but only {facts['remaining']} messages left this month "
            "(trigger with allow_partial_delivery=true to send until the quota runs out)"
        )
    if not (options.is_test or options.dry_run):
        # Last: a launch refused for any other reason records nothing.
        enter_delivery(campaign, run_id=run_id, options=options, ledger_factory=ledger_factory)
        record_unit(campaign, run_id=run_id, ledger_factory=ledger_factory)
    return {
        "campaign_id": campaign.id,
        "reachable": reachable,
        "frequency_cap": frequency_cap,
        "personalization": personal,
        **facts,
        "started_at": datetime.now(UTC).isoformat(),
    }


def launchable_campaign(campaign_file: str) -> Campaign:
    """Return the campaign of a file without problems that is not a draft; else raise ``LaunchRefused``.

    ``send_at`` is not checked against the clock here: the schedule decides when the run starts, and
    the scheduler starts it at or a little after ``send_at``, which must not count as "in the past".
    """
    from line_oa.campaign.validation import validate_campaign_file

    report = validate_campaign_file(
        campaign_file, now=datetime(1970, 1, 1, tzinfo=UTC), sql_root=settings.sql_root()
    )
    if not report.ok:
        raise LaunchRefused("campaign file is not launchable:\n" + "\n".join(str(p) for p in report.problems))
    campaign = report.campaign
    if campaign.is_draft:
        raise LaunchRefused(
            f"{campaign.id} is a draft: set status: launched in {campaign_file} to deliver it"
        )
    return campaign


def check_schedule(campaign: Campaign, options: TriggerOptions, *, scheduled_run: bool) -> None:
    """Refuse a manual real delivery of a scheduled or recurring campaign unless ``send_now`` says so.

    A campaign with a schedule delivers in its scheduled runs. A manual trigger may still do a dry run
    or a test send, or deliver now when the Trigger form's ``send_now`` is set.
    """
    schedule = campaign.delivery_schedule
    if (
        schedule.type == "immediate"
        or scheduled_run
        or options.send_now
        or options.dry_run
        or options.is_test
    ):
        return
    if schedule.type == "scheduled":
        when = f"is scheduled to send at {schedule.send_at.isoformat()}"
    else:
        when = f"sends on its schedule (cron {schedule.cron!r}, {schedule.timezone})"
    raise LaunchRefused(
        f"{campaign.id} {when}: a manual trigger does not deliver it; trigger with send_now=true to "
        "deliver now, or with dry_run or test_recipients to try it"
    )


def check_test_recipients(options: TriggerOptions) -> None:
    """Refuse a test send to anything but LINE user ids."""
    bad_test_ids = [uid for uid in options.test_recipients if not LINE_USER_ID.match(uid)]
    if bad_test_ids:
        raise LaunchRefused(f"test_recipients: not LINE user ids (U + 32 hex): {', '.join(bad_test_ids[:5])}")


def check_sender_account(campaign: Campaign, hook) -> None:
    """Refuse a sender account whose connection cannot be read or is not assigned to the campaign's workspace."""
    try:
        channel = hook.settings
        hook.quiet_hours  # noqa: B018 - read now, so that a broken default window refuses the launch
    except Exception as err:
        raise LaunchRefused(
            f"content.line_config: sender account {campaign.content.line_config!r}: {err}"
        ) from None
    if not channel.allows_workspace(campaign.workspace):
        raise LaunchRefused(
            f"content.line_config: sender account {channel.conn_id!r} is not assigned to workspace "
            f"{campaign.workspace!r} (assigned: {', '.join(channel.workspaces) or 'none'})"
        )


def decide_frequency_cap(campaign: Campaign, channel) -> dict | None:
    """Return the run's frequency cap: the campaign file's ``target_audience.frequency_cap``, else the
    sender account's default (connection extra ``frequency_cap``, the same keys), else None."""
    from pydantic import ValidationError

    from line_oa.campaign.model import FrequencyCap

    cap = campaign.target_audience.frequency_cap
    default = getattr(channel, "frequency_cap", None)
    if cap is None and default is not None:
        try:
            cap = FrequencyCap.model_validate(json.loads(default) if isinstance(default, str) else default)
        except (ValidationError, ValueError) as err:
            first = err.errors()[0] if isinstance(err, ValidationError) else {"loc": (), "msg": str(err)}
            where = ".".join(str(part) for part in first["loc"])
            raise LaunchRefused(
                f"content.line_config: sender account {channel.conn_id!r}: extra frequency_cap"
                f"{'.' + where if where else ''}: {first['msg']}"
            ) from None
    return cap.model_dump() if cap is not None else None


def check_personalization(campaign: Campaign, bundle: PersonalizedBundle) -> dict | None:
    """Check a personalized campaign against its segment's data; raise ``LaunchRefused`` naming each problem.

    Every column a placeholder reads must be one the segment query returns (asked with ``LIMIT 0``),
    and the longest values (or defaults) must keep every field within LINE's limits.
    :return: ``{"columns": {placeholder's column: the query's column}, "mode": "push"}``; None when the
        messages are the same for everyone.
    """
    if not bundle.personalized:
        return None
    from line_oa.campaign.personalization import column_problems, length_problems
    from line_oa.campaign.problems import ProblemCollector

    body = pipeline.segment_sql(campaign)
    hook = pipeline.cdp_hook(campaign)
    available = pipeline.run_segment_query(campaign, lambda: query_columns(hook, columns_sql(body)))
    found = {column.lower(): column for column in available}
    file = str(campaign.source_path or campaign.id)
    problems = column_problems(bundle, available, str(campaign.segment_sql_path(settings.sql_root())))
    if not problems:
        longest = {}
        for column in bundle.columns:
            sql = distinct_values_sql(body, found[column.lower()])
            longest[column] = pipeline.run_segment_query(campaign, lambda sql=sql: _longest(hook, sql))
        problems = length_problems(bundle, longest)
    if problems:
        collector = ProblemCollector(file)
        for loc, message in problems:
            collector.add(loc, message)
        raise LaunchRefused(
            "campaign file is not launchable:\n" + "\n".join(str(p) for p in collector.problems)
        )
    return {"columns": {column: found[column.lower()] for column in bundle.columns}, "mode": "push"}


def _longest(hook, sql: str) -> Longest:
    from line_oa.campaign.personalization import Longest

    seen = Longest()
    for (value,) in stream_rows(hook, sql):
        seen.add(value)
    return seen


def query_columns(hook, sql: str) -> list[str]:
    """Return the names of the columns ``sql`` returns (it is run; give it ``LIMIT 0``)."""
    conn = hook.get_conn()
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        return [str(description[0]) for description in cursor.description or ()]
    finally:
        conn.close()


def count_reachable(campaign: Campaign, options: TriggerOptions) -> int:
    """Return how many recipients the run will send to: the test recipients, or the segment's count."""
    if options.is_test:
        return len(set(options.test_recipients))
    # Through the module, so that patching pipeline.cdp_hook sees every statement sent to the CDP.
    sql = count_sql(pipeline.segment_sql(campaign), pipeline.suppression_sqls(campaign))
    first = pipeline.run_segment_query(campaign, lambda: pipeline.cdp_hook(campaign).get_first(sql))
    reachable = int(first[0] or 0)
    if options.max_recipients is not None:
        reachable = min(reachable, options.max_recipients)
    return reachable


def preflight(hook, messages: list[dict], *, reachable: int, mode: str, retry: Retry | None = None) -> dict:
    """Validate the bundle at LINE and compare the recipients with the remaining monthly quota.

    Each call is retried on a transient answer (5xx, rate-limit 429, no answer) with the campaign's
    retry policy; when the policy gives up, the launch is refused as "LINE is unavailable", never as
    a refusal of the messages, which LINE did not judge.

    :param reachable: recipients the run will send to (LINE bills one per recipient reached).
    :param retry: the campaign's ``activation.retry`` (its defaults when not given).
    :return: ``{"quota": ..., "consumption": n, "remaining": n|None, "needed": n, "fits": bool}``.
    """
    call = _retrying(retry or Retry())
    validate = hook.validate_multicast if mode == "multicast" else hook.validate_push
    try:
        call(validate, messages)
        quota = call(hook.get_quota)
        consumption = call(hook.get_quota_consumption)
    except LineAuthError as err:
        raise LaunchRefused(
            f"content.line_config: LINE refused the channel access token of {hook.line_oa_conn_id!r} "
            f"({err.status}: {err.line_message})"
        ) from None
    except _Unavailable as err:
        raise LaunchRefused(
            f"LINE is unavailable, try again: {err.what} failed {err.attempts} time(s), last: {err.last}"
        ) from None
    except LineApiError as err:
        details = "; ".join(f"{d.get('property', '')}: {d.get('message', '')}" for d in err.details)
        raise LaunchRefused(
            f"content: LINE rejected the messages: {err.line_message} {details}".strip()
        ) from None
    remaining = None if quota.get("type") == "none" else max(0, int(quota.get("value", 0)) - consumption)
    return {
        "quota": quota,
        "consumption": consumption,
        "remaining": remaining,
        "needed": reachable,
        "fits": remaining is None or reachable <= remaining,
    }


class _Unavailable(Exception):
    """A pre-flight call still failed transiently when the retry policy gave up."""

    def __init__(self, what: str, attempts: int, last: Exception):
        super().__init__(what)
        self.what, self.attempts = what, attempts
        self.last = f"{last.status} {last.line_message}" if isinstance(last, LineApiError) else str(last)


def _retrying(policy: Retry):
    """Return ``call(function, *args)``: retried on transient errors per ``policy`` (tenacity)."""

    def call(function, *args):
        retrying = Retrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=policy.initial_backoff_seconds,
                max=policy.max_backoff_seconds,
                jitter=policy.initial_backoff_seconds,
            ),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        )
        try:
            return retrying(function, *args)
        except TRANSIENT as err:
            name = getattr(function, "__name__", "call").removeprefix("get_")
            raise _Unavailable(name, retrying.statistics.get("attempt_number", 1), err) from None

    return call


def check_unit_budget(hook, unit: str, *, retry: Retry | None = None) -> str:
    """Refuse a launch whose aggregation unit LINE would drop (monthly budget); return the unit.

    LINE's answers are retried like the other pre-flight calls; when the policy gives up, the launch
    is refused as "LINE is unavailable".
    """
    from line_oa.insights.budget import unit_budget_problem

    try:
        _used, problem = _retrying(retry or Retry())(unit_budget_problem, hook, unit)
    except _Unavailable as err:
        raise LaunchRefused(
            f"LINE is unavailable, try again: the aggregation-unit budget check failed {err.attempts} "
            f"time(s), last: {err.last}"
        ) from None
    if problem:
        raise LaunchRefused(problem)
    return unit


def record_unit(campaign: Campaign, *, run_id: str, ledger_factory) -> None:
    """Record the aggregation unit this real run sends under (the insights DAG asks LINE for it)."""
    from line_oa.insights.store import InsightStore

    ledger = ledger_factory(campaign.id, run_id)
    try:
        store = InsightStore(ledger.hook)
        try:
            store.record_unit(campaign.id, run_id, campaign.insight_unit, datetime.now(UTC))
        finally:
            store.close()
    finally:
        ledger.close()


def enter_delivery(campaign: Campaign, *, run_id: str, options: TriggerOptions, ledger_factory) -> None:
    """Record the run as a real delivery of the campaign, or refuse it: the one-off guard.

    A one-off campaign (immediate or scheduled) is delivered by one real run: a second one is refused
    while an earlier real run is running, suspended or finished, unless ``redeliver`` is set. The same
    run entering again (cleared and resumed) is not a second delivery. Atomic in the delivery log
    (see ``DeliveryLog.enter_delivery``): of two runs launched together, one passes.
    """
    ledger = ledger_factory(campaign.id, run_id)
    try:
        blocking = ledger.enter_delivery(
            one_off=campaign.delivery_schedule.type != "recurring",
            redeliver=options.redeliver,
            workspace=campaign.workspace,
            sender_account=campaign.content.line_config,
        )
    finally:
        ledger.close()
    if blocking is not None:
        raise LaunchRefused(
            f"{campaign.id}: run {blocking} already delivers or delivered this campaign "
            f"(running, suspended or finished); clear {blocking}'s failed tasks to resume it, "
            "or trigger with redeliver=true to send again"
        )
