"""Reading the delivery log: a run's rows, what is left to send, counts and rates for reports."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import fields
from typing import TYPE_CHECKING

from line_oa.delivery_log.rows import TABLE, LedgerRow
from line_oa.vocabulary import RESUMABLE_REASONS, Status

if TYPE_CHECKING:
    from collections.abc import Iterator


FIELD_ORDER = [field.name for field in fields(LedgerRow)]  # a row is built from its values positionally


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a chunk's rows are built, then restore it.

    Building 50,000 rows (their tuples, strings and ``LedgerRow`` objects, none of them in a cycle) sets
    off collections that walk every object of the process, and a task process holds Airflow's: in the
    1,000,000-profile run, reading the 20 chunks took 3.88 s with the collector on and 2.35 s paused
    (sums over two runs each, benchmarks/analysis.md, ninth session). Nothing is left uncollected:
    the next collection after this one sees the rows as any other objects.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _iso_stamps(row: LedgerRow) -> None:
    if row.updated_at is not None and not isinstance(row.updated_at, str):
        row.updated_at = row.updated_at.isoformat()
    if row.sent_at is not None and not isinstance(row.sent_at, str):
        row.sent_at = row.sent_at.isoformat()
    if row.dispatched_at is not None and not isinstance(row.dispatched_at, str):
        row.dispatched_at = row.dispatched_at.isoformat()


class LogQueries:
    """The read side of ``DeliveryLog`` (a mixin: it uses the log's connection and placeholders)."""

    def unsent_count(self) -> int:
        """Return how many of this run's rows still wait to be sent (pending, sending or resumable)."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE run_key = {self._p} "
            f"AND (status IN ('{Status.PENDING}', '{Status.SENDING}') OR {self._resumable()})",
            (self.run_key, *RESUMABLE_REASONS),
        )
        count = int(cursor.fetchone()[0])
        self._commit()
        return count

    def row_count(self) -> int:
        """Return how many rows this run has in the log."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE run_key = {self._p}",
            (self.run_key,),
        )
        count = int(cursor.fetchone()[0])
        self._commit()
        return count

    def chunk_size_logged(self, chunk_index: int) -> int:
        """Return how many rows of a chunk the log already holds."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE run_key = {self._p} AND chunk_index = {self._p}",
            (self.run_key, chunk_index),
        )
        return int(cursor.fetchone()[0])

    def _select(self, where: str, params: tuple, *, one_chunk: bool = False) -> Iterator[LedgerRow]:
        sql = f"SELECT {', '.join(FIELD_ORDER)} FROM {TABLE} WHERE run_key = {self._p}"
        # One chunk's rows on SQLite: in the order they were registered (the segment's, by LINE user id),
        # which is the chunk index's own order, so nothing is sorted. ORDER BY profile_id walked the whole
        # run in primary-key order to skip the other chunks' rows (3.6 s vs 1.1 s a chunk at 200,000),
        # and "+profile_id" (the chunk index, then a sort of the chunk) took 0.22-0.24 s a 50,000-row
        # chunk against 0.18 s now (benchmarks/analysis.md, ninth session).
        order = "rowid" if one_chunk and self.dialect == "sqlite" else "profile_id"
        cursor = self._conn.cursor()
        cursor.execute(f"{sql} AND {where} ORDER BY {order}", (self.run_key, *params))
        stamps = self.dialect != "sqlite"  # PostgreSQL answers timestamps as datetimes; rows keep ISO text
        while batch := cursor.fetchmany(5000):
            for values in batch:
                row = LedgerRow(*values)  # the SELECT lists every field in the dataclass's order
                row.is_test = bool(row.is_test)
                if stamps:
                    _iso_stamps(row)
                yield row

    def rows_to_send(self, chunk_index: int) -> list[LedgerRow]:
        """Return the chunk's rows that are not final: pending, sending, or failed without acceptance."""
        reasons = ", ".join([self._p] * len(RESUMABLE_REASONS))
        where = (
            f"chunk_index = {self._p} AND (status IN ('{Status.PENDING}', '{Status.SENDING}') "
            f"OR (status = '{Status.FAILED}' AND reason IN ({reasons})))"
        )
        with collector_paused():
            return list(self._select(where, (chunk_index, *RESUMABLE_REASONS), one_chunk=True))

    def rows(self, status: str | None = None) -> Iterator[LedgerRow]:
        """Iterate over this run's rows (optionally of one status), ordered by profile id."""
        if status is None:
            return self._select("1 = 1", ())
        return self._select(f"status = {self._p}", (status,))

    def counts(self) -> dict[tuple[str, str | None, bool], int]:
        """Return row counts by (status, reason, is_test) for this run."""
        sql = (
            f"SELECT status, reason, is_test, COUNT(*) FROM {TABLE} WHERE run_key = {self._p} "
            "GROUP BY status, reason, is_test"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, (self.run_key,))
        return {(s, r, bool(t)): int(n) for s, r, t, n in cursor.fetchall()}

    def totals(self) -> dict[str, int]:
        """Return requests-related totals for this run: attempts summed over rows and batches."""
        sql = (
            f"SELECT COALESCE(SUM(attempts), 0), MIN(created_at), MAX(sent_at) FROM {TABLE} "
            f"WHERE run_key = {self._p}"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, (self.run_key,))
        attempts, first, last = cursor.fetchone()
        return {"attempts": int(attempts or 0), "first_created_at": first, "last_sent_at": last}

    def sent_per_second(self) -> list[tuple[str, int]]:
        """Return (second, recipients sent) buckets for the report's send-rate chart."""
        bucket = (
            "substr(sent_at, 1, 19)"
            if self.dialect == "sqlite"
            else "to_char(date_trunc('second', sent_at), 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        )
        sql = (
            f"SELECT {bucket} AS s, COUNT(*) FROM {TABLE} WHERE run_key = {self._p} "
            f"AND status = '{Status.SENT}' AND sent_at IS NOT NULL GROUP BY s ORDER BY s"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, (self.run_key,))
        return [(str(s), int(n)) for s, n in cursor.fetchall()]
