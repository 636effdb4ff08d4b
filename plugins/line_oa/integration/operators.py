"""LineOAPushOperator: deliver one staged chunk of one campaign run, exactly once per recipient."""

from __future__ import annotations

import functools
import json
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from line_oa.campaign.personalization import bundle_of
from line_oa.delivery.chunk import ChunkRecipients, deliver_chunk
from line_oa.delivery.ratelimit import channel_share
from line_oa.delivery.results import RetryPolicy
from line_oa.delivery_log.store import DeliveryLog
from line_oa.integration.collector import young_objects_only
from line_oa.integration.hooks import LineOAHook
from line_oa.vocabulary import Reason

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from line_oa.campaign.model import Campaign
    from line_oa.campaign.personalization import PersonalizedBundle
    from line_oa.delivery.engine import DeliveryEngine
    from line_oa.delivery.results import ChunkResult

# Campaign-wide stops: retrying the task cannot help until someone acts (token, quota).
CAMPAIGN_STOPS = (Reason.AUTH_FAILED, Reason.QUOTA_EXCEEDED)


class LineOAPushOperator(BaseOperator):
    """Send a campaign's message bundle to the recipients of one chunk file and log every outcome.

    A retried or cleared task instance sends only the chunk's rows that are not final yet, with the
    retry keys they were first sent with, so LINE refuses anything it already accepted.

    :param campaign_file: path of the campaign YAML file (its messages, mode and retry policy).
    :param chunk: the chunk descriptor from ``chunk_profiles`` (``{"index", "uri", "rows"}``).
    :param run_id: the delivery scope in the log; defaults to the DAG run's id.
    :param line_oa_conn_id: the sender account's connection; defaults to the campaign's ``line_config``.
    :param ledger_conn_id: the delivery log's SQL connection (``line_oa_ledger``, else SQLite).
    :param dry_run: log what would be sent and send nothing (``"{{ params.dry_run }}"`` works).
    :param is_test: a test send: rows are flagged and kept out of the campaign's counts.
    :param concurrent_senders: chunk tasks of this channel that may send at once; the channel's rate
        limit is divided among them (default: the connection's ``concurrent_senders`` extra, else 1).
    """

    template_fields: Sequence[str] = (
        "campaign_file", "chunk", "run_id", "line_oa_conn_id", "ledger_conn_id", "dry_run",
    )  # fmt: skip
    ui_color = "#06c755"

    def __init__(
        self,
        *,
        campaign_file: str,
        chunk: dict[str, Any] | str,
        run_id: str = "{{ run_id }}",
        line_oa_conn_id: str | None = None,
        ledger_conn_id: str | None = None,
        is_test: bool = False,
        dry_run: bool | str = False,
        concurrent_senders: int | None = None,
        max_in_flight: int = 128,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.campaign_file = campaign_file
        self.chunk = chunk
        self.run_id = run_id
        self.line_oa_conn_id = line_oa_conn_id
        self.ledger_conn_id = ledger_conn_id
        self.is_test = is_test
        self.dry_run = dry_run
        self.concurrent_senders = concurrent_senders
        self.max_in_flight = max_in_flight
        self.progress_interval = progress_interval
        self._engine: DeliveryEngine | None = None

    @cached_property
    def campaign(self) -> Campaign:
        """Load the campaign file (read in ``execute``, after templating)."""
        from line_oa.campaign.loading import load_campaign

        return load_campaign(self.campaign_file)

    @cached_property
    def hook(self) -> LineOAHook:
        """Return the LINE hook of the sender account: ``line_oa_conn_id``, else the campaign's ``line_config``."""
        return LineOAHook(line_oa_conn_id=self.line_oa_conn_id or self.campaign.content.line_config)

    def execute(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Send the chunk's rows that are not final yet; return the chunk's summary (its XCom).

        Inside the campaign's quiet hours a real delivery sends nothing: the task defers until they end
        and then runs ``execute`` again (``event`` is the trigger's, unused).
        """
        campaign = self.campaign
        chunk = self.chunk if isinstance(self.chunk, dict) else json.loads(self.chunk)
        recipients = ChunkRecipients(int(chunk["rows"]), functools.partial(read_chunk_file, chunk))
        if str(self.dry_run).lower() in ("true", "1"):
            return self._dry_run(chunk, recipients.count)
        self._wait_out_quiet_hours(context, chunk)
        options = self._sending_options(chunk, recipients)
        ledger = DeliveryLog.connect(self.ledger_conn_id, campaign_id=campaign.id, run_id=self.run_id)
        try:
            with young_objects_only():  # the chunk's rows and requests, not Airflow's objects
                result = deliver_chunk(
                    ledger=ledger, chunk_index=int(chunk["index"]), recipients=recipients, **options
                )
        finally:
            ledger.close()
            self.hook.close()
        summary = result.to_dict()
        self.log.info(
            "chunk %d done: %d sent now, %d already final, failed %s, %d requests (%d retries), %.1fs, %.0f/s",
            summary["chunk_index"], summary["sent"], summary["already_final"], summary["failed"] or "none",
            summary["requests"], summary["retries"], summary["duration_seconds"], summary["recipients_per_second"],
        )  # fmt: skip
        raise_if_stopped(result)
        return summary

    def _wait_out_quiet_hours(self, context: Context, chunk: dict[str, Any]) -> None:
        """Defer, sending nothing, while a real delivery is inside the campaign's quiet hours."""
        from line_oa.integration.pipeline import TriggerOptions
        from line_oa.integration.quiet_hours import defer_until, held_until, quiet_hours_note

        if self.is_test or chunk.get("is_test"):
            return
        options = TriggerOptions.from_params(dict(context.get("params") or {}))
        sender = self.hook.quiet_hours
        resumes = held_until(self.campaign, options, sender=sender)
        if resumes is not None:
            self.log.info(
                "chunk %d: %s; nothing sent, waiting in the triggerer",
                chunk["index"], quiet_hours_note(self.campaign, options, sender=sender),
            )  # fmt: skip
            defer_until(self, resumes)

    def _dry_run(self, chunk: dict[str, Any], count: int) -> dict[str, Any]:
        self.log.info(
            "chunk %d: dry run, %d recipients would be sent to; nothing sent", chunk["index"], count
        )
        return {"chunk_index": chunk["index"], "total": count, "sent": 0, "dry_run": True}

    def _sending_options(self, chunk: dict[str, Any], recipients: ChunkRecipients) -> dict[str, Any]:
        """Return what ``deliver_chunk`` needs besides the chunk: messages, mode, rates, retries, progress."""
        campaign = self.campaign
        rates = self._rates()
        self.log.info(
            "chunk %d: %d recipients, mode %s, rates %.0f push/s %.0f multicast/s via %s",
            chunk["index"], recipients.count, campaign.content.delivery_mode, rates["push"], rates["multicast"],
            self.hook.settings.conn_id,
        )  # fmt: skip
        retry = campaign.activation.retry
        is_test = self.is_test or bool(chunk.get("is_test"))
        bundle = bundle_of(campaign)
        return {
            "client_factory": lambda: self.hook.async_client(max_in_flight=self.max_in_flight),
            "messages": bundle.render(None),
            "mode": "push" if bundle.personalized else campaign.content.delivery_mode,
            "personalize": personalizer(bundle, chunk) if bundle.personalized else None,
            "policy": RetryPolicy(
                retry.max_attempts, retry.initial_backoff_seconds, retry.max_backoff_seconds
            ),
            "rates": rates,
            "is_test": is_test,
            "notification_disabled": campaign.content.notification_disabled,
            # Test sends carry no unit: they must not count in the campaign's LINE statistics.
            "aggregation_unit": None if is_test else self._run_unit(campaign.id),
            "max_in_flight": self.max_in_flight,
            "progress": functools.partial(self._log_progress, total=recipients.count),
            "progress_interval": self.progress_interval,
            "on_engine": self._keep_engine,
        }

    def _run_unit(self, campaign_id: str) -> str | None:
        """Return the unit recorded for this run by its validate task, read once per task.

        Not the campaign file's current unit: a resumed run's requests must carry the body their first
        attempt carried. A run validated before units were recorded sends none, as it did then.
        """
        from line_oa.insights.store import InsightStore

        store = InsightStore.connect(self.ledger_conn_id)
        try:
            return store.run_unit(campaign_id, self.run_id)
        finally:
            store.close()

    def _rates(self) -> dict[str, float]:
        """Return this task's share of the channel's push and multicast limits, capped by the campaign."""
        channel = self.hook.settings
        senders = self.concurrent_senders or channel.concurrent_senders
        cap = self.campaign.activation.rate_limit_per_second
        return {
            "push": channel_share(channel.push_rate_limit, concurrent_senders=senders, cap=cap),
            "multicast": channel_share(channel.multicast_rate_limit, concurrent_senders=senders, cap=cap),
        }

    def _log_progress(self, stats: dict[str, Any], *, total: int) -> None:
        done = stats["sent"] + sum(stats["failed"].values())
        speed = stats["recipients_per_second"] or 0.0
        eta = (stats["total"] - done) / speed if speed else float("nan")
        self.log.info(
            "chunk %d: %d/%d sent, %.0f/s, ETA %.0fs, failed %s",
            stats["chunk_index"], stats["sent"], total, speed, eta, stats["failed"] or "none",
        )  # fmt: skip

    def _keep_engine(self, engine: DeliveryEngine) -> None:
        self._engine = engine

    def on_kill(self) -> None:
        """Stop sending: in-flight requests finish, their outcomes and the rest are logged."""
        if self._engine is not None:
            self._engine.request_stop(Reason.STOPPED)


def read_chunk_file(chunk: dict[str, Any]) -> list[tuple[str, str]]:
    """Read a chunk file's rows; Arrow is imported only here, when a push task must read its file."""
    from line_oa.integration.chunks import read_chunk

    return read_chunk(chunk)


def personalizer(bundle: PersonalizedBundle, chunk: dict[str, Any]):
    """Return ``row -> messages`` filling the bundle with the row's values staged in the chunk file.

    The values come from the chunk file written before the first send, so a retried or resumed task
    renders the same body for the same key. A row without values (a test send) gets the defaults.
    """
    from line_oa.integration.chunks import read_chunk_values

    staged = read_chunk_values(chunk)

    def render(row) -> list[dict]:
        text = staged.get(row.profile_id)
        return bundle.render(json.loads(text) if text else None)

    return render


def raise_if_stopped(result: ChunkResult) -> None:
    """Raise what the chunk's end means for the task, if any of its rows is left unsent.

    A campaign-wide stop (token, quota) fails the task without retries: someone must act first. A stop
    by ``on_kill``, or rows still failing after the retry policy, fail the attempt, so that the task's
    retry or a clear sends them again with the same keys.
    """
    stop = result.stopped_reason
    if stop in CAMPAIGN_STOPS:
        raise AirflowFailException(
            f"chunk {result.chunk_index}: delivery stopped ({stop}): {stop.meaning} {stop.what_to_do} "
            "Unsent recipients are recorded and will be sent when the run is cleared and resumed."
        )
    if stop:  # on_kill: the task must not end as a success with rows unsent
        raise RuntimeError(
            f"chunk {result.chunk_index}: delivery stopped ({stop}) with "
            f"{result.failed.get(stop, 0)} recipients not sent: {stop.meaning} {stop.what_to_do}"
        )
    if result.failed.get(Reason.RETRIES_EXHAUSTED):
        raise RuntimeError(
            f"chunk {result.chunk_index}: {result.failed[Reason.RETRIES_EXHAUSTED]} recipients still failing "
            "after the retry policy; the task's retry will send them again with the same keys"
        )
