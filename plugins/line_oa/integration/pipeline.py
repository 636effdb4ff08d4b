"""What each task of a campaign DAG does, as plain functions the DAG factory wires into tasks.

validate → extract_segment → chunk_profiles → push (mapped, ``LineOAPushOperator``) → summarize.
Nothing here builds a DAG; every function takes the campaign file and plain values, so each task's
logic is tested directly. This module holds what the tasks share (the run's trigger options, the
refusals, the staging folder, the CDP connection and segment SQL) and the chunk task's body; the
validate task's body is ``integration.launch``, the summarize task's ``integration.summary``, the
extraction ``integration.segment``.
"""

from __future__ import annotations

import inspect
import logging
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.campaign.model import Campaign
from line_oa.delivery_log.store import DeliveryLog, data_dir, sql_hook
from line_oa.errors import LineOAError

if TYPE_CHECKING:
    from line_oa.campaign import Campaign

log = logging.getLogger(__name__)
DEFAULT_CDP_FILE = "cdp.db"


class LaunchRefused(LineOAError):
    """The campaign must not deliver now (draft, not ready, already delivered, quota too small)."""


class SegmentQueryError(LaunchRefused):
    """The CDP refused the segment's SQL: the message names the file and quotes the database."""


class RowCountMismatch(LineOAError):
    """The run's rows in the delivery log are not one per extracted profile: nothing may be sent."""


@dataclass(frozen=True)
class TriggerOptions:
    """The DAG run's parameters (Trigger DAG w/ config in the UI)."""

    dry_run: bool = False
    test_recipients: tuple[str, ...] = ()
    max_recipients: int | None = None
    redeliver: bool = False
    allow_partial_delivery: bool = False
    send_now: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> TriggerOptions:
        params = params or {}
        recipients = params.get("test_recipients") or ()
        if isinstance(recipients, str):
            recipients = [part for part in recipients.replace(",", " ").split() if part]
        limit = params.get("max_recipients")
        return cls(
            dry_run=bool(params.get("dry_run", False)),
            test_recipients=tuple(str(r).strip() for r in recipients),
            max_recipients=int(limit) if limit not in (None, "", 0) else None,
            redeliver=bool(params.get("redeliver", False)),
            allow_partial_delivery=bool(params.get("allow_partial_delivery", False)),
            send_now=bool(params.get("send_now", False)),
        )

    @property
    def is_test(self) -> bool:
        return bool(self.test_recipients)


def staging_root() -> str:
    """Return where chunk files go: ``[line_oa] staging_uri`` (any ObjectStoragePath URI) or data/staging."""
    return settings.staging_uri() or str(data_dir() / "staging")


def run_staging_uri(campaign_id: str, run_id: str) -> str:
    """Return the staging directory of one run's segment and chunk files."""
    return f"{staging_root().rstrip('/')}/{campaign_id}/{safe_name(run_id)}"


def cdp_hook(campaign: Campaign):
    """Return the common.sql hook of the campaign's CDP connection (SQLite ``data/cdp.db`` if undefined)."""
    return sql_hook(campaign.target_audience.cdp_conn_id, data_dir() / DEFAULT_CDP_FILE)


def segment_sql(campaign: Campaign, sql_root: pathlib.Path | None = None) -> str:
    path = campaign.segment_sql_path(sql_root or settings.sql_root())
    if not path.is_file():
        raise LaunchRefused(f"target_audience: segment SQL {path} does not exist")
    return path.read_text(encoding="utf-8")


SUPPRESSIONS = "suppressions"


def suppression_files(campaign: Campaign, sql_root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Return the suppression lists of a campaign: every ``suppressions/*.sql`` (all campaigns) and the
    campaign's own ``suppressions/lists/<name>.sql`` (``target_audience.suppression_lists``)."""
    folder = pathlib.Path(sql_root or settings.sql_root()) / SUPPRESSIONS
    files = sorted(folder.glob("*.sql"))
    files += [folder / "lists" / f"{name}.sql" for name in campaign.target_audience.suppression_lists]
    return files


def suppression_sqls(campaign: Campaign, sql_root: pathlib.Path | None = None) -> list[str]:
    """Return the SQL of the campaign's suppression lists; refuse a named list that does not exist."""
    sqls = []
    for path in suppression_files(campaign, sql_root):
        if not path.is_file():
            raise LaunchRefused(f"target_audience.suppression_lists: {path} does not exist")
        sqls.append(path.read_text(encoding="utf-8"))
    return sqls


def run_segment_query(campaign: Campaign, function, *args, sql_root: pathlib.Path | None = None):
    """Call ``function(*args)`` that runs the segment's SQL on the CDP; a database error becomes a
    ``SegmentQueryError`` naming the segment file and quoting the database's message.

    A generator (streamed rows) is wrapped so that an error while fetching is turned the same way.
    """
    path = campaign.segment_sql_path(sql_root or settings.sql_root())
    try:
        result = function(*args)
    except LineOAError:
        raise
    except Exception as err:  # each driver has its own classes; any of them means "the SQL failed"
        raise _query_error(campaign, path, err) from None
    if inspect.isgenerator(result):
        return _rows_or_refusal(campaign, path, result)
    return result


def _rows_or_refusal(campaign: Campaign, path: pathlib.Path, rows):
    try:
        yield from rows
    except LineOAError:
        raise
    except Exception as err:
        raise _query_error(campaign, path, err) from None


def _query_error(campaign: Campaign, path: pathlib.Path, err: Exception) -> SegmentQueryError:
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:500]
    return SegmentQueryError(
        f"target_audience.segment: the segment SQL {path} failed on the CDP connection "
        f"{campaign.target_audience.cdp_conn_id!r}: {type(err).__name__}: {first_line}"
    )


# -- chunk ------------------------------------------------------------------------------------
def chunk_profiles(
    segment: dict[str, Any], *, campaign: Campaign, ledger: DeliveryLog
) -> list[dict[str, Any]]:
    """Split the staged segment into chunk files and register their recipients as ``pending``.

    Each chunk's recipients are registered in one transaction, then its file is written. Then check
    the promise that every profile the segment returned has exactly one row: the run's rows in the log
    must number the profiles extracted (``segment["profiles"]``); otherwise raise ``RowCountMismatch``
    (a ``LineOAError``) before any chunk is sent.
    """
    from line_oa.delivery.chunk import register_pending
    from line_oa.integration.chunks import plan_chunk_size, write_chunk_tables
    from line_oa.integration.segment import read_segment_chunks

    size = plan_chunk_size(segment["eligible"], requested=campaign.activation.chunk_size)
    is_test = bool(segment.get("is_test"))

    def registered(tables):
        for index, table in enumerate(tables):
            profile_ids, user_ids = (
                table.column(name).to_pylist() for name in ("profile_id", "line_user_id")
            )
            register_pending(ledger, index, profile_ids, user_ids, is_test=is_test)
            del profile_ids, user_ids
            yield table

    staging = segment["segment_uri"].rsplit("/", 1)[0] + "/chunks"
    tables = read_segment_chunks(segment["segment_uri"], size, with_values=True)
    chunks = write_chunk_tables(registered(tables), staging_uri=staging)
    ledger.refresh_statistics()  # PostgreSQL: the push tasks' queries find the run's rows by index
    check_one_row_per_profile(ledger, profiles=int(segment["profiles"]))
    return [{**chunk, "is_test": is_test} for chunk in chunks]


def check_one_row_per_profile(ledger: DeliveryLog, *, profiles: int) -> None:
    """Raise ``RowCountMismatch`` unless the run has exactly ``profiles`` rows in the delivery log.

    Every row of a run is the row of one extracted profile (for a test send, the test rows of the run):
    fewer rows mean profiles without an outcome; more mean rows that no profile of this segment explains.
    """
    rows = ledger.row_count()
    if rows != profiles:
        raise RowCountMismatch(
            f"{profiles} profiles extracted but {rows} rows in the delivery log for run {ledger.run_id}; "
            "refusing to send: every profile must have exactly one row ("
            + (
                "some profiles have none"
                if rows < profiles
                else "some rows are of profiles this extraction did not return, e.g. left by an earlier "
                "attempt that read another segment"
            )
            + "); once the log or the segment is fixed, clear extract_segment with its downstream tasks to "
            "resume this run (a new run of a one-off campaign needs redeliver=true: this one counts as its delivery)"
        )


def safe_name(run_id: str) -> str:
    """Return ``run_id`` as one file or folder name: anything but letters, digits, ``-_.`` becomes ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
