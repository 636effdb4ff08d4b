"""The delivery log: one row per (campaign, run, profile) saying what happened to that profile.

Written through a common.sql hook (SQLite by default, PostgreSQL in production) with batched
UPSERTs. The log is what makes delivery exactly-once: a row is marked ``sending`` with its retry
key before the request leaves, and only rows that are not final are ever sent again.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.delivery_log.connections import (  # noqa: F401  (the log's connections, re-exported)
    DEFAULT_LEDGER_CONN_ID,
    data_dir,
    ledger_hook,
    sql_hook,
    sqlite_file_hook,
)
from line_oa.delivery_log.frequency import FrequencyRecords
from line_oa.delivery_log.queries import LogQueries
from line_oa.delivery_log.records import RunRecords
from line_oa.delivery_log.registration import PendingRegistration
from line_oa.delivery_log.rows import (  # noqa: F401  (LedgerRow and the table names, re-exported)
    CLAIM_TABLE,
    COLUMNS,
    DELIVERY_TABLE,
    IS_TEST,
    SUMMARY_TABLE,
    TABLE,
    UPDATED_ON_CONFLICT,
    LedgerRow,
    row_values,
)
from line_oa.delivery_log.runs import RunKeys
from line_oa.delivery_log.writes import RowWrites
from line_oa.vocabulary import RESUMABLE_REASONS, Status

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)


# Must match the WITH clause of schema/postgres.sql (package data beside this module).
PG_FILLFACTOR = "fillfactor=30"
# The statuses under the names the modules use (line_oa.vocabulary describes them and the reasons).
EXCLUDED, PENDING, SENDING, SENT, FAILED = (
    Status.EXCLUDED, Status.PENDING, Status.SENDING, Status.SENT, Status.FAILED
)  # fmt: skip
RETRY_KEY_LIFETIME = timedelta(hours=24)


def schema_sql(dialect: str) -> str:
    """Return the delivery log's DDL for ``sqlite`` or ``postgres`` (package data: works from a wheel)."""
    return (importlib.resources.files("line_oa.delivery_log") / "schema" / f"{dialect}.sql").read_text(
        "utf-8"
    )


def schema_statements(dialect: str) -> list[str]:
    """The DDL's statements, one by one, without their comments."""
    # comment lines go first: a comment may hold a semicolon
    ddl = "\n".join(line for line in schema_sql(dialect).splitlines() if not line.strip().startswith("--"))
    return [statement.strip() for statement in ddl.split(";") if statement.strip()]


class ChunkClaimLost(Exception):
    """Another sender took this chunk (a retry racing a zombie task): this one may not write or send."""


class LogBusy(Exception):
    """``transaction_now`` would have had to wait: the caller hands the write to its writer thread."""


def _use_wal(conn: Any, attempts: int = 50) -> None:
    """Put a SQLite log in WAL mode, also when several tasks open a new file at once.

    Switching a file to WAL needs an exclusive lock and does not wait on the busy timeout: of several
    connections opening a fresh log together, the others get "database is locked" at once. A file
    already in WAL mode needs no switch; otherwise the switch is retried with a short backoff.
    """
    for attempt in range(attempts):
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        else:
            return


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryLog(LogQueries, RunRecords, FrequencyRecords, PendingRegistration, RowWrites, RunKeys):
    """Read and write one (campaign, run)'s rows of the delivery log.

    :param hook: a common.sql hook (``SqliteHook`` or ``PostgresHook``).
    :param clock: returns the current UTC time; tests move it to cross LINE's 24 h retry-key window.
    """

    def __init__(
        self, hook: DbApiHook, *, campaign_id: str, run_id: str, clock: Callable[[], datetime] = _utcnow
    ):
        self.hook = hook
        self.campaign_id = campaign_id
        self.run_id = run_id
        self.clock = clock
        self.dialect = "postgres" if "postgres" in type(hook).__name__.lower() else "sqlite"
        self._p = "%s" if self.dialect == "postgres" else "?"
        if self.dialect == "sqlite":
            # The hook's own connection is tied to the thread that opened it; the delivery engine
            # writes from one background thread (see ``DeliveryEngine``), so open the same file
            # shareable. Writes are serialised by ``_lock``.
            # Autocommit mode: ``transaction()`` issues BEGIN IMMEDIATE itself, so a transaction holds
            # the write lock from its first statement (its fencing check reads the latest claim).
            uri = hook.get_uri().replace("sqlite:///", "file:")
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        else:
            # A log that does not answer must fail the chunk, never hang it (see [line_oa] log_*).
            os.environ.setdefault("PGCONNECT_TIMEOUT", str(settings.log_connect_timeout()))
            self._conn = hook.get_conn()
        self._lock = threading.RLock()
        self._in_transaction = False
        self._run_key: int | None = None  # see ``run_key``
        self.fence: tuple[int, int] | None = None  # (chunk index, epoch) this log's writes must hold
        self.abandoned = False  # a write never came back: the connection is left alone (see close)
        if self.dialect == "sqlite":
            self._conn.execute(f"PRAGMA busy_timeout={settings.log_busy_timeout_ms()}")
            _use_wal(self._conn)
            self._conn.execute("PRAGMA synchronous=NORMAL")
        else:
            cursor = self._conn.cursor()
            cursor.execute(f"SET statement_timeout = {settings.log_statement_timeout_ms()}")
            self._conn.commit()
        self.ensure_schema()

    @classmethod
    def connect(cls, conn_id: str | None = None, **kwargs: Any) -> DeliveryLog:
        """Open the delivery log on its connection (see ``ledger_hook``)."""
        return cls(ledger_hook(conn_id), **kwargs)

    def close(self) -> None:
        """Close the connection, unless a write on it never returned (its thread may still hold it)."""
        if not self.abandoned:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one transaction, committed at the end (rolled back on an error).

        When ``fence`` is set, the transaction first checks that this sender still holds its chunk
        (and keeps the claim locked until it commits): a stale sender's writes raise ``ChunkClaimLost``.
        Re-entrant: a nested call joins the open transaction.
        """
        with self._lock:
            if self._in_transaction:
                yield
                return
            if self._run_key is None:
                self._enter_run()  # before the transaction: a rollback must not take the run's key with it
            self._in_transaction = True
            try:
                if self.dialect == "sqlite":
                    self._conn.execute("BEGIN IMMEDIATE")
                if self.fence is not None:
                    self._check_fence(*self.fence)
                yield
            except BaseException:
                self._conn.rollback()
                raise
            else:
                self._conn.commit()
            finally:
                self._in_transaction = False

    @contextlib.contextmanager
    def transaction_now(self) -> Iterator[None]:
        """``transaction()`` that fails at once where it would wait (SQLite only; ``LogBusy`` otherwise):
        for another thread's use of this log, or for another connection's write lock."""
        if self.dialect != "sqlite" or not self._lock.acquire(blocking=False):
            raise LogBusy("the delivery log is in use")
        try:
            if self._in_transaction:
                raise LogBusy("a transaction is open")
            waits = self._conn.execute("PRAGMA busy_timeout").fetchone()[0]
            self._conn.execute("PRAGMA busy_timeout=0")
            try:
                with self.transaction():
                    yield
            finally:
                self._conn.execute(f"PRAGMA busy_timeout={int(waits)}")
        finally:
            self._lock.release()

    def _commit(self) -> None:
        if not self._in_transaction:
            self._conn.commit()

    def _check_fence(self, chunk_index: int, epoch: int) -> None:
        lock = " FOR SHARE" if self.dialect == "postgres" else ""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT epoch FROM {CLAIM_TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p} "
            f"AND chunk_index = {self._p}{lock}",
            (self.campaign_id, self.run_id, chunk_index),
        )
        row = cursor.fetchone()
        if row is None or int(row[0]) != epoch:
            raise ChunkClaimLost(
                f"chunk {chunk_index} of run {self.run_id}: another sender holds it now "
                f"(epoch {row[0] if row else None}, ours {epoch})"
            )

    def claim_chunk(self, chunk_index: int, owner: str) -> int:
        """Take the chunk for this sender: raise its epoch (fencing out any earlier sender); return it.

        Also sets ``fence``, so every later write through ``transaction()`` is checked against it.
        """
        self.fence = None
        now = self._now()
        with self.transaction():
            cursor = self._conn.cursor()
            cursor.execute(
                f"INSERT INTO {CLAIM_TABLE} (campaign_id, run_id, chunk_index, epoch, owner, claimed_at) "
                f"VALUES ({self._p}, {self._p}, {self._p}, 1, {self._p}, {self._p}) "
                f"ON CONFLICT (campaign_id, run_id, chunk_index) DO UPDATE SET "
                f"epoch = {CLAIM_TABLE}.epoch + 1, owner = excluded.owner, claimed_at = excluded.claimed_at "
                "RETURNING epoch",
                (self.campaign_id, self.run_id, chunk_index, owner, now),
            )
            epoch = int(cursor.fetchone()[0])
        self.fence = (chunk_index, epoch)
        return epoch

    def ensure_schema(self) -> None:
        """Create the tables from the package's ``schema/<dialect>.sql`` when missing (moving an earlier
        release's log to run keys first, see ``migrate_to_run_keys``)."""
        ddl, statements = schema_sql(self.dialect), schema_statements(self.dialect)
        cursor = self._conn.cursor()
        if self._tables_without_run_key(cursor):
            self.migrate_to_run_keys(statements)
        if self.dialect == "postgres":
            # A role without CREATE rights on the schema may not even run CREATE ... IF NOT EXISTS:
            # when an admin created everything up front (docs/operations.md), leave it at that.
            names = re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", ddl)
            cursor.execute("SELECT " + ", ".join(["to_regclass(%s)"] * len(names)), names)
            if all(cursor.fetchone()):
                self._conn.commit()
                self._ensure_fillfactor()
                self._ensure_columns()
                return
            # Tasks starting together on an empty database would race on CREATE TABLE IF NOT EXISTS
            # (a unique violation in pg_type): serialise them for this transaction.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('line_delivery_log'))")
        for statement in statements:
            cursor.execute(statement)
        self._conn.commit()
        if self.dialect == "postgres":
            self._ensure_fillfactor()
        self._ensure_columns()

    def _ensure_columns(self) -> None:
        """Add columns a log created by an earlier release lacks (``dispatched_at``, the runs' scope)."""
        cursor = self._conn.cursor()
        if "dispatched_at" not in self._columns(cursor, TABLE):
            kind = "TEXT" if self.dialect == "sqlite" else "TIMESTAMPTZ"
            cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN dispatched_at {kind}")
        self._ensure_scope_columns(cursor)
        self._conn.commit()

    def _ensure_fillfactor(self) -> None:
        """Give a PostgreSQL log created by an earlier release room for in-page (HOT) updates.

        Only the table's owner may; a task role without DDL rights (see docs/operations.md) logs
        a warning and goes on: the log works, its status updates are only slower.
        """
        cursor = self._conn.cursor()
        cursor.execute(f"SELECT reloptions FROM pg_class WHERE oid = '{TABLE}'::regclass")
        if PG_FILLFACTOR in (cursor.fetchone()[0] or []):
            self._conn.commit()
            return
        try:
            cursor.execute(f"ALTER TABLE {TABLE} SET ({PG_FILLFACTOR.replace('=', ' = ')})")
            self._conn.commit()
        except Exception as err:  # psycopg's InsufficientPrivilege, whatever the driver's version
            self._conn.rollback()
            log.warning(
                "The delivery log table %s has no %s, and this role may not set it (%s). Status "
                "updates are slower; run as its owner: ALTER TABLE %s SET (%s)",
                TABLE, PG_FILLFACTOR, str(err).splitlines()[0], TABLE, PG_FILLFACTOR.replace("=", " = "),
            )  # fmt: skip

    def _now(self) -> str:
        return self.clock().isoformat()

    def _update(
        self, assignments: dict[str, Any], where: str, params: tuple, *, increments: dict | None = None
    ) -> int:
        """Run one set-based UPDATE on this run's rows; return the number of rows changed (committed)."""
        sets = [f"{column} = {self._p}" for column in assignments]
        sets += [f"{column} = {column} + {self._p}" for column in increments or {}]
        sql = (
            f"UPDATE {TABLE} SET {', '.join(sets)}, updated_at = {self._p} "
            f"WHERE run_key = {self._p} AND {where}"
        )
        values = (*assignments.values(), *(increments or {}).values(), self._now(), self.run_key)
        with self.transaction():
            cursor = self._conn.cursor()
            cursor.execute(sql, (*values, *params))
            return cursor.rowcount

    def _resumable(self) -> str:
        return f"(status = '{FAILED}' AND reason IN ({', '.join([self._p] * len(RESUMABLE_REASONS))}))"

    def mark_new_batch(
        self, chunk_index: int, first_user: str, last_user: str, batch_id: str, expected: int
    ) -> int:
        """Mark a new multicast batch ``sending`` under its key, as its request is about to leave.

        The batch is the chunk's never-dispatched rows with LINE user ids in [first, last] (one UPDATE;
        "+chunk_index" keeps SQLite on the recipient index). Raises, rolling the mark back, unless
        exactly ``expected`` rows were marked: the batch is then never sent.
        """
        where = (
            f"line_user_id BETWEEN {self._p} AND {self._p} AND +chunk_index = {self._p} "
            f"AND (status = '{PENDING}' OR ({self._resumable()} AND dispatched_at IS NULL))"
        )
        assignments = {
            "status": SENDING, "reason": None, "batch_id": batch_id, "retry_key": batch_id,
            "dispatched_at": self._now(),
        }  # fmt: skip
        marked = self._update(assignments, where, (first_user, last_user, chunk_index, *RESUMABLE_REASONS))
        _expect_marked(marked, expected, f"batch {batch_id}")
        return marked

    def mark_batch_again(self, batch_id: str, first_user: str, last_user: str, expected: int) -> int:
        """Mark a batch that may have reached LINE ``sending`` again, same key and recipients, before resending."""
        where = (
            f"line_user_id BETWEEN {self._p} AND {self._p} AND batch_id = {self._p} "
            f"AND (status = '{SENDING}' OR {self._resumable()})"
        )
        marked = self._update(
            {"status": SENDING, "reason": None},
            where,
            (first_user, last_user, batch_id, *RESUMABLE_REASONS),
        )
        _expect_marked(marked, expected, f"batch {batch_id}")
        return marked

    def mark_push(self, rows: list[LedgerRow]) -> int:
        """Mark rows ``sending`` (each under its own push key) as their requests are about to leave.

        ``dispatched_at`` keeps the first time the key went out. Raises unless every row was marked.
        """
        now = self._now()
        ids = [row.profile_id for row in rows]
        where = (
            f"profile_id IN ({', '.join([self._p] * len(ids))}) "
            f"AND (status IN ('{PENDING}', '{SENDING}') OR {self._resumable()})"
        )
        sql = (
            f"UPDATE {TABLE} SET status = {self._p}, reason = NULL, "
            f"dispatched_at = COALESCE(dispatched_at, {self._p}), updated_at = {self._p} "
            f"WHERE run_key = {self._p} AND {where}"
        )
        with self.transaction():
            cursor = self._conn.cursor()
            cursor.execute(sql, (SENDING, now, now, self.run_key, *ids, *RESUMABLE_REASONS))
            marked = cursor.rowcount
            _expect_marked(marked, len(rows), f"{len(rows)} push rows")
        for row in rows:
            row.dispatched_at = row.dispatched_at or now
        return marked

    def rebatch(self, old_batch_id: str, new_batch_id: str, first_user: str, last_user: str) -> int:
        """Move a refused batch's remaining rows to a new key (LINE refused the old body: it holds no key)."""
        assignments = {"batch_id": new_batch_id, "retry_key": new_batch_id, "dispatched_at": self._now()}
        return self._update(assignments, self._in_batch(), (first_user, last_user, old_batch_id))

    def settle_batch(
        self, batch_id: str, first_user: str, last_user: str, *, attempts: int, **outcome: Any
    ) -> int:
        """Write one outcome for every row of a batch still ``sending`` (one UPDATE)."""
        return self._update(
            outcome,
            self._in_batch(),
            (first_user, last_user, batch_id),
            increments={"attempts": attempts},
        )

    def _in_batch(self) -> str:
        # A batch is a range of LINE user ids: the recipient index finds its rows, and no batch index
        # has to be maintained on every mark and settle.
        return (
            f"line_user_id BETWEEN {self._p} AND {self._p} AND batch_id = {self._p} AND status = '{SENDING}'"
        )

    def is_stale(self, row: LedgerRow, margin: timedelta = timedelta(0)) -> bool:
        """Tell whether a row's retry key has outlived LINE's 24 h memory of it (less ``margin``).

        LINE counts the 24 h from the key's first request: ``dispatched_at`` (rows written before it
        existed fall back to ``updated_at``, a later time, so the check stays on the safe side... of
        resending: it is only used for rows that may have been accepted).
        """
        stamp = row.dispatched_at or row.updated_at
        if stamp is None:
            return False
        first = datetime.fromisoformat(str(stamp))
        if first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        return self.clock() - first > RETRY_KEY_LIFETIME - margin


# Deprecated alias, kept for one release: the class was ``DeliveryLedger`` until the delivery log got one
# name. Import ``DeliveryLog``. (The module ``line_oa.delivery_log.store`` and the connection id ``line_oa_ledger``
# keep their names: renaming them would break deployments.)
DeliveryLedger = DeliveryLog


def _expect_marked(marked: int, expected: int, what: str) -> None:
    """Refuse a mark that did not touch exactly the rows it was for (rolls the transaction back)."""
    if marked != expected:
        from line_oa.errors import LineOAError

        raise LineOAError(f"{what}: {marked} rows marked for {expected} recipients; not sent")
