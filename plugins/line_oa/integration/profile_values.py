"""A personalized campaign's values on their way from the CDP to the chunk files.

The segment query's columns are asked with ``LIMIT 0`` (``columns_sql``) and their longest values with
``distinct_values_sql`` at launch; extraction keeps each eligible recipient's values as JSON beside its
ids (``staged``), so the push task renders the body from the chunk file, the same on every attempt.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence


def body(segment_sql: str) -> str:
    return segment_sql.strip().rstrip(";").strip()


def columns_sql(segment_sql: str) -> str:
    """Return a query that returns no row but the segment's columns (their names in the description)."""
    return f"SELECT * FROM (\n{body(segment_sql)}\n) AS segment LIMIT 0"


def distinct_values_sql(segment_sql: str, column: str) -> str:
    """Return a query for the distinct values of one segment column, as text (the length checks)."""
    return f'SELECT DISTINCT CAST(segment."{column}" AS VARCHAR) FROM (\n{body(segment_sql)}\n) AS segment'


def remembering(rows: Iterable[tuple[Any, ...]], current: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Pass ``rows`` on, keeping the values after the four wrapped columns of the row in ``current[0]``
    (``classify`` gives one outcome per row before it reads the next)."""
    for row in rows:
        current[0] = row[4:]
        yield row


def staged(profile_id: str, user: str, columns: Sequence[str], values: tuple[Any, ...]) -> tuple[str, ...]:
    """Return the staged row of an eligible recipient: its ids, and its values as JSON when personalized."""
    if not columns:
        return (profile_id, user)
    return (profile_id, user, json.dumps(dict(zip(columns, values, strict=False)), ensure_ascii=False))


def empty_values(staged_rows: Iterable[tuple[str, ...]]) -> dict[str, int]:
    """Count, per column, the staged recipients whose value is empty (they get the placeholder's default)."""
    empty: Counter[str] = Counter()
    for _profile, _user, text in staged_rows:
        for column, value in json.loads(text or "{}").items():
            empty[column] += value is None or not str(value).strip()
    return dict(empty)
