"""Generate the demo's sample customer data platform: a ``profiles`` table with realistic gaps.

Pure standard library (``sqlite3``, ``random``). The same rows come from :func:`profile_rows`, so tests
can load them into PostgreSQL with :data:`PROFILES_DDL`.

What the rows hold, for a given seed, always the same:

- profiles with no LINE user ID (``NULL``): excluded as ``missing_recipient_id``;
- LINE user IDs shared by two or three profiles: every holder after the first is a duplicate
  (``duplicate_recipient``); profile IDs grow in generation order, so the first holder sorts first;
- malformed IDs that LINE refuses (``invalid_recipient_id``): a LINE display ID (``@shop123``), a phone
  number, an upper-case or a too-short hexadecimal ID;
- every other profile has its own valid ID, ``U`` and 32 lower-case hexadecimal digits.

Among the eligible (valid, distinct) IDs, a few are set aside for the LINE simulator: ``blocked``
users (LINE answers 200 but does not deliver) and ``unknown`` users (LINE answers 400 "Failed to send
messages").
"""

from __future__ import annotations

import itertools
import pathlib
import random
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

PROFILES_DDL = (
    "CREATE TABLE profiles ("
    "profile_id TEXT PRIMARY KEY, "
    "line_user_id TEXT, "
    "email TEXT, "
    "country TEXT, "
    "loyalty_tier TEXT, "
    "opted_in INTEGER, "
    "first_name TEXT)"
)
INSERT_PROFILE_SQL = (
    "INSERT INTO profiles (profile_id, line_user_id, email, country, loyalty_tier, opted_in, first_name) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
BATCH_SIZE = 20_000
# A duplicated ID is taken from the most recent originals, so duplicates sit near their first holder.
_RECENT_ORIGINALS = 256
_MAX_EXTRA_HOLDERS = 2  # an ID is shared by at most three profiles

_COUNTRIES = ("TW", "TH", "US", "SG")
_TIER_SHARES = (("bronze", 0.70), ("silver", 0.92), ("gold", 1.0))  # cumulative: 70 %, 22 %, 8 %
_EMAIL_DOMAINS = ("example.com", "example.jp", "example.net")
# First names for personalized messages: chosen by profile number (the seeded draws are unchanged);
# every ninth profile has none (NULL) and every eleventh an empty one, so defaults are exercised.
_FIRST_NAMES = ("Aoi", "Haruto", "Yui", "Sota", "Mei", "Ren", "Hina", "Yuto", "さくら", "湊", "Emma", "Chen")

MISSING, MALFORMED, DUPLICATE, ELIGIBLE = "missing", "malformed", "duplicate", "eligible"


@dataclass
class SampleCdp:
    """Describe a generated sample CDP file and what is in it."""

    path: pathlib.Path
    profiles: int
    missing_line_id: int
    duplicate_line_id: int  # profiles whose ID another, earlier profile already holds
    malformed_line_id: int
    blocked_user_ids: list[str]
    unknown_user_ids: list[str]
    eligible_unique_line_ids: int


def generate_sample_cdp(
    path: str | pathlib.Path,
    *,
    profiles: int = 50_000,
    seed: int = 7,
    missing_fraction: float = 0.06,
    duplicate_fraction: float = 0.02,
    malformed_fraction: float = 0.01,
    blocked_fraction: float = 0.02,
    unknown_fraction: float = 0.01,
) -> SampleCdp:
    """Write a SQLite file with a ``profiles`` table and return what it holds.

    An existing file at ``path`` is replaced. Rows go in batches of :data:`BATCH_SIZE` inside one
    transaction, so a million profiles take seconds.

    :param blocked_fraction: share of the eligible IDs listed in ``blocked_user_ids``.
    :param unknown_fraction: share of the eligible IDs listed in ``unknown_user_ids``.
    """
    _check_fraction("blocked_fraction", blocked_fraction)
    _check_fraction("unknown_fraction", unknown_fraction)
    if blocked_fraction + unknown_fraction > 1:
        raise ValueError("blocked_fraction + unknown_fraction must not exceed 1")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    counts = dict.fromkeys((MISSING, MALFORMED, DUPLICATE, ELIGIBLE), 0)
    blocked: list[str] = []
    unknown: list[str] = []
    picker = random.Random(f"{seed}:simulator-users")

    def counted_rows() -> Iterator[tuple]:
        for row, kind in _classified_rows(
            profiles=profiles,
            seed=seed,
            missing_fraction=missing_fraction,
            duplicate_fraction=duplicate_fraction,
            malformed_fraction=malformed_fraction,
        ):
            counts[kind] += 1
            if kind == ELIGIBLE:
                draw = picker.random()
                if draw < blocked_fraction:
                    blocked.append(row[1])
                elif draw < blocked_fraction + unknown_fraction:
                    unknown.append(row[1])
            yield row

    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA cache_size = -131072")  # 128 MiB: the primary key index stays in memory
        with connection:
            connection.execute(PROFILES_DDL)
            rows = counted_rows()
            while batch := list(itertools.islice(rows, BATCH_SIZE)):
                connection.executemany(INSERT_PROFILE_SQL, batch)
    finally:
        connection.close()
    return SampleCdp(
        path=path,
        profiles=profiles,
        missing_line_id=counts[MISSING],
        duplicate_line_id=counts[DUPLICATE],
        malformed_line_id=counts[MALFORMED],
        blocked_user_ids=blocked,
        unknown_user_ids=unknown,
        eligible_unique_line_ids=counts[ELIGIBLE],
    )


def profile_rows(
    *,
    profiles: int,
    seed: int = 7,
    missing_fraction: float = 0.06,
    duplicate_fraction: float = 0.02,
    malformed_fraction: float = 0.01,
) -> Iterator[tuple[str, str | None, str | None, str, str, int, str | None]]:
    """Yield the rows :func:`generate_sample_cdp` writes, in the order of :data:`PROFILES_DDL`'s columns."""
    for row, _kind in _classified_rows(
        profiles=profiles,
        seed=seed,
        missing_fraction=missing_fraction,
        duplicate_fraction=duplicate_fraction,
        malformed_fraction=malformed_fraction,
    ):
        yield row


def _classified_rows(
    *, profiles: int, seed: int, missing_fraction: float, duplicate_fraction: float, malformed_fraction: float
) -> Iterator[tuple[tuple[str, str | None, str | None, str, str, int, str | None], str]]:
    """Yield each profile row with its kind: missing, malformed, duplicate or eligible."""
    if profiles < 0:
        raise ValueError(f"profiles must be 0 or more, got {profiles}")
    for name, value in (
        ("missing_fraction", missing_fraction),
        ("duplicate_fraction", duplicate_fraction),
        ("malformed_fraction", malformed_fraction),
    ):
        _check_fraction(name, value)
    if missing_fraction + duplicate_fraction + malformed_fraction > 1:
        raise ValueError("missing_fraction + duplicate_fraction + malformed_fraction must not exceed 1")
    rng = random.Random(seed)
    missing_below = missing_fraction
    malformed_below = missing_below + malformed_fraction
    duplicate_below = malformed_below + duplicate_fraction
    recent: list[list] = []  # [line_user_id, extra holders so far]
    for index in range(profiles):
        draw = rng.random()
        if draw < missing_below:
            kind, line_user_id = MISSING, None
        elif draw < malformed_below:
            kind, line_user_id = MALFORMED, _malformed_id(rng, index)
        elif draw < duplicate_below and recent:
            kind, line_user_id = DUPLICATE, _take_duplicate(rng, recent)
        else:
            kind, line_user_id = ELIGIBLE, f"U{rng.getrandbits(128):032x}"
            _remember_original(rng, recent, line_user_id)
        yield _profile(rng, index, line_user_id), kind


def _profile(
    rng: random.Random, index: int, line_user_id: str | None
) -> tuple[str, str | None, str | None, str, str, int, str | None]:
    """Return one profile row around its LINE user ID."""
    email = None if rng.random() < 0.1 else f"user{index}@{_EMAIL_DOMAINS[index % len(_EMAIL_DOMAINS)]}"
    country = "JP" if rng.random() < 0.92 else rng.choice(_COUNTRIES)
    tier_draw = rng.random()
    tier = next(name for name, below in _TIER_SHARES if tier_draw < below)
    opted_in = 0 if rng.random() < 0.05 else 1
    return (f"P{index:08d}", line_user_id, email, country, tier, opted_in, _first_name(index))


def _first_name(index: int) -> str | None:
    if index % 9 == 4:
        return None
    if index % 11 == 6:
        return ""
    return _FIRST_NAMES[(index * 7) % len(_FIRST_NAMES)]


def _malformed_id(rng: random.Random, index: int) -> str:
    """Return an ID LINE refuses, unique to this profile, in one of the shapes found in real CDPs."""
    shape = rng.randrange(4)
    if shape == 0:
        return f"@shop{index}"  # a LINE display ID, not a user ID
    if shape == 1:
        return f"+8190{index:08d}"  # a phone number
    if shape == 2:
        return f"U{rng.getrandbits(128):032X}"  # upper-case hexadecimal
    return f"U{rng.getrandbits(64):016x}"  # too short


def _take_duplicate(rng: random.Random, recent: list[list]) -> str:
    """Return a recent original ID for one more holder, retiring it once three profiles share it."""
    slot = rng.randrange(len(recent))
    entry = recent[slot]
    entry[1] += 1
    if entry[1] >= _MAX_EXTRA_HOLDERS:
        recent[slot] = recent[-1]
        recent.pop()
    return entry[0]


def _remember_original(rng: random.Random, recent: list[list], line_user_id: str) -> None:
    """Keep a new original ID among the few that duplicates are drawn from."""
    if len(recent) < _RECENT_ORIGINALS:
        recent.append([line_user_id, 0])
    else:
        recent[rng.randrange(_RECENT_ORIGINALS)] = [line_user_id, 0]


def _check_fraction(name: str, value: float) -> None:
    """Refuse a fraction outside 0..1, naming the parameter."""
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
