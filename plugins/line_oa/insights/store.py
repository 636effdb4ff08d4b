"""The statistics table (``line_insight_statistics``) beside the delivery log, on the same connection.

Each fetch of LINE's statistics per unit is stored under its fetch key (campaign, unit, period, day
collected for) as rows: one ``overview``, one ``message`` per seq, one ``click`` per (seq, url). Saving the same
fetch key again updates those rows in place (an upsert in one transaction), so collecting twice never
adds rows. LINE's ``null`` (fewer than 20 users) is stored as NULL, never as 0.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from line_oa import settings
from line_oa.delivery_log.connections import ledger_hook
from line_oa.delivery_log.rows import RUN_TABLE, SUMMARY_TABLE, TABLE
from line_oa.insights.figures import CampaignFigures, campaign_figures, latest_overview
from line_oa.insights.periods import JST
from line_oa.vocabulary import Status

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from line_oa.insights.periods import Fetch

STATISTICS_TABLE = "line_insight_statistics"
UNIT_TABLE = "line_insight_unit"
#: Campaigns sharing a unit (``aggregation_unit``) keep their own rows: the campaign is part of the key.
KEY = ("campaign_id", "unit", "date_from", "date_to", "as_of_day", "kind", "seq", "url")
VALUES = (
    "unique_impression", "unique_click", "unique_media_played", "impression", "click",
    "fetched_at",
)  # fmt: skip


@dataclass(frozen=True)
class DeliveredCampaign:
    """A campaign's real sends (not test sends) under one unit in the delivery log since a given time."""

    campaign_id: str
    unit: str | None  # the unit its runs recorded (None: runs from before units were recorded)
    first_sent: dt.datetime
    last_sent: dt.datetime
    sent: int


def rows_of_fetch(fetch: Fetch, body: dict[str, Any], fetched_at: dt.datetime) -> list[dict[str, Any]]:
    """Turn LINE's statistics body into the table's rows (``None`` stays ``None``)."""
    common = {**fetch.to_dict(), "fetched_at": fetched_at}
    overview = body.get("overview") or {}
    rows = [
        {
            **common, "kind": "overview", "seq": 0, "url": "",
            "unique_impression": overview.get("uniqueImpression"), "unique_click": overview.get("uniqueClick"),
            "unique_media_played": overview.get("uniqueMediaPlayed"), "impression": None, "click": None,
        }
    ]  # fmt: skip
    for message in body.get("messages") or []:
        rows.append(
            {
                **common, "kind": "message", "seq": int(message["seq"]), "url": "",
                "unique_impression": message.get("uniqueImpression"), "unique_click": None,
                "unique_media_played": message.get("uniqueMediaPlayed"), "impression": message.get("impression"),
                "click": None,
            }
        )  # fmt: skip
    for click in body.get("clicks") or []:
        rows.append(
            {
                **common, "kind": "click", "seq": int(click["seq"]), "url": str(click.get("url") or ""),
                "unique_impression": None, "unique_click": click.get("uniqueClick"), "unique_media_played": None,
                "impression": None, "click": click.get("click"),
            }
        )  # fmt: skip
    return rows


class InsightStore:
    """Read and write LINE's statistics and the delivery facts they are compared with.

    :param hook: the delivery log's common.sql hook (``SqliteHook`` or ``PostgresHook``).
    """

    def __init__(self, hook: DbApiHook):
        self.dialect = "postgres" if "postgres" in type(hook).__name__.lower() else "sqlite"
        self._p = "%s" if self.dialect == "postgres" else "?"
        if self.dialect == "sqlite":
            uri = hook.get_uri().replace("sqlite:///", "file:")
            self._conn = sqlite3.connect(uri, uri=True)
            self._conn.execute(
                f"PRAGMA busy_timeout={settings.log_busy_timeout_ms()}"
            )  # beside delivery writes
        else:
            self._conn = hook.get_conn()
        self.ensure_schema()

    @classmethod
    def connect(cls, conn_id: str | None = None) -> InsightStore:
        """Open the statistics table on the delivery log's connection (see ``ledger_hook``).

        The delivery log's tables are created first when missing (a fresh install asked for insights
        before any delivery): the store reads them, and an empty log means "nothing delivered yet".
        """
        from line_oa.delivery_log.store import DeliveryLog

        DeliveryLog.connect(conn_id, campaign_id="", run_id="insights").close()  # its tables only
        return cls(ledger_hook(conn_id))

    def close(self) -> None:
        self._conn.close()

    def ensure_schema(self) -> None:
        """Create the statistics and unit tables from ``schema/insights_<dialect>.sql`` when missing."""
        schema = importlib.resources.files("line_oa.delivery_log") / "schema" / f"insights_{self.dialect}.sql"
        cursor = self._conn.cursor()
        if self.dialect == "postgres":
            # A role without CREATE rights may not even run CREATE ... IF NOT EXISTS: when an admin
            # created the table up front (docs/operations.md), leave it at that.
            cursor.execute("SELECT to_regclass(%s), to_regclass(%s)", (STATISTICS_TABLE, UNIT_TABLE))
            if all(cursor.fetchone()):
                self._conn.commit()
                return
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (STATISTICS_TABLE,))
        for statement in schema.read_text(encoding="utf-8").split(";"):
            body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
            if body.strip():
                cursor.execute(body)
        self._conn.commit()

    def _time(self, when: dt.datetime) -> Any:
        return when if self.dialect == "postgres" else when.astimezone(dt.UTC).isoformat()

    def delivered_since(self, since: dt.datetime) -> list[DeliveredCampaign]:
        """Return each campaign's real sends since ``since`` per recorded unit: first, last, how many."""
        sql = (
            f"SELECT log.campaign_id, unit.unit, MIN(log.sent_at), MAX(log.sent_at), COUNT(*) FROM {TABLE} log "
            f"LEFT JOIN {UNIT_TABLE} unit ON unit.campaign_id = log.campaign_id AND unit.run_id = log.run_id "
            f"WHERE log.status = '{Status.SENT}' AND log.is_test = 0 AND log.sent_at >= {self._p} "
            "GROUP BY log.campaign_id, unit.unit ORDER BY log.campaign_id, unit.unit"
        )
        cursor = self._conn.cursor()
        cursor.execute(sql, (self._time(since),))
        found = [
            DeliveredCampaign(str(campaign), unit, _aware(first), _aware(last), int(sent))
            for campaign, unit, first, last, sent in cursor.fetchall()
        ]
        self._conn.commit()
        return found

    def record_unit(self, campaign_id: str, run_id: str, unit: str, now: dt.datetime) -> str:
        """Record the unit a real run sends under and return the run's unit.

        The first record wins: a resumed run keeps the unit its first requests carried, whatever the
        campaign file says now (a retried request must carry the same body under the same key).
        """
        cursor = self._conn.cursor()
        cursor.execute(
            f"INSERT INTO {UNIT_TABLE} (campaign_id, run_id, unit, recorded_at) "
            f"VALUES ({self._p}, {self._p}, {self._p}, {self._p}) ON CONFLICT (campaign_id, run_id) DO NOTHING",
            (campaign_id, run_id, unit, self._time(now)),
        )
        self._conn.commit()
        return self.run_unit(campaign_id, run_id) or unit

    def run_unit(self, campaign_id: str, run_id: str) -> str | None:
        """Return the unit recorded for a real run, or None (a run started before units were recorded)."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT unit FROM {UNIT_TABLE} WHERE campaign_id = {self._p} AND run_id = {self._p}",
            (campaign_id, run_id),
        )
        row = cursor.fetchone()
        return str(row[0]) if row else None

    def save(self, fetch: Fetch, body: dict[str, Any], fetched_at: dt.datetime) -> int:
        """Store one fetch's rows under its fetch key, replacing the values of an earlier save of it."""
        rows = rows_of_fetch(fetch, body, self._time(fetched_at))
        columns = (*KEY, *VALUES)
        sql = (
            f"INSERT INTO {STATISTICS_TABLE} ({', '.join(columns)}) "
            f"VALUES ({', '.join([self._p] * len(columns))}) ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
            + ", ".join(f"{column} = excluded.{column}" for column in VALUES)
        )
        cursor = self._conn.cursor()
        cursor.executemany(sql, [tuple(row[column] for column in columns) for row in rows])
        self._conn.commit()
        return len(rows)

    def statistics(self, campaign_id: str) -> list[dict[str, Any]]:
        """Return every stored row of a campaign, oldest collection day first."""
        columns = (*KEY, *VALUES)
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM {STATISTICS_TABLE} WHERE campaign_id = {self._p} "
            "ORDER BY as_of_day, date_from, kind, seq, url",
            (campaign_id,),
        )
        rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
        self._conn.commit()
        return rows

    def campaign_ids(self) -> list[str]:
        """Return the campaigns that have stored statistics, sorted."""
        cursor = self._conn.cursor()
        cursor.execute(f"SELECT DISTINCT campaign_id FROM {STATISTICS_TABLE} ORDER BY campaign_id")
        found = [str(row[0]) for row in cursor.fetchall()]
        self._conn.commit()
        return found

    def row_count(self) -> int:
        """Return how many rows the statistics table holds."""
        cursor = self._conn.cursor()
        cursor.execute(f"SELECT COUNT(*) FROM {STATISTICS_TABLE}")
        count = int(cursor.fetchone()[0])
        self._conn.commit()
        return count

    def sent_count(self, campaign_id: str) -> int:
        """Return how many recipients the campaign's real runs sent to (test sends excluded)."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {RUN_TABLE} AS k JOIN {TABLE} AS log ON log.run_key = k.run_key "
            f"WHERE k.campaign_id = {self._p} AND log.status = '{Status.SENT}' AND log.is_test = 0",
            (campaign_id,),
        )
        count = int(cursor.fetchone()[0])
        self._conn.commit()
        return count

    def sent_under(self, campaign_id: str, unit: str, date_from: str, date_to: str) -> int:
        """Return the recipients LINE's figures for one request cover: the campaign's real sends whose run
        recorded ``unit`` and whose send day (UTC+9) lies in ``date_from``..``date_to`` (``yyyyMMdd``).

        The open rate divides by this, not by every send of the campaign: a recurring campaign's earlier
        periods, or runs under another unit, are not in LINE's figures.
        """
        start = dt.datetime.strptime(date_from, "%Y%m%d").replace(tzinfo=JST)
        end = dt.datetime.strptime(date_to, "%Y%m%d").replace(tzinfo=JST) + dt.timedelta(days=1)
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT COUNT(*) FROM {UNIT_TABLE} unit JOIN {RUN_TABLE} k ON k.campaign_id = unit.campaign_id "
            f"AND k.run_id = unit.run_id JOIN {TABLE} log ON log.run_key = k.run_key "
            f"WHERE unit.campaign_id = {self._p} AND unit.unit = {self._p} "
            f"AND log.status = '{Status.SENT}' AND log.is_test = 0 "
            f"AND log.sent_at >= {self._p} AND log.sent_at < {self._p}",
            (campaign_id, unit, self._time(start), self._time(end)),
        )
        count = int(cursor.fetchone()[0])
        self._conn.commit()
        return count

    def figures(self, campaign_id: str) -> CampaignFigures | None:
        """Return the campaign's figures as of its latest collection (None: nothing collected yet)."""
        rows = self.statistics(campaign_id)
        latest = latest_overview(rows)
        if latest is None:
            return None
        delivered = self.sent_under(campaign_id, latest["unit"], latest["date_from"], latest["date_to"])
        return campaign_figures(rows, delivered=delivered)

    def latest_summary(self, campaign_id: str) -> dict[str, Any] | None:
        """Return the summary of the campaign's latest real run (the run whose report shows the figures)."""
        cursor = self._conn.cursor()
        cursor.execute(
            f"SELECT summary_json FROM {SUMMARY_TABLE} WHERE campaign_id = {self._p} AND dry_run = 0 "
            "ORDER BY finished_at DESC LIMIT 1",
            (campaign_id,),
        )
        row = cursor.fetchone()
        self._conn.commit()
        return None if row is None else json.loads(row[0])


def _aware(value: Any) -> dt.datetime:
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
