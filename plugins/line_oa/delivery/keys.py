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

    It is ``str(uuid.uuid5(RETRY_KEY_NAMESPACE, "push|<campaign>|<run>|<user id>"))``, computed without
    building a ``UUID`` object (a third of the time; it runs once per registered recipient). Changing
    what it returns would make a resumed run resend under new keys: the unit tests pin it to ``uuid5``.
    """
    name = f"push|{campaign_id}|{run_id}|{line_user_id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def push_retry_keys(campaign_id: str, run_id: str, line_user_ids: Iterable[str | None]) -> list[str]:
    """Return ``push_retry_key(campaign_id, run_id, user)`` of each user, in order (registration: the
    hash of the shared prefix is computed once and copied for each user)."""
    prefix = hashlib.sha1(_NAMESPACE_BYTES + f"push|{campaign_id}|{run_id}|".encode())
    keys = []
    for user in line_user_ids:
        sha = prefix.copy()
        sha.update(f"{user}".encode())
        h = sha.hexdigest()
        # version 5 in the 13th hex digit, RFC 4122 variant in the 17th (as push_retry_key sets them)
        variant = "89ab"[int(h[16], 16) & 0x3]
        keys.append(f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}")
    return keys


def new_batch_key() -> str:
    """Return a fresh key for a multicast batch (persisted with its rows before the request leaves)."""
    return str(uuid.uuid4())
