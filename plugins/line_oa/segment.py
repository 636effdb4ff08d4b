"""Extract a campaign's segment from the CDP: stream profiles, decide who is eligible, log the rest.

The segment SQL (``include/sql/segments/<parent>/<segment>.sql``) returns ``profile_id`` and
``line_user_id``. It is wrapped, never edited: ``SELECT ... FROM (<segment>) AS segment ORDER BY
line_user_id, profile_id``, plain SQL that SQLite, PostgreSQL and Trino all run, and read with
``fetchmany`` so a million-profile segment never sits in memory. Ordering by LINE user id makes
duplicates adjacent: the first profile (lowest ``profile_id``) of a shared id is the one sent to.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from line_oa.errors import LineOAError
from line_oa.ledger import EXCLUDED, FAILED, LedgerRow

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterable, Iterator

    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from line_oa.ledger import DeliveryLedger

LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
FETCH_SIZE = 5000
SCHEMA = pa.schema([("profile_id", pa.string()), ("line_user_id", pa.string())])


@dataclass
class SegmentExtract:
    """What extraction found; the descriptor that goes to XCom is ``to_dict()``."""

    segment_uri: str
    profiles: int = 0
    eligible: int = 0
    excluded: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    is_test: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment_uri": self.segment_uri,
            "profiles": self.profiles,
            "eligible": self.eligible,
            "excluded": dict(self.excluded),
            "failed": dict(self.failed),
            "is_test": self.is_test,
        }


def wrap_segment_sql(segment_sql: str) -> str:
    """Return the query that streams the segment ordered by LINE user id (portable SQL)."""
    body = segment_sql.strip().rstrip(";").strip()
    if ";" in body:
        raise LineOAError("segment SQL must be a single SELECT statement (found ';' inside it)")
    return f"SELECT profile_id, line_user_id FROM (\n{body}\n) AS segment ORDER BY line_user_id, profile_id"


def count_sql(segment_sql: str) -> str:
    """Return a query counting the segment's profiles that have a LINE user id (for the quota pre-flight)."""
    body = segment_sql.strip().rstrip(";").strip()
    return f"SELECT COUNT(DISTINCT line_user_id) FROM (\n{body}\n) AS segment WHERE line_user_id IS NOT NULL"


def stream_rows(hook: DbApiHook, sql: str) -> Iterator[tuple[Any, Any]]:
    """Yield (profile_id, line_user_id) rows from ``hook`` in batches of ``FETCH_SIZE``."""
    conn = hook.get_conn()
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        while batch := cursor.fetchmany(FETCH_SIZE):
            for row in batch:
                yield row[0], row[1]
    finally:
        conn.close()


def classify(
    rows: Iterable[tuple[Any, Any]], *, max_recipients: int | None = None
) -> Iterator[tuple[str, str | None, str | None, str | None]]:
    """Yield (profile_id, line_user_id, status, reason) for rows ordered by LINE user id.

    ``status`` is ``None`` for an eligible profile; otherwise ``excluded`` or ``failed`` with a reason.
    """
    previous: str | None = None
    eligible = 0
    for raw_profile, raw_user in rows:
        profile_id = str(raw_profile)
        user = str(raw_user).strip() if raw_user is not None else ""
        if not user:
            yield profile_id, None, EXCLUDED, "missing_recipient_id"
        elif not LINE_USER_ID.match(user):
            yield profile_id, user[:100], FAILED, "invalid_recipient_id"
        elif user == previous:
            yield profile_id, user, EXCLUDED, "duplicate_recipient"
        elif max_recipients is not None and eligible >= max_recipients:
            previous = user
            yield profile_id, user, EXCLUDED, "over_max_recipients"
        else:
            previous = user
            eligible += 1
            yield profile_id, user, None, None


def extract_segment(
    *,
    rows: Iterable[tuple[Any, Any]],
    ledger: DeliveryLedger,
    staging_dir: pathlib.Path | str,
    max_recipients: int | None = None,
    is_test: bool = False,
) -> SegmentExtract:
    """Classify ``rows``; log exclusions and failures; stage eligible recipients as one Parquet file.

    Re-running it for the same run rewrites the staged file and leaves existing log rows alone.
    """
    from line_oa.chunks import staging_path

    base = staging_path(staging_dir)
    base.mkdir(parents=True, exist_ok=True)
    target = base / "segment.parquet"
    result = SegmentExtract(segment_uri=str(target), is_test=is_test)
    logged: list[LedgerRow] = []
    eligible: list[tuple[str, str]] = []
    with target.open("wb") as handle, pq.ParquetWriter(handle, SCHEMA) as writer:
        for profile_id, user, status, reason in classify(rows, max_recipients=max_recipients):
            result.profiles += 1
            if status is None:
                result.eligible += 1
                eligible.append((profile_id, user))  # type: ignore[arg-type]
                if len(eligible) >= FETCH_SIZE:
                    _write_batch(writer, eligible)
            else:
                (result.excluded if status == EXCLUDED else result.failed)[reason] += 1
                logged.append(LedgerRow(profile_id, user, status, reason, is_test=is_test))
                if len(logged) >= FETCH_SIZE:
                    ledger.add(logged)
                    logged = []
        _write_batch(writer, eligible)
    ledger.add(logged)
    return result


def _write_batch(writer: pq.ParquetWriter, rows: list[tuple[str, str]]) -> None:
    if rows:
        ids, users = zip(*rows, strict=True)
        writer.write_table(pa.table({"profile_id": list(ids), "line_user_id": list(users)}, schema=SCHEMA))
        rows.clear()


def read_segment(segment_uri: str) -> Iterator[tuple[str, str]]:
    """Yield the staged eligible recipients in batches (never the whole file in memory)."""
    from line_oa.chunks import staging_path

    with staging_path(segment_uri).open("rb") as handle:
        parquet = pq.ParquetFile(handle)
        for batch in parquet.iter_batches(batch_size=FETCH_SIZE):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)


def rows_for_test_send(user_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Return the rows of a test send: each listed LINE user id under a ``test:`` profile id."""
    return [(f"test:{uid}", uid) for uid in dict.fromkeys(u.strip() for u in user_ids if u and u.strip())]
