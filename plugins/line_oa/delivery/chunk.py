"""Deliver one chunk: register its rows, claim it, plan its requests once, send them, report."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from line_oa.delivery.engine import DeliveryEngine
from line_oa.delivery.keys import push_retry_key, push_retry_keys
from line_oa.delivery.plan import STALE_MARGIN, plan_delivery
from line_oa.delivery.results import RetryPolicy
from line_oa.delivery_log.store import LedgerRow
from line_oa.vocabulary import Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from line_oa.delivery.client import AsyncLineClient
    from line_oa.delivery.results import ChunkResult
    from line_oa.delivery_log.store import DeliveryLog


@dataclass(frozen=True)
class ChunkRecipients:
    """A chunk's recipients as a push task meets them: how many, and how to read them when needed.

    The chunk task registers every chunk's rows in the delivery log before any push task runs, so a push
    task reads its rows from the log and its chunk file only when the log lacks some (a run staged
    before chunks were registered there). Not reading the file keeps Arrow out of the push task's
    process: about 55 MB of its memory (issue 17).
    """

    count: int
    read: Callable[[], list[tuple[str, str]]]

    @classmethod
    def of(cls, rows: list[tuple[str, str]]) -> ChunkRecipients:
        """Wrap rows already in memory."""
        return cls(len(rows), lambda: rows)


def pending_rows(
    campaign_id: str,
    run_id: str,
    chunk_index: int,
    recipients: list[tuple[str, str]],
    *,
    is_test: bool = False,
) -> list[LedgerRow]:
    """Return the delivery-log rows that register a chunk's recipients as ``pending`` with their push keys."""
    return [
        LedgerRow(
            profile_id=profile_id,
            line_user_id=line_user_id,
            status=Status.PENDING,
            chunk_index=chunk_index,
            retry_key=push_retry_key(campaign_id, run_id, line_user_id),
            is_test=is_test,
        )
        for profile_id, line_user_id in recipients
    ]


def register_pending(
    ledger: DeliveryLog,
    chunk_index: int,
    profile_ids: list[str],
    user_ids: list[str],
    *,
    is_test: bool = False,
) -> int:
    """Register a chunk's recipients as pending rows under their push retry keys (the log's bulk path);
    rows the log already has stay as they are. Return how many recipients were given."""
    keys = push_retry_keys(ledger.campaign_id, ledger.run_id, user_ids)
    return ledger.add_pending(chunk_index, profile_ids, user_ids, keys, is_test=is_test)


def sender_identity() -> str:
    """Return who is sending (host, process, a random part): written to the chunk's claim."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def deliver_chunk(
    *,
    client_factory: Callable[[], AsyncLineClient],
    ledger: DeliveryLog,
    chunk_index: int,
    recipients: list[tuple[str, str]] | ChunkRecipients,
    messages: list[dict],
    mode: str = "push",
    policy: RetryPolicy | None = None,
    rate: float | None = None,
    rates: dict[str, float | None] | None = None,
    is_test: bool = False,
    on_engine: Callable[[DeliveryEngine], None] | None = None,
    **engine_options: Any,
) -> ChunkResult:
    """Register a chunk in the delivery log, claim it, then send every row of it that is not final.

    Safe to call again for the same chunk (a retried or resumed task), and even while a stale sender
    still runs on it: claiming fences that sender out; only rows that are not final are sent, rows that
    may have reached LINE with their original keys. ``recipients`` are read only when the log holds
    fewer of the chunk's rows than ``recipients.count``.
    """
    if not isinstance(recipients, ChunkRecipients):
        recipients = ChunkRecipients.of(recipients)
    if ledger.chunk_size_logged(chunk_index) < recipients.count:
        rows = recipients.read()  # registered as ``pending_rows`` describes, by the log's bulk path
        register_pending(
            ledger, chunk_index, [profile for profile, _ in rows], [user for _, user in rows], is_test=is_test
        )
        del rows
        ledger.refresh_statistics()
    if engine_options.get("personalize") is not None:
        mode = "push"  # one body per recipient
    ledger.claim_chunk(chunk_index, sender_identity())
    rows = ledger.rows_to_send(chunk_index)  # read under the claim: no other sender changes them now
    plan = plan_delivery(
        rows, mode=mode, is_test=is_test, is_stale=lambda row: ledger.is_stale(row, STALE_MARGIN)
    )
    engine = DeliveryEngine(
        client_factory=client_factory,
        ledger=ledger,
        messages=messages,
        policy=policy or RetryPolicy(),
        rate=rate,
        rates=rates,
        **engine_options,
    )
    if on_engine is not None:
        on_engine(engine)
    result = engine.deliver(plan, chunk_index=chunk_index)
    result.already_final = recipients.count - len(rows)
    return result
