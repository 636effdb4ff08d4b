"""The LINE aggregation unit of a campaign: the name LINE counts its impressions and clicks under.

LINE accepts one ``customAggregationUnits`` name per push or multicast request, 1 to 30 characters of
``[a-zA-Z0-9_]`` (``shared/reference/line-messaging-api.md`` §1.1, §1.7). A campaign id that already
fits is its own unit. Any other id (too long, or with ``-``) is shortened to a readable prefix plus
``X`` and eight upper-case hex digits of its sha256: campaign ids are lower case, so such a name can
never equal an id used as is, and two shortened ids collide only if their hashes do (1 in 2**32).
"""

from __future__ import annotations

import hashlib
import re

UNIT_MAX_LENGTH = 30
UNIT_PATTERN = re.compile(r"[A-Za-z0-9_]{1,30}")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_]")
_HASH_DIGITS = 8
#: ``_X`` and the hash digits end every shortened unit.
_SUFFIX_LENGTH = 2 + _HASH_DIGITS


def unit_for_campaign(campaign_id: str) -> str:
    """Return the default aggregation unit of ``campaign_id`` (deterministic, within LINE's rule)."""
    if UNIT_PATTERN.fullmatch(campaign_id):
        return campaign_id
    digest = hashlib.sha256(campaign_id.encode()).hexdigest()[:_HASH_DIGITS].upper()
    prefix = _NOT_ALLOWED.sub("_", campaign_id)[: UNIT_MAX_LENGTH - _SUFFIX_LENGTH].rstrip("_")
    return f"{prefix}_X{digest}"


def unit_problem(unit: str) -> str | None:
    """Return why ``unit`` breaks LINE's rule for a unit name, or ``None`` when it is usable."""
    if UNIT_PATTERN.fullmatch(unit):
        return None
    if not unit:
        return "is empty; LINE requires 1 to 30 characters of letters, digits and '_'"
    if len(unit) > UNIT_MAX_LENGTH:
        return f"{len(unit)} characters, LINE allows {UNIT_MAX_LENGTH} (letters, digits and '_')"
    bad = sorted(set(_NOT_ALLOWED.findall(unit)))
    return f"contains {', '.join(repr(c) for c in bad)}; LINE allows only letters, digits and '_'"
