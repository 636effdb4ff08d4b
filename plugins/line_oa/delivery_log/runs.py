"""Each run's short key in the delivery log, and the migration of a log written before run keys.

The log's primary key and indexes, and the frequency claims' key, begin with ``run_key``: an integer
from ``line_delivery_run`` instead of the two text ids (``campaign_id``, ``run_id``) in every index
entry. Registering 950,000 recipients into SQLite took 12.7 s instead of 19.2-20.6 s with the text
ids (benchmarks/analysis.md). Every row keeps ``campaign_id`` and ``run_id``, so auditors' queries by
them keep working; the package's own queries of one run go through the key.
"""

from __future__ import annotations

import logging
from typing import Any

from line_oa.delivery_log.rows import FREQUENCY_CLAIM_TABLE, RUN_TABLE, TABLE

log = logging.getLogger(__name__)

KEYED_TABLES = (TABLE, FREQUENCY_CLAIM_TABLE)  # the tables whose keys begin with run_key
OLD_SUFFIX = "_before_run_key"  # an earlier release's table while its rows are copied


class RunKeys:
    """The run-key side of ``DeliveryLog`` (a mixin: it uses the log's connection and lock)."""

    @property
    def run_key(self) -> int:
        """This run's key in ``line_delivery_run``, entered the first time the run needs one.

        Entered in a transaction of its own (never inside a caller's: its rollback would leave this
        log holding a key no other task finds), which ``transaction()`` ensures by entering it first.
        """
        if self._run_key is None:
            with self._lock:
                if self._in_transaction:
                    raise RuntimeError("a run's key is entered before its transaction, not inside it")
                self._enter_run()
        return self._run_key

    def _enter_run(self) -> None:
        cursor = self._conn.cursor()
        try:
            key = self._find_run_key(cursor)
            if key is None:
                cursor.execute(
                    f"INSERT INTO {RUN_TABLE} (campaign_id, run_id) VALUES ({self._p}, {self._p}) "
                    "ON CONFLICT (campaign_id, run_id) DO NOTHING",
                    (self.campaign_id, self.run_id),
                )
                key = self._find_run_key(cursor)
            self._conn.commit()
        except BaseException:
            self._conn.rollback()  # PostgreSQL: leave no failed transaction behind for the next write
            raise
        self._run_key = key

    def _find_run_key(self, cursor: Any) -> int | None:
        cursor.execute(
            f"SELECT run_key FROM {RUN_TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p}",
            (self.campaign_id, self.run_id),
        )
        row = cursor.fetchone()
        return None if row is None else int(row[0])

    def _tables_without_run_key(self, cursor: Any) -> list[str]:
        """The keyed tables that exist in an earlier release's layout (no ``run_key`` column)."""
        found = []
        for table in KEYED_TABLES:
            columns = self._columns(cursor, table)
            if columns and "run_key" not in columns:
                found.append(table)
        return found

    def migrate_to_run_keys(self, statements: list[str]) -> None:
        """Move an earlier release's log and frequency claims to the run-key layout, in one transaction.

        Each old table is renamed aside (its indexes and primary key dropped, their names being the new
        table's), the schema's ``statements`` create the new tables, every run gets its key, and the rows
        are copied with it. Under the schema lock (PostgreSQL's advisory lock, SQLite's write lock), and
        checked again under it: of several tasks opening an old log at once, one migrates. A role that
        may not alter the tables gets an error that says what to run.
        """
        from line_oa.errors import LineOAError

        cursor = self._conn.cursor()
        if self.dialect == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('line_delivery_log'))")
        try:
            old = self._tables_without_run_key(cursor)
            for table in old:
                self._set_aside(cursor, table)
            for statement in statements:
                cursor.execute(statement)
            moved = {table: self._copy_with_run_keys(cursor, table) for table in old}
            self._conn.commit()
        except Exception as err:
            self._conn.rollback()
            raise LineOAError(
                f"The delivery log's tables {', '.join(KEYED_TABLES)} are from an earlier release (no "
                f"run_key) and could not be moved to this release's layout: {str(err).splitlines()[0]}. "
                "Open the log once with the tables' owner (docs/operations.md, 'Upgrading the delivery log')."
            ) from err
        if moved:
            log.warning("Moved the delivery log to run keys (rows per table: %s)", moved)

    def _set_aside(self, cursor: Any, table: str) -> None:
        if self.dialect == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                (table,),
            )
            for (index,) in cursor.fetchall():
                cursor.execute(f'DROP INDEX "{index}"')
        else:
            cursor.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass "
                "AND NOT indisprimary",
                (table,),
            )
            for (index,) in cursor.fetchall():
                cursor.execute(f"DROP INDEX {index}")
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", (table,)
            )
            for (constraint,) in cursor.fetchall():
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}{OLD_SUFFIX}")

    def _copy_with_run_keys(self, cursor: Any, table: str) -> int:
        aside = f"{table}{OLD_SUFFIX}"
        columns = sorted((self._columns(cursor, table) & self._columns(cursor, aside)) - {"run_key"})
        cursor.execute(
            f"INSERT INTO {RUN_TABLE} (campaign_id, run_id) SELECT DISTINCT campaign_id, run_id FROM {aside} "
            "WHERE true ON CONFLICT (campaign_id, run_id) DO NOTHING"
        )
        cursor.execute(
            f"INSERT INTO {table} (run_key, {', '.join(columns)}) "
            f"SELECT k.run_key, {', '.join(f'o.{c}' for c in columns)} FROM {aside} AS o "
            f"JOIN {RUN_TABLE} AS k ON k.campaign_id = o.campaign_id AND k.run_id = o.run_id"
        )
        moved = cursor.rowcount
        cursor.execute(f"DROP TABLE {aside}")
        return moved
