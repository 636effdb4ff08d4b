"""Registering a run's recipients in the delivery log: one ``pending`` row per recipient, with its key.

The chunk task registers every recipient of a run before anything is sent (1,000,000 rows for a
million-profile campaign), so this path writes plain tuples of the columns a pending row sets, with
no ``LedgerRow`` per recipient; the rows are the ones ``pending_rows`` describes.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from line_oa.delivery_log.rows import TABLE
from line_oa.vocabulary import Status

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

# The columns a pending row sets; every other column keeps its default (NULL, attempts 0).
PENDING_COLUMNS = (
    "run_key", "campaign_id", "run_id", "profile_id", "line_user_id", "status", "chunk_index", "retry_key", "is_test",
    "created_at", "updated_at",
)  # fmt: skip
STATEMENT_ROWS = 1000  # rows per executemany call (PostgreSQL pipelines each call)
# SQLite: rows per INSERT … SELECT … FROM json_each(?) (``sqlite_insert_rows``); a few hundred kB of JSON
JSON_ROWS = 5000
NUL_IN_JSON = "\\u0000"  # how json.dumps writes a NUL character
# SQLite: the page cache of a connection that registers recipients (KiB; SQLite's default is 2 MB). The
# primary key (run key, profile id) receives a chunk's rows at random places, so with 2 MB most inserts
# read a page again: 16 MB registered 1,000,000 recipients about 10 % faster for 14-16 MB more at the
# chunk task's peak (benchmarks/analysis.md, seventeenth session; made room for by Arrow's allocator).
REGISTRATION_CACHE_KIB = 16384
# PostgreSQL: the session's temporary table a chunk is copied into before one INSERT ... SELECT.
PG_STAGING = "line_oa_pending_in"
# How long ANALYZE may wait for its table lock (a VACUUM or another run's ANALYZE holding it).
ANALYZE_LOCK_TIMEOUT = "5s"

log = logging.getLogger(__name__)


def copy_to_staging(cursor: Any, staging: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> int:
    """PostgreSQL (psycopg 3): ``COPY`` rows into this session's temporary text table ``staging``, made
    if missing and emptied at commit; return how many rows were copied. The caller then moves them with
    one ``INSERT … SELECT`` in the same transaction. ``write_row`` escapes every value."""
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {staging} ({', '.join(f'{c} TEXT' for c in columns)}) "
        "ON COMMIT DELETE ROWS"
    )
    count = 0
    with cursor.copy(f"COPY {staging} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def sqlite_insert_rows(cursor: Any, insert: str, values: str, fixed: tuple, rows: Iterable[tuple]) -> int:
    """SQLite: insert ``rows`` by ``insert`` (``INSERT INTO t (columns) {select} ON CONFLICT …``), a
    statement per ``JSON_ROWS`` rows given as one JSON array; return how many rows were given.

    ``values`` is the select list: ``?`` takes the next of the ``fixed`` values, ``{0}``, ``{1}``, …
    the row's elements. One statement for thousands of rows instead of binding each row's values from
    Python: 1,000,000 pending rows registered in 7.7-8.0 s instead of 9.3-9.6 s (benchmarks/analysis.md,
    ninth session). JSON carries any text exactly (tabs, quotes, backslashes, any Unicode) and None as
    NULL; a batch holding a NUL character (SQLite's JSON functions end a string there), or a SQLite
    built without JSON functions, is bound row by row instead.
    """
    fixed_count = values.count("?")
    numbered = iter(range(1, fixed_count + 1))
    select = re.sub(r"\?", lambda _match: f"?{next(numbered)}", values)
    elements = range(len(re.findall(r"\{\d+\}", select)))
    from_json = insert.format(
        select=f"SELECT {select.format(*map(_json_element, elements))} "
        f"FROM json_each(?{fixed_count + 1}) AS j WHERE true"
    )
    one_row = insert.format(
        select=f"SELECT {select.format(*(f'?{fixed_count + 2 + n}' for n in elements))} WHERE true"
    )
    use_json, rows, count = _has_json(cursor), iter(rows), 0
    while batch := list(itertools.islice(rows, JSON_ROWS)):
        text = json.dumps(batch) if use_json else None
        if text is not None and NUL_IN_JSON not in text:
            cursor.execute(from_json, (*fixed, text))
        else:
            cursor.executemany(one_row, [(*fixed, None, *row) for row in batch])
        count += len(batch)
    return count


def _json_element(index: int) -> str:
    return f"json_extract(j.value, '$[{index}]')"


def _has_json(cursor: Any) -> bool:
    try:
        cursor.execute("SELECT json_extract('[1]', '$[0]')")
    except Exception:  # sqlite3.OperationalError: built without JSON functions (optional before 3.38)
        return False
    return cursor.fetchone()[0] == 1


class PendingRegistration:
    """The registration side of ``DeliveryLog`` (a mixin: it uses the log's connection and transactions)."""

    def add_pending(
        self,
        chunk_index: int,
        profile_ids: Sequence[str],
        line_user_ids: Sequence[str | None],
        retry_keys: Sequence[str],
        *,
        is_test: bool = False,
    ) -> int:
        """Register a chunk's recipients as ``pending`` under their push keys, in one transaction.

        ``retry_keys`` are the recipients' push keys (``delivery.keys.push_retry_keys``). A recipient
        already in the run's log (a retried chunk task) keeps its row as it is, as with ``add``. Returns
        how many recipients were given.
        """
        if not len(profile_ids) == len(line_user_ids) == len(retry_keys):
            raise ValueError(
                f"{len(profile_ids)} profile ids, {len(line_user_ids)} LINE user ids and {len(retry_keys)} "
                "retry keys: one of each per recipient"
            )
        now = self._now()
        test = int(bool(is_test))
        if self.dialect == "postgres" and self._can_copy():
            with self.transaction():
                self._copy_pending(chunk_index, profile_ids, line_user_ids, retry_keys, test, now)
            return len(profile_ids)
        recipients = zip(profile_ids, line_user_ids, retry_keys, strict=True)
        # In the segment's order (LINE user id order), not sorted by profile id: a table's rows then lie
        # in the order multicast batches (ranges of LINE user ids) mark and settle them. Sorting here made
        # registration 6-8 % faster but the 1,000,000-recipient multicast's sends 2.2 times slower.
        # A statement at a time, not the chunk's rows at once: 50,000 tuples of them were about 7 MB more
        # at the chunk task's peak (issue 17's 300 MB budget for a task process).
        with self.transaction():
            if self.dialect == "sqlite":
                self._conn.execute(f"PRAGMA cache_size = -{REGISTRATION_CACHE_KIB}")
                sqlite_insert_rows(
                    self._conn.cursor(),
                    f"INSERT INTO {TABLE} ({', '.join(PENDING_COLUMNS)}) {{select}} "
                    "ON CONFLICT (run_key, profile_id) DO NOTHING",
                    "?, ?, ?, {0}, {1}, ?, ?, {2}, ?, ?, ?",
                    (
                        self.run_key,
                        self.campaign_id,
                        self.run_id,
                        Status.PENDING.value,
                        chunk_index,
                        test,
                        now,
                        now,
                    ),
                    recipients,
                )
            else:
                self._insert_pending(chunk_index, recipients, test, now)
        return len(profile_ids)

    def _insert_pending(self, chunk_index: int, recipients: Iterator[tuple], test: int, now: str) -> None:
        """PostgreSQL without ``COPY`` (``_can_copy``): ``executemany`` a statement's rows at a time."""
        fixed_before = (self.run_key, self.campaign_id, self.run_id)
        placeholders = ", ".join([self._p] * len(PENDING_COLUMNS))
        sql = (
            f"INSERT INTO {TABLE} ({', '.join(PENDING_COLUMNS)}) VALUES ({placeholders}) "
            "ON CONFLICT (run_key, profile_id) DO NOTHING"
        )
        cursor = self._conn.cursor()
        while values := [
            (*fixed_before, profile_id, user_id, Status.PENDING.value, chunk_index, key, test, now, now)
            for profile_id, user_id, key in itertools.islice(recipients, STATEMENT_ROWS)
        ]:
            cursor.executemany(sql, values)

    def _can_copy(self) -> bool:
        """Whether this PostgreSQL connection can write in bulk by ``COPY`` (``copy_to_staging``; also
        used by the frequency claims): psycopg 3's ``cursor.copy`` and a role that may create temporary
        tables (PostgreSQL grants that to every role unless revoked)."""
        if getattr(self, "_copy_ok", None) is None:
            cursor = self._conn.cursor()
            ok = hasattr(cursor, "copy")
            if ok:
                cursor.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')")
                ok = bool(cursor.fetchone()[0])
            self._commit()
            self._copy_ok = ok
            if not ok:
                log.info(
                    "Registering recipients and claims row by row: this connection cannot COPY into a temporary table"
                )
        return bool(self._copy_ok)

    def _copy_pending(
        self,
        chunk_index: int,
        profile_ids: Sequence[str],
        line_user_ids: Sequence[str | None],
        retry_keys: Sequence[str],
        test: int,
        now: str,
    ) -> None:
        """PostgreSQL: a chunk the log holds no row of goes straight in by ``COPY`` (``_copy_new_chunk``);
        any other is copied into a temporary table, then moved with one ``INSERT … SELECT … ON CONFLICT
        DO NOTHING``.

        One statement instead of one per recipient: 950,000 rows in chunks of 50,000 took 25.2 s (3.4 s
        of the task's CPU, 22.1 s of the server's) instead of 49.8 s (20.8 and 44.5) with ``executemany``.
        ``write_row`` escapes every value, so a profile id with a tab, a newline or a backslash arrives
        as it was.
        """
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT 1 FROM {TABLE} WHERE run_key = %s AND chunk_index = %s LIMIT 1",
            (self.run_key, chunk_index),
        )
        if cursor.fetchone() is None:  # a new chunk: straight into the log
            fixed, pending = (self.run_key, self.campaign_id, self.run_id), Status.PENDING.value
            full_rows = (
                (*fixed, profile_id, user_id, pending, chunk_index, key, test, now, now)
                for profile_id, user_id, key in zip(profile_ids, line_user_ids, retry_keys, strict=True)
            )
            if self._copy_new_chunk(cursor, full_rows):
                return
        rows = zip(profile_ids, line_user_ids, retry_keys, strict=True)
        copy_to_staging(cursor, PG_STAGING, ("profile_id", "line_user_id", "retry_key"), rows)
        cursor.execute(
            f"INSERT INTO {TABLE} ({', '.join(PENDING_COLUMNS)}) "
            "SELECT %s, %s, %s, profile_id, line_user_id, %s, %s, retry_key, %s, %s::timestamptz, "
            f"%s::timestamptz FROM {PG_STAGING} ON CONFLICT (run_key, profile_id) DO NOTHING",
            (self.run_key, self.campaign_id, self.run_id, Status.PENDING.value, chunk_index, test, now, now),
        )

    def _copy_new_chunk(self, cursor: Any, rows: Iterable[tuple]) -> bool:
        """PostgreSQL: ``COPY`` the pending rows (``PENDING_COLUMNS``) of a chunk the log holds no row of
        straight into the log; return whether they went.

        No staging table and no ``INSERT … SELECT``: a 50,000-row chunk in 0.36 s instead of 0.55 s
        (medians of 8, benchmarks/analysis.md, eighth session). A recipient already in the run's log
        after all (a task registering the same chunk at the same moment, a profile the log holds under
        another chunk) makes the ``COPY`` fail as a whole: it is rolled back to before it and the caller
        takes the staging path, which leaves such rows as they are.
        """
        from psycopg import errors

        cursor.execute("SAVEPOINT line_oa_new_chunk")
        try:
            with cursor.copy(f"COPY {TABLE} ({', '.join(PENDING_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT line_oa_new_chunk")
            return False
        cursor.execute("RELEASE SAVEPOINT line_oa_new_chunk")
        return True

    def refresh_statistics(self) -> None:
        """Let PostgreSQL's planner know the rows just registered: ``ANALYZE`` the log table.

        Until its statistics include a run, the planner expects a handful of rows for the run's
        (campaign, run) and reads all of the run's rows to find one chunk's rows or the rows of one
        push mark: a mark of 40 rows in a 20,000-row run cost 41 ms of server CPU, 0.5 ms after
        ``ANALYZE`` (0.4 s on a 200,000-row log). Called once the run's rows are registered. SQLite's
        planner keeps no statistics here (its queries carry index hints): nothing to do.

        Only an optimisation: a role that does not own the table (PostgreSQL then only warns), or a
        lock not granted in time, leaves the log working, its queries slower.
        """
        if self.dialect != "postgres":
            return
        with self._lock:
            if self._in_transaction:  # its commit would end the caller's transaction: leave it to them
                return
            cursor = self._conn.cursor()
            try:
                cursor.execute(f"SET LOCAL lock_timeout = '{ANALYZE_LOCK_TIMEOUT}'")
                cursor.execute(f"ANALYZE {TABLE}")
                self._conn.commit()
            except Exception as err:  # the driver's OperationalError/LockNotAvailable, whatever its version
                self._conn.rollback()
                log.warning(
                    "Could not refresh the planner's statistics of %s (%s); this run's log queries may "
                    "be slower: run ANALYZE %s as its owner",
                    TABLE, str(err).splitlines()[0], TABLE,
                )  # fmt: skip
