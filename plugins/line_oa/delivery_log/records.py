"""What the delivery log keeps per run: the one-off guard's deliveries and the runs' summaries."""

from __future__ import annotations

import json
from typing import Any

from line_oa.delivery_log.rows import DELIVERY_TABLE, EVENT_TABLE, RUN_TABLE, SUMMARY_TABLE, TABLE
from line_oa.vocabulary import Status


class RunRecords:
    """Per-run records of ``DeliveryLog`` (a mixin): entering a real delivery, writing the summary."""

    def enter_delivery(
        self,
        *,
        one_off: bool,
        redeliver: bool,
        workspace: str | None = None,
        sender_account: str | None = None,
    ) -> str | None:
        """Record this run as a real delivery of the campaign, unless a one-off campaign has another.

        Atomic (a lock per campaign), so two runs launched together cannot both pass. Returns the id of
        the run that blocks this one (nothing recorded then), or None. Entering the same run again (a
        resumed run) is allowed. ``workspace`` and ``sender_account`` are where the run delivers (what
        frequency caps count by); entering again records them for a run entered before they were.
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
                f"SELECT 1 FROM {DELIVERY_TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p}",
                (self.campaign_id, self.run_id),
            )
            if cursor.fetchone() is None:  # a retried or re-run validate of the same run is no event
                self._add_event(cursor, "started", "redeliver" if redeliver else "")
            cursor.execute(
                f"INSERT INTO {DELIVERY_TABLE} (campaign_id, run_id, redeliver, started_at, workspace, sender_account) "
                f"VALUES ({self._p}, {self._p}, {self._p}, {self._p}, {self._p}, {self._p}) "
                "ON CONFLICT (campaign_id, run_id) DO UPDATE SET "
                f"workspace = COALESCE({DELIVERY_TABLE}.workspace, excluded.workspace), "
                f"sender_account = COALESCE({DELIVERY_TABLE}.sender_account, excluded.sender_account)",
                (self.campaign_id, self.run_id, int(redeliver), self._now(), workspace, sender_account),
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
            f"SELECT k.run_id FROM {RUN_TABLE} AS k JOIN {TABLE} AS l ON l.run_key = k.run_key "
            f"WHERE k.campaign_id = {p} AND k.run_id <> {p} AND l.is_test = 0 "
            f"AND l.status IN ('{Status.SENT}', '{Status.SENDING}')",
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

    def _add_event(self, cursor: Any, event: str, detail: str = "") -> None:
        cursor.execute(
            f"INSERT INTO {EVENT_TABLE} (campaign_id, run_id, at, event, detail) "
            f"VALUES ({self._p}, {self._p}, {self._p}, {self._p}, {self._p})",
            (self.campaign_id, self.run_id, self._now(), event, detail),
        )

    def run_history(self) -> list[dict[str, str]]:
        """Return the run's events in order: started, suspended, resumed, finished (with details)."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT at, event, detail FROM {EVENT_TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p} "
            "ORDER BY at",
            (self.campaign_id, self.run_id),
        )
        return [{"at": str(at), "event": event, "detail": detail} for at, event, detail in cursor.fetchall()]

    def run_summary(self) -> dict[str, Any] | None:
        """Return the run's latest summary (``summary_json``), or None before ``summarize`` ran."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT summary_json FROM {SUMMARY_TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p}",
            (self.campaign_id, self.run_id),
        )
        row = cursor.fetchone()
        return json.loads(row[0]) if row else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        """UPSERT the run's summary row (``line_campaign_summary``) and record its state as an event."""
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
        with self.transaction():
            cursor = self._conn.cursor()
            previous = self.run_summary()
            cursor.execute(sql, tuple(values[c] for c in cols))
            if not summary.get("dry_run"):
                self._summary_events(cursor, summary, previous)

    def _summary_events(self, cursor: Any, summary: dict[str, Any], previous: dict[str, Any] | None) -> None:
        """Record the run's state as an event. A summary that repeats the previous one (a summarize
        retry) adds nothing; a new summary after a Suspended one means the run was resumed (its failed
        tasks cleared and run again)."""
        key = ("state", "sent", "not_sent", "to_resume")
        if previous is not None and all(previous.get(k) == summary.get(k) for k in key):
            return
        if previous is not None and previous.get("state") == "Suspended":
            self._add_event(cursor, "resumed", "failed tasks cleared and run again after the suspension")
        left = int(summary.get("not_sent") or 0) + int(summary.get("to_resume") or 0)
        detail = f"{summary.get('sent', 0)} sent" + (f", {left} not yet sent" if left else "")
        self._add_event(cursor, str(summary.get("state", "")).lower(), detail)
