"""A sender's retry policy and what one chunk's delivery did (small enough for XCom)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from line_oa.vocabulary import Reason


@dataclass(frozen=True)
class RetryPolicy:
    """The campaign's activation policy for transient errors."""

    max_attempts: int = 8
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


@dataclass
class ChunkResult:
    """What one chunk's delivery did; small enough for XCom."""

    chunk_index: int
    total: int = 0
    sent: int = 0
    already_final: int = 0
    failed: Counter = field(default_factory=Counter)
    requests: int = 0
    retries: int = 0
    duration_seconds: float = 0.0
    stopped_reason: Reason | None = None
    mode: str = "push"  # how never-sent rows were sent (decided once, from the rows to send)
    resent: int = 0  # rows that may have reached LINE before, sent again under their first key

    def to_dict(self) -> dict[str, Any]:
        rate = self.sent / self.duration_seconds if self.duration_seconds else 0.0
        return {
            "chunk_index": self.chunk_index,
            "total": self.total,
            "sent": self.sent,
            "already_final": self.already_final,
            "failed": {str(reason): count for reason, count in self.failed.items()},
            "requests": self.requests,
            "retries": self.retries,
            "duration_seconds": round(self.duration_seconds, 3),
            "recipients_per_second": round(rate, 1),
            "stopped_reason": None if self.stopped_reason is None else str(self.stopped_reason),
            "mode": self.mode,
            "resent": self.resent,
        }
