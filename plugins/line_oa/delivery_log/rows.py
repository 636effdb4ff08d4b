"""A delivery-log row and the log's table names."""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields

TABLE = "line_delivery_log"
RUN_TABLE = "line_delivery_run"  # each run's short key (``run_key``) in the log's keys
SUMMARY_TABLE = "line_campaign_summary"
CLAIM_TABLE = "line_delivery_claim"
DELIVERY_TABLE = "line_campaign_delivery"
EVENT_TABLE = "line_campaign_run_event"
FREQUENCY_CLAIM_TABLE = "line_frequency_claim"


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


ROW_FIELDS = [f.name for f in fields(LedgerRow) if f.name not in ("updated_at",)]
COLUMNS = ["campaign_id", "run_id", *ROW_FIELDS, "created_at", "updated_at", "run_key"]
row_values = operator.attrgetter(*ROW_FIELDS)  # fast: this runs once per recipient and write
IS_TEST = ROW_FIELDS.index("is_test")
UPDATED_ON_CONFLICT = [c for c in ROW_FIELDS if c not in ("profile_id",)] + ["updated_at"]
