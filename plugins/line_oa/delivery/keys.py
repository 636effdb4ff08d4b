"""Retry keys: the same key on every attempt and every resume of a request, so LINE refuses a repeat."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

RETRY_KEY_NAMESPACE = uuid.UUID("7d5e4c1a-2b8f-4e0a-9c3d-6f1b2a7e9d40")
_NAMESPACE_BYTES = RETRY_KEY_NAMESPACE.bytes


def push_retry_key(campaign_id: str, run_id: str, line_user_id: str) -> str:
    """Return the push retry key of one recipient in one run: the same on every attempt and resume.

    It is ``str(uuid.uuid5(RETRY_KEY_NAMESPACE, "push|<campaign>|<run>|<user id>"))``. Changing what it
    returns would make a resumed run resend under new keys: the unit tests pin it to ``uuid5``.
    """
    return push_retry_keys(campaign_id, run_id, [line_user_id])[0]


def push_retry_keys(campaign_id: str, run_id: str, line_user_ids: Iterable[str | None]) -> list[str]:
    """Return ``push_retry_key(campaign_id, run_id, user)`` of each user, in order.

    Computed without building a ``UUID`` object, and with the hash of the shared prefix computed once
    and copied for each user (registration derives a key per recipient).
    """
    prefix = hashlib.sha1(_NAMESPACE_BYTES + f"push|{campaign_id}|{run_id}|".encode())
    keys = []
    for user in line_user_ids:
        sha = prefix.copy()
        sha.update(f"{user}".encode())
        h = sha.hexdigest()
        # version 5 in the 13th hex digit, RFC 4122 variant in the 17th (as uuid5 sets them)
        variant = "89ab"[int(h[16], 16) & 0x3]
        keys.append(f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}")
    return keys


def new_batch_key() -> str:
    """Return a fresh key for a multicast batch (persisted with its rows before the request leaves)."""
    return str(uuid.uuid4())
