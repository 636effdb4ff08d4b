"""Frequency caps on the delivery log: how many campaign deliveries each LINE user had lately.

A delivery counts for a LINE user when another real run (of any campaign, or another run of the same
campaign) in the same workspace or on the same sender account has a non-test row for that user that
is ``sent`` within the window, or ``pending``/``sending`` and touched within the window (a delivery in
progress); or, before that run's rows reach the log, a claim it entered at extract time. The
frequency lock (a PostgreSQL advisory lock per workspace and per sender account; SQLite's
``BEGIN IMMEDIATE``) makes "count, then claim this run's recipients" one step: of two campaigns
extracting together, the second counts the first one's recipients.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from line_oa.delivery_log.registration import copy_to_staging, sqlite_insert_rows
from line_oa.delivery_log.rows import DELIVERY_TABLE, FREQUENCY_CLAIM_TABLE, RUN_TABLE, TABLE
from line_oa.vocabulary import Reason, Status

if TYPE_CHECKING:
    from collections.abc import Iterable

SCOPE_COLUMNS = ("workspace", "sender_account")
CLAIM_BATCH = 1000
# PostgreSQL: the session's temporary table the claims are copied into before one INSERT ... SELECT.
PG_CLAIM_STAGING = "line_oa_claims_in"


class FrequencyRecords:
    """Frequency-cap reads and claims of ``DeliveryLog`` (a mixin: it uses the log's connection)."""

    def _columns(self, cursor: Any, table: str) -> set[str]:
        if self.dialect == "sqlite":
            cursor.execute(f"PRAGMA table_info({table})")
            return {row[1] for row in cursor.fetchall()}
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
        return {row[0] for row in cursor.fetchall()}

    def _ensure_scope_columns(self, cursor: Any) -> None:
        """Add the run's workspace and sender account to a delivery table of an earlier release."""
        for column in sorted(set(SCOPE_COLUMNS) - self._columns(cursor, DELIVERY_TABLE)):
            if self.dialect == "postgres":
                cursor.execute(f"ALTER TABLE {DELIVERY_TABLE} ADD COLUMN IF NOT EXISTS {column} TEXT")
                continue
            try:
                cursor.execute(f"ALTER TABLE {DELIVERY_TABLE} ADD COLUMN {column} TEXT")
            except sqlite3.OperationalError as err:  # another task added it first
                if "duplicate column" not in str(err):
                    raise

    def lock_frequency(self, keys: Iterable[str]) -> None:
        """Take the frequency locks of ``keys`` until the open transaction ends (call inside one).

        PostgreSQL: one advisory lock per key, in sorted order (no deadlock between two runs); SQLite:
        the transaction's ``BEGIN IMMEDIATE`` already holds the file's write lock.
        """
        if self.dialect != "postgres":
            return
        cursor = self._conn.cursor()
        for key in sorted(set(keys)):
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"line_frequency:{key}",))

    def over_frequency_cap(self, *, scope: str, value: str, since: str, max_deliveries: int) -> set[str]:
        """Return the LINE users with at least ``max_deliveries`` deliveries by OTHER runs of the scope
        (``workspace`` or ``sender_account`` equal to ``value``) since ``since`` (ISO UTC)."""
        if scope not in SCOPE_COLUMNS:
            raise ValueError(f"unknown frequency cap scope {scope!r}")
        p = self._p
        # the scope's other runs, then their rows by run key
        runs = (
            f"{DELIVERY_TABLE} AS d JOIN {RUN_TABLE} AS k ON k.campaign_id = d.campaign_id AND k.run_id = d.run_id "
            "JOIN {table} AS {t} ON {t}.run_key = k.run_key "
            f"WHERE d.{scope} = {p} AND NOT (d.campaign_id = {p} AND d.run_id = {p})"
        )
        sql = f"""SELECT line_user_id FROM (
SELECT l.line_user_id FROM {runs.format(table=TABLE, t="l")}
    AND l.is_test = 0 AND l.line_user_id IS NOT NULL
    AND ((l.status = '{Status.SENT}' AND COALESCE(l.sent_at, l.updated_at) >= {p})
         OR (l.status IN ('{Status.PENDING}', '{Status.SENDING}') AND l.updated_at >= {p}))
UNION ALL
SELECT c.line_user_id FROM {runs.format(table=FREQUENCY_CLAIM_TABLE, t="c")} AND c.claimed_at >= {p}
    AND NOT EXISTS (SELECT 1 FROM {TABLE} AS r WHERE r.run_key = c.run_key
                    AND r.line_user_id = c.line_user_id AND r.status <> '{Status.EXCLUDED}')
) AS deliveries GROUP BY line_user_id HAVING COUNT(*) >= {p}"""
        mine = (value, self.campaign_id, self.run_id)
        cursor = self._conn.cursor()
        cursor.execute(sql, (*mine, since, since, *mine, since, max_deliveries))
        users = {str(row[0]) for row in cursor.fetchall()}
        self._commit()
        return users

    def frequency_outcomes(self) -> tuple[set[str], set[str]]:
        """Return this run's LINE users already ``frequency_capped``, and those already registered for
        sending (any row that is not excluded): a resumed run keeps both outcomes."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT line_user_id, status FROM {TABLE} WHERE run_key = {self._p} "
            f"AND line_user_id IS NOT NULL AND (status <> '{Status.EXCLUDED}' OR reason = {self._p})",
            (self.run_key, Reason.FREQUENCY_CAPPED),
        )
        capped, registered = set(), set()
        for user, status in cursor.fetchall():
            (capped if status == Status.EXCLUDED else registered).add(str(user))
        self._commit()
        return capped, registered

    def claim_recipients(self, users: Iterable[str]) -> int:
        """Enter this run's LINE users as claims (kept as they are when a retried extract enters them again)."""
        sql = (
            f"INSERT INTO {FREQUENCY_CLAIM_TABLE} (run_key, campaign_id, run_id, line_user_id, claimed_at) "
            f"VALUES ({self._p}, {self._p}, {self._p}, {self._p}, {self._p}) "
            "ON CONFLICT (run_key, line_user_id) DO NOTHING"
        )
        now, batch, count = self._now(), [], 0
        if self.dialect == "postgres" and self._can_copy():  # one statement, not one per user
            with self.transaction():
                return self._copy_claims(users, now)
        if self.dialect == "sqlite":  # a statement per few thousand users (``sqlite_insert_rows``)
            with self.transaction():
                return sqlite_insert_rows(
                    self._conn.cursor(),
                    f"INSERT INTO {FREQUENCY_CLAIM_TABLE} (run_key, campaign_id, run_id, line_user_id, claimed_at) "
                    "{select} ON CONFLICT (run_key, line_user_id) DO NOTHING",
                    "?, ?, ?, {0}, ?",
                    (self.run_key, self.campaign_id, self.run_id, now),
                    ((user,) for user in users),
                )
        with self.transaction():
            cursor = self._conn.cursor()
            for user in users:
                batch.append((self.run_key, self.campaign_id, self.run_id, user, now))
                if len(batch) >= CLAIM_BATCH:
                    cursor.executemany(sql, batch)
                    count, batch = count + len(batch), []
            if batch:
                cursor.executemany(sql, batch)
        return count + len(batch)

    def _copy_claims(self, users: Iterable[str], now: str) -> int:
        """PostgreSQL: ``COPY`` the users into a temporary table, then one ``INSERT … SELECT`` (as
        ``add_pending`` registers a chunk; ``_can_copy`` is the registration mixin's); return how many
        users were given."""
        cursor = self._conn.cursor()
        count = copy_to_staging(cursor, PG_CLAIM_STAGING, ("line_user_id",), ((user,) for user in users))
        cursor.execute(
            f"INSERT INTO {FREQUENCY_CLAIM_TABLE} (run_key, campaign_id, run_id, line_user_id, claimed_at) "
            f"SELECT %s, %s, %s, line_user_id, %s::timestamptz FROM {PG_CLAIM_STAGING} "
            "ON CONFLICT (run_key, line_user_id) DO NOTHING",
            (self.run_key, self.campaign_id, self.run_id, now),
        )
        return count
