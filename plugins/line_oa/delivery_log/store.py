"""The delivery log: one row per (campaign, run, profile) saying what happened to that profile.

Written through a common.sql hook (SQLite by default, PostgreSQL in production) with batched
UPSERTs. The log is what makes delivery exactly-once: a row is marked ``sending`` with its retry
key before the request leaves, and only rows that are not final are ever sent again.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import operator
import os
import re
import sqlite3
import threading
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.vocabulary import RESUMABLE_REASONS, Status

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Callable, Iterable, Iterator

    from airflow.providers.common.sql.hooks.sql import DbApiHook

DEFAULT_LEDGER_CONN_ID = str(settings.OPTIONS["ledger_conn_id"].default)
log = logging.getLogger(__name__)

TABLE = "line_delivery_log"
SUMMARY_TABLE = "line_campaign_summary"
CLAIM_TABLE = "line_delivery_claim"
DELIVERY_TABLE = "line_campaign_delivery"
BATCH_SIZE = 1000

# Must match the WITH clause of schema/postgres.sql (package data beside this module).
PG_FILLFACTOR = "fillfactor=50"
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


class ChunkClaimLost(Exception):
    """Another sender took this chunk (a retry racing a zombie task): this one may not write or send."""


def data_dir() -> pathlib.Path:
    """Return the project's data directory (``[line_oa] data_dir``), created if missing."""
    path = settings.data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(slots=True)
class LedgerRow:
    """One profile's line in the delivery log (slots: a chunk task holds tens of thousands of them)."""

    profile_id: str
    line_user_id: str | None
    status: str
    reason: str | None = None
    chunk_index: int | None = None
    batch_id: str | None = None
    retry_key: str | None = None
    http_status: int | None = None
    line_request_id: str | None = None
    accepted_request_id: str | None = None
    line_message: str | None = None
    attempts: int = 0
    is_test: bool = False
    sent_at: str | None = None
    dispatched_at: str | None = None
    updated_at: str | None = None


_ROW_FIELDS = [f.name for f in fields(LedgerRow) if f.name not in ("updated_at",)]
_COLUMNS = ["campaign_id", "run_id", *_ROW_FIELDS, "created_at", "updated_at"]
_row_values = operator.attrgetter(*_ROW_FIELDS)  # fast: this runs once per recipient and write
_IS_TEST = _ROW_FIELDS.index("is_test")
_UPDATED_ON_CONFLICT = [c for c in _ROW_FIELDS if c not in ("profile_id",)] + ["updated_at"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def sql_hook(conn_id: str, fallback_sqlite_file: pathlib.Path) -> DbApiHook:
    """Return the common.sql hook of ``conn_id``, or a SQLite file hook when it is not defined."""
    from airflow.sdk import Connection

    from line_oa.errors import LineOAError

    try:
        conn = Connection.get(conn_id)
    except Exception as err:  # AirflowNotFoundException differs between core and the task SDK
        if "isn't defined" not in str(err) and "not found" not in str(err).lower():
            raise
        return sqlite_file_hook(fallback_sqlite_file, conn_id=conn_id)
    hook = conn.get_hook()
    if not hasattr(hook, "get_conn") or not hasattr(hook, "placeholder"):
        raise LineOAError(f"Connection {conn_id!r} ({conn.conn_type}) is not a SQL connection")
    return hook


def ledger_hook(conn_id: str | None = None) -> DbApiHook:
    """Return the common.sql hook of the delivery log's connection.

    When the connection (default ``line_oa_ledger``) is not defined, the log is a SQLite file
    ``delivery_log.db`` under the project's data directory.
    """
    conn_id = conn_id or settings.ledger_conn_id()
    hook = sql_hook(conn_id, data_dir() / "delivery_log.db")
    if not any(name in type(hook).__name__.lower() for name in ("sqlite", "postgres")):
        from line_oa.errors import LineOAError

        raise LineOAError(f"Delivery log connection {conn_id!r} must be sqlite or postgres")
    return hook


def sqlite_file_hook(path: str | pathlib.Path, *, conn_id: str = DEFAULT_LEDGER_CONN_ID) -> DbApiHook:
    """Return a ``SqliteHook`` on a file, without an Airflow connection having to be defined."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook
    from airflow.sdk import Connection

    class FileSqliteHook(SqliteHook):
        def get_uri(self) -> str:
            return f"sqlite:///{self.connection.host}"

    return FileSqliteHook(connection=Connection(conn_id=conn_id, conn_type="sqlite", host=str(path)))


class DeliveryLog:
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
        self.fence: tuple[int, int] | None = None  # (chunk index, epoch) this log's writes must hold
        self.abandoned = False  # a write never came back: the connection is left alone (see close)
        if self.dialect == "sqlite":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA busy_timeout={settings.log_busy_timeout_ms()}")
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
        """Create the tables from the package's ``schema/<dialect>.sql`` when missing."""
        ddl = schema_sql(self.dialect)
        cursor = self._conn.cursor()
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
        for statement in (s.strip() for s in ddl.split(";")):
            body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
            if body.strip():
                cursor.execute(body)
        self._conn.commit()
        if self.dialect == "postgres":
            self._ensure_fillfactor()
        self._ensure_columns()

    def _ensure_columns(self) -> None:
        """Add columns a log created by an earlier release lacks (``dispatched_at``)."""
        cursor = self._conn.cursor()
        if self.dialect == "sqlite":
            cursor.execute(f"PRAGMA table_info({TABLE})")
            columns = {row[1] for row in cursor.fetchall()}
        else:
            cursor.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (TABLE,)
            )
            columns = {row[0] for row in cursor.fetchall()}
        if "dispatched_at" not in columns:
            kind = "TEXT" if self.dialect == "sqlite" else "TIMESTAMPTZ"
            cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN dispatched_at {kind}")
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

    def _values(self, row: LedgerRow, now: str) -> tuple:
        values = list(_row_values(row))
        values[_IS_TEST] = int(bool(row.is_test))
        return (self.campaign_id, self.run_id, *values, now, row.updated_at or now)

    def _write(self, rows: Iterable[LedgerRow], *, overwrite: bool) -> int:
        placeholders = ", ".join([self._p] * len(_COLUMNS))
        sql = f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
        sql += "ON CONFLICT (campaign_id, run_id, profile_id) DO "
        if overwrite:
            sql += "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _UPDATED_ON_CONFLICT)
        else:
            sql += "NOTHING"
        now = self._now()
        values = [self._values(row, now) for row in rows]
        with self.transaction():
            cursor = self._conn.cursor()
            for start in range(0, len(values), BATCH_SIZE):
                cursor.executemany(sql, values[start : start + BATCH_SIZE])
        return len(values)

    def add(self, rows: Iterable[LedgerRow]) -> int:
        """Insert rows that are not in the log yet; existing rows (a re-run) are left as they are."""
        return self._write(rows, overwrite=False)

    def upsert(self, rows: Iterable[LedgerRow]) -> int:
        """Insert or update rows in batches, committed before returning."""
        return self._write(rows, overwrite=True)

    def _update(
        self, assignments: dict[str, Any], where: str, params: tuple, *, increments: dict | None = None
    ) -> int:
        """Run one set-based UPDATE on this run's rows; return the number of rows changed (committed)."""
        sets = [f"{column} = {self._p}" for column in assignments]
        sets += [f"{column} = {column} + {self._p}" for column in increments or {}]
        sql = (
            f"UPDATE {TABLE} SET {', '.join(sets)}, updated_at = {self._p} "
            f"WHERE campaign_id = {self._p} AND run_id = {self._p} AND {where}"
        )
        values = (
            *assignments.values(),
            *(increments or {}).values(),
            self._now(),
            self.campaign_id,
            self.run_id,
        )
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
            f"WHERE campaign_id = {self._p} AND run_id = {self._p} AND {where}"
        )
        with self.transaction():
            cursor = self._conn.cursor()
            cursor.execute(sql, (SENDING, now, now, self.campaign_id, self.run_id, *ids, *RESUMABLE_REASONS))
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

    def unsent_count(self) -> int:
        """Return how many of this run's rows still wait to be sent (pending, sending or resumable)."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p} "
            f"AND (status IN ('{PENDING}', '{SENDING}') OR {self._resumable()})",
            (self.campaign_id, self.run_id, *RESUMABLE_REASONS),
        )
        count = int(cursor.fetchone()[0])
        self._commit()
        return count

    def row_count(self) -> int:
        """Return how many rows this run has in the log."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p}",
            (self.campaign_id, self.run_id),
        )
        count = int(cursor.fetchone()[0])
        self._commit()
        return count

    def chunk_size_logged(self, chunk_index: int) -> int:
        """Return how many rows of a chunk the log already holds."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p} "
            f"AND chunk_index = {self._p}",
            (self.campaign_id, self.run_id, chunk_index),
        )
        return int(cursor.fetchone()[0])

    def _select(self, where: str, params: tuple) -> Iterator[LedgerRow]:
        cols = [*_ROW_FIELDS, "updated_at"]
        sql = f"SELECT {', '.join(cols)} FROM {TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p}"
        cursor = self._conn.cursor()
        cursor.execute(f"{sql} AND {where} ORDER BY profile_id", (self.campaign_id, self.run_id, *params))
        while batch := cursor.fetchmany(5000):
            for values in batch:
                row = LedgerRow(**dict(zip(cols, values, strict=True)))
                row.is_test = bool(row.is_test)
                if row.updated_at is not None and not isinstance(row.updated_at, str):
                    row.updated_at = row.updated_at.isoformat()
                if row.sent_at is not None and not isinstance(row.sent_at, str):
                    row.sent_at = row.sent_at.isoformat()
                if row.dispatched_at is not None and not isinstance(row.dispatched_at, str):
                    row.dispatched_at = row.dispatched_at.isoformat()
                yield row

    def rows_to_send(self, chunk_index: int) -> list[LedgerRow]:
        """Return the chunk's rows that are not final: pending, sending, or failed without acceptance."""
        reasons = ", ".join([self._p] * len(RESUMABLE_REASONS))
        where = (
            f"chunk_index = {self._p} AND (status IN ('{PENDING}', '{SENDING}') "
            f"OR (status = '{FAILED}' AND reason IN ({reasons})))"
        )
        return list(self._select(where, (chunk_index, *RESUMABLE_REASONS)))

    def rows(self, status: str | None = None) -> Iterator[LedgerRow]:
        """Iterate over this run's rows (optionally of one status), ordered by profile id."""
        if status is None:
            return self._select("1 = 1", ())
        return self._select(f"status = {self._p}", (status,))

    def counts(self) -> dict[tuple[str, str | None, bool], int]:
        """Return row counts by (status, reason, is_test) for this run."""
        sql = (
            f"SELECT status, reason, is_test, COUNT(*) FROM {TABLE} WHERE campaign_id = {self._p} "
            f"AND run_id = {self._p} GROUP BY status, reason, is_test"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, (self.campaign_id, self.run_id))
        return {(s, r, bool(t)): int(n) for s, r, t, n in cursor.fetchall()}

    def totals(self) -> dict[str, int]:
        """Return requests-related totals for this run: attempts summed over rows and batches."""
        sql = (
            f"SELECT COALESCE(SUM(attempts), 0), MIN(created_at), MAX(sent_at) FROM {TABLE} "
            f"WHERE campaign_id = {self._p} AND run_id = {self._p}"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, (self.campaign_id, self.run_id))
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
            f"SELECT {bucket} AS s, COUNT(*) FROM {TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p} "
            f"AND status = '{SENT}' AND sent_at IS NOT NULL GROUP BY s ORDER BY s"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, (self.campaign_id, self.run_id))
        return [(str(s), int(n)) for s, n in cursor.fetchall()]

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

    def enter_delivery(self, *, one_off: bool, redeliver: bool) -> str | None:
        """Record this run as a real delivery of the campaign, unless a one-off campaign has another.

        Atomic (a lock per campaign), so two runs launched together cannot both pass. Returns the id of
        the run that blocks this one (nothing recorded then), or None. Entering the same run again (a
        resumed run) is allowed.
        """
        with self.transaction():
            cursor = self._conn.cursor()
            if self.dialect == "postgres":
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{DELIVERY_TABLE}:{self.campaign_id}",)
                )
            if one_off and not redeliver:
                blocking = self._other_real_run(cursor)
                if blocking is not None:
                    return blocking
            cursor.execute(
                f"INSERT INTO {DELIVERY_TABLE} (campaign_id, run_id, redeliver, started_at) "
                f"VALUES ({self._p}, {self._p}, {self._p}, {self._p}) ON CONFLICT (campaign_id, run_id) DO NOTHING",
                (self.campaign_id, self.run_id, int(redeliver), self._now()),
            )
        return None

    def _other_real_run(self, cursor: Any) -> str | None:
        """Return another run of this campaign that delivered (or began to deliver) for real, if any."""
        p, params = self._p, (self.campaign_id, self.run_id)
        queries = (
            f"SELECT run_id FROM {DELIVERY_TABLE} WHERE campaign_id = {p} AND run_id <> {p}",
            # logs written before the delivery table existed
            f"SELECT run_id FROM {SUMMARY_TABLE} WHERE campaign_id = {p} AND run_id <> {p} "
            "AND state = 'Finished' AND dry_run = 0 AND targeted > 0",
            f"SELECT run_id FROM {TABLE} WHERE campaign_id = {p} AND run_id <> {p} AND is_test = 0 "
            f"AND status IN ('{SENT}', '{SENDING}')",
        )
        for sql in queries:
            cursor.execute(sql + " LIMIT 1", params)
            row = cursor.fetchone()
            if row:
                return str(row[0])
        return None

    def write_summary(self, summary: dict[str, Any]) -> None:
        """UPSERT the run's summary row (``line_campaign_summary``)."""
        import json

        cols = [
            "campaign_id", "run_id", "state", "dry_run", "targeted", "excluded", "sent", "failed", "not_sent",
            "test_sends", "messages_billed", "requests", "retries", "started_at", "finished_at", "summary_json",
        ]  # fmt: skip
        values = {
            **{c: summary.get(c) for c in cols},
            "campaign_id": self.campaign_id,
            "run_id": self.run_id,
            "dry_run": int(bool(summary.get("dry_run"))),
            "excluded": sum(summary.get("excluded", {}).values()),
            "failed": sum(summary.get("failed", {}).values()),
            "summary_json": json.dumps(summary, sort_keys=True, default=str),
        }
        placeholders = ", ".join([self._p] * len(cols))
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[2:])
        sql = (
            f"INSERT INTO {SUMMARY_TABLE} ({', '.join(cols)}) VALUES ({placeholders}) "
            f"ON CONFLICT (campaign_id, run_id) DO UPDATE SET {updates}"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, tuple(values[c] for c in cols))
        self._conn.commit()


# Deprecated alias, kept for one release: the class was ``DeliveryLedger`` until the delivery log got one
# name. Import ``DeliveryLog``. (The module ``line_oa.delivery_log.store`` and the connection id ``line_oa_ledger``
# keep their names: renaming them would break deployments.)
DeliveryLedger = DeliveryLog


def _expect_marked(marked: int, expected: int, what: str) -> None:
    """Refuse a mark that did not touch exactly the rows it was for (rolls the transaction back)."""
    if marked != expected:
        from line_oa.errors import LineOAError

        raise LineOAError(f"{what}: {marked} rows marked for {expected} recipients; not sent")
