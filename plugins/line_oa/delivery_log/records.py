"""What the delivery log keeps per run: the one-off guard's deliveries and the runs' summaries."""

from __future__ import annotations

import json
from typing import Any

from line_oa.delivery_log.rows import DELIVERY_TABLE, SUMMARY_TABLE, TABLE
from line_oa.vocabulary import Status


class RunRecords:
    """Per-run records of ``DeliveryLog`` (a mixin): entering a real delivery, writing the summary."""

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
            f"AND status IN ('{Status.SENT}', '{Status.SENDING}')",
        )
        for sql in queries:
            cursor.execute(sql + " LIMIT 1", params)
            row = cursor.fetchone()
            if row:
                return str(row[0])
        return None

    def delivered_runs(self) -> set[str]:
        """Return the runs of this campaign recorded as real deliveries (they passed their launch checks)."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT run_id FROM {DELIVERY_TABLE} WHERE campaign_id = {self._p}", (self.campaign_id,)
        )
        return {str(row[0]) for row in cursor.fetchall()}

    def write_summary(self, summary: dict[str, Any]) -> None:
        """UPSERT the run's summary row (``line_campaign_summary``)."""
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
