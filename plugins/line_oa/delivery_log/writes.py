"""Writing whole rows of the delivery log: outcomes (``upsert``) and rows a re-run must not change (``add``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from line_oa.delivery_log.rows import COLUMNS, IS_TEST, TABLE, UPDATED_ON_CONFLICT, LedgerRow, row_values

if TYPE_CHECKING:
    from collections.abc import Iterable

BATCH_SIZE = 1000  # rows a statement (PostgreSQL) or an ``executemany`` call (SQLite)
PROFILE_ID = COLUMNS.index("profile_id")


class RowWrites:
    """Whole-row writes of ``DeliveryLog`` (a mixin: it uses the log's connection, run and transaction)."""

    def _values(self, row: LedgerRow, now: str) -> tuple:
        values = list(row_values(row))
        values[IS_TEST] = int(bool(row.is_test))
        return (self.campaign_id, self.run_id, *values, now, row.updated_at or now, self.run_key)

    def _write(self, rows: Iterable[LedgerRow], *, overwrite: bool) -> int:
        """Insert rows, or on a row already there update it (``overwrite``) or leave it; committed.

        PostgreSQL takes each batch as one statement reading the rows from one JSON array
        (``json_populate_recordset``, typed by the table's own row type), where one statement a row
        cost twice the CPU (20,000 push outcomes in batches of 500: 0.7 s of the task's and 1.0 s of the
        server's, against 0.35 and 0.5 s; ``python -m benchmarks.run log_writes``). One statement may
        not update a row twice, so a batch keeps the last of a profile's rows, as one statement after
        another did.
        """
        conflict = "ON CONFLICT (run_key, profile_id) DO "
        if overwrite:
            conflict += "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in UPDATED_ON_CONFLICT)
        else:
            conflict += "NOTHING"
        columns = ", ".join(COLUMNS)
        if self.dialect == "postgres":
            source = f"SELECT {columns} FROM json_populate_recordset(NULL::{TABLE}, %s)"
        else:
            source = f"VALUES ({', '.join('?' * len(COLUMNS))})"
        sql = f"INSERT INTO {TABLE} ({columns}) {source} {conflict}"
        now = self._now()
        values = [self._values(row, now) for row in rows]
        with self.transaction():
            cursor = self._conn.cursor()
            for start in range(0, len(values), BATCH_SIZE):
                batch = values[start : start + BATCH_SIZE]
                if self.dialect == "sqlite":
                    cursor.executemany(sql, batch)
                    continue
                if overwrite:
                    batch = list({value[PROFILE_ID]: value for value in batch}.values())
                payload = [dict(zip(COLUMNS, value, strict=True)) for value in batch]
                cursor.execute(sql, (json.dumps(payload, ensure_ascii=False),))
        return len(values)

    def add(self, rows: Iterable[LedgerRow]) -> int:
        """Insert rows that are not in the log yet; existing rows (a re-run) are left as they are."""
        return self._write(rows, overwrite=False)

    def upsert(self, rows: Iterable[LedgerRow]) -> int:
        """Insert or update rows in batches, committed before returning."""
        return self._write(rows, overwrite=True)
