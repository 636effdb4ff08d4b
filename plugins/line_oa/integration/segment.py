"""Extract a campaign's segment from the CDP: stream profiles, decide who is eligible, log the rest.

The segment SQL (``include/sql/segments/<parent>/<segment>.sql``) returns ``profile_id`` and
``line_user_id``. It is wrapped, never edited (see ``wrap_segment_sql``), in plain SQL that SQLite,
PostgreSQL and Trino all run, and read with ``fetchmany`` so a million-profile segment never sits in
memory. The wrapper normalizes both ids in SQL (``TRIM``) *before* ordering, so equal LINE user ids
are adjacent and a shared id is sent once, to the first profile (lowest ``profile_id``); and it
numbers each profile id's occurrences (``ROW_NUMBER``), so a repeated profile id is recognised
without a set of every id in Python.

Every row read gives exactly one outcome: eligible, or one delivery-log row with a reason. Rows that
cannot be logged under their own profile id (none, a repeat, too long) get a deterministic synthetic
id (``(no profile id) #1``, ``P1 (repeat #1)``, ``(invalid profile id) sha256:…``) instead of being
dropped by the log's primary key.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from line_oa.delivery_log.store import EXCLUDED, FAILED, LedgerRow
from line_oa.errors import LineOAError
from line_oa.integration import profile_values
from line_oa.integration.arrow import pa, pq
from line_oa.integration.chunks import arrow_chunks, parquet_file, staging_path, string_array
from line_oa.vocabulary import Reason

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Container, Iterable, Iterator, Sequence

    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from line_oa.delivery_log.store import DeliveryLog
    from line_oa.integration.frequency_cap import FrequencyCheck

LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
FETCH_SIZE = 5000
SCHEMA = pa.schema([("profile_id", pa.string()), ("line_user_id", pa.string())])
VALUES_SCHEMA = SCHEMA.append(pa.field("values", pa.string()))  # a personalized campaign's segment

# The reasons extraction writes (members of line_oa.vocabulary.Reason, which explains them).
MISSING_RECIPIENT_ID = Reason.MISSING_RECIPIENT_ID
INVALID_RECIPIENT_ID = Reason.INVALID_RECIPIENT_ID
DUPLICATE_RECIPIENT = Reason.DUPLICATE_RECIPIENT
OVER_MAX_RECIPIENTS = Reason.OVER_MAX_RECIPIENTS
SUPPRESSED = Reason.SUPPRESSED
FREQUENCY_CAPPED = Reason.FREQUENCY_CAPPED
MISSING_PROFILE_ID = Reason.MISSING_PROFILE_ID
DUPLICATE_PROFILE_ID = Reason.DUPLICATE_PROFILE_ID
INVALID_PROFILE_ID = Reason.INVALID_PROFILE_ID

MAX_PROFILE_ID_LENGTH = 256
MAX_LOGGED_RECIPIENT_ID = 100  # an invalid LINE user id is logged cut to this many characters
PROFILE_ID_EXCERPT = 40
# Synthetic profile ids live in this space; a CDP profile id that looks like one is invalid, so a
# synthetic id can never take the log key of a real profile (or the other way round).
_SYNTHETIC = re.compile(r"^\((?:no|invalid) profile id\)| \(repeat #\d+\)$")

# The wrapped segment's columns, normalized in SQL exactly as ``classify`` expects them: ids as
# text without surrounding spaces, and each profile id's occurrence number (1 = first). A profile id's
# first occurrence is the one with a non-empty LINE user id, lowest first.
_PROFILE = "TRIM(CAST(segment.profile_id AS VARCHAR))"
_USER = "TRIM(CAST(segment.line_user_id AS VARCHAR))"
_WRAPPED = f"""SELECT profile_id, line_user_id, occurrence, suppressed{{outer_values}} FROM (
SELECT
    {_PROFILE} AS profile_id,
    {_USER} AS line_user_id,{{inner_values}}
    ROW_NUMBER() OVER (
        PARTITION BY {_PROFILE}
        ORDER BY CASE WHEN {_USER} IS NULL OR {_USER} = '' THEN 1 ELSE 0 END, {_USER}, segment.profile_id
    ) AS occurrence,
    {{suppressed}} AS suppressed,
    segment.profile_id AS profile_order
FROM (
{{body}}
) AS segment{{joins}}
) AS normalized
ORDER BY line_user_id, profile_order, occurrence"""


@dataclass
class SegmentExtract:
    """What extraction found; the descriptor that goes to XCom is ``to_dict()``."""

    segment_uri: str
    profiles: int = 0
    eligible: int = 0
    excluded: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    is_test: bool = False
    # a personalized campaign: {"columns": [...], "empty": {column: eligible recipients without a value}}
    personalization: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment_uri": self.segment_uri,
            "profiles": self.profiles,
            "eligible": self.eligible,
            "excluded": {str(reason): count for reason, count in self.excluded.items()},
            "failed": {str(reason): count for reason, count in self.failed.items()},
            "is_test": self.is_test,
            "personalization": self.personalization,
        }


_body = profile_values.body  # the segment SQL without surrounding space and final ';'


def wrap_segment_sql(segment_sql: str, suppressions: Sequence[str] = (), columns: Sequence[str] = ()) -> str:
    """Return the query streaming ``(profile_id, line_user_id, occurrence, suppressed)`` by LINE user id.

    Both ids are trimmed in SQL before ordering (``" Uxxx"`` and ``"Uxxx"`` sort together);
    ``occurrence`` is 1 for a profile id's first row and 2, 3, … for its repeats (portable SQL:
    ``TRIM``, ``CAST … AS VARCHAR`` and ``ROW_NUMBER() OVER``, as in SQLite, PostgreSQL and Trino).
    ``suppressed`` is 1 when the profile id or the LINE user id of any profile of that LINE user is
    on one of the ``suppressions`` (queries returning ``profile_id, line_user_id``, either may be
    NULL), else 0. Then, as text, each of the segment's ``columns`` that personalized messages read
    (names as the query returns them; quoted, so the case is kept).
    """
    body = _body(segment_sql)
    if ";" in body:
        raise LineOAError("segment SQL must be a single SELECT statement (found ';' inside it)")
    lists, joins, suppressed = _suppression_parts(suppressions)
    inner = "".join(
        f'\n    CAST(segment."{column}" AS VARCHAR) AS value_{number},'
        for number, column in enumerate(columns)
    )
    outer = "".join(f", value_{number}" for number in range(len(columns)))
    return lists + _WRAPPED.format(
        body=body,
        joins=joins,
        suppressed=_suppressed_per_user(suppressed),
        inner_values=inner,
        outer_values=outer,
    )


def _suppression_parts(suppressions: Sequence[str]) -> tuple[str, str, str]:
    """Return the suppression lists as one ``WITH`` (each list's query runs once), the LEFT JOINs on it,
    and the expression that is 1 for a row whose profile id or LINE user id is listed."""
    if not suppressions:
        return "", "", "0"
    if any(";" in _body(sql) for sql in suppressions):
        raise LineOAError("a suppression list must be a single SELECT statement (found ';' inside it)")
    union = "\nUNION ALL\n".join(
        "SELECT TRIM(CAST(listed.profile_id AS VARCHAR)) AS profile_id, "
        f"TRIM(CAST(listed.line_user_id AS VARCHAR)) AS line_user_id FROM (\n{_body(sql)}\n) AS listed"
        for sql in suppressions
    )
    lists = f"WITH suppression_lists AS (\n{union}\n)\n"
    joins = (
        "\nLEFT JOIN (SELECT DISTINCT line_user_id AS id FROM suppression_lists WHERE line_user_id <> '') "
        f"AS suppressed_user ON suppressed_user.id = {_USER}"
        "\nLEFT JOIN (SELECT DISTINCT profile_id AS id FROM suppression_lists WHERE profile_id <> '') "
        f"AS suppressed_profile ON suppressed_profile.id = {_PROFILE}"
    )
    return (
        lists,
        joins,
        "CASE WHEN suppressed_user.id IS NULL AND suppressed_profile.id IS NULL THEN 0 ELSE 1 END",
    )


def _suppressed_per_user(suppressed: str) -> str:
    """A LINE user is suppressed when any of its profiles is: one person, however many profiles."""
    return suppressed if suppressed == "0" else f"MAX({suppressed}) OVER (PARTITION BY {_USER})"


def count_sql(segment_sql: str, suppressions: Sequence[str] = ()) -> str:
    """Return a query counting the segment's distinct LINE user ids, trimmed and non-empty, of which no
    profile is suppressed (quota pre-flight): the recipients extraction will find eligible."""
    lists, joins, suppressed = _suppression_parts(suppressions)
    return (
        f"{lists}SELECT COUNT(*) FROM (SELECT {_USER} AS line_user_id FROM (\n{_body(segment_sql)}\n) AS segment"
        f"{joins} WHERE {_USER} <> '' GROUP BY {_USER} HAVING MAX({suppressed}) = 0) AS reachable"
    )


def stream_rows(hook: DbApiHook, sql: str) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of ``sql`` (all its columns) from ``hook`` in batches of ``FETCH_SIZE``.

    A SQLite column may hold bytes that are not UTF-8 (SQLite does not check); they are read with
    ``surrogateescape`` instead of failing the whole extraction, and ``classify`` records such a row
    as an invalid id. PostgreSQL checks encodings itself, so its text is always valid.
    """
    conn = hook.get_conn()
    try:
        if isinstance(conn, sqlite3.Connection):
            conn.text_factory = _lenient_text
        cursor = _streaming_cursor(conn)
        cursor.execute(sql)
        while batch := cursor.fetchmany(FETCH_SIZE):
            for row in batch:
                yield tuple(row)
    finally:
        conn.close()


def _streaming_cursor(conn: Any) -> Any:
    """Return a cursor that keeps the result on the server and fetches it batch by batch.

    psycopg's default cursor loads a whole result into the client on ``execute`` (1,000,000 profiles
    took 233 MB in the extract task); a named cursor is server-side and fetches ``FETCH_SIZE`` rows at a
    time. SQLite and other drivers step through the result already.
    """
    if type(conn).__module__.split(".")[0] in ("psycopg2", "psycopg"):
        cursor = conn.cursor(name="line_oa_segment")
        cursor.itersize = FETCH_SIZE
        return cursor
    return conn.cursor()


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _trim(value: Any) -> str:
    """Normalize an id as the wrapped SQL does: its text, without surrounding spaces."""
    return "" if value is None else str(value).strip(" ")


def _escaped(text: str) -> str:
    """Return ``text`` with every character that is not printable (controls, NUL, bytes that were not
    UTF-8, read as lone surrogates) written as ``\\uXXXX``: safe to store in any log and to show."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


def _excerpt(text: str) -> str:
    shown = _escaped(text[:PROFILE_ID_EXCERPT])
    return shown + ("…" if len(text) > PROFILE_ID_EXCERPT else "")


def _logged_recipient(user: str) -> str | None:
    """Return the LINE user id as the log keeps it: a well-formed one as is, another one as a safe,
    bounded excerpt (``MAX_LOGGED_RECIPIENT_ID`` characters), a blank one as None."""
    if not user.strip():
        return None
    if LINE_USER_ID.match(user):
        return user
    return _escaped(user[:MAX_LOGGED_RECIPIENT_ID])[:MAX_LOGGED_RECIPIENT_ID]


def _invalid_profile(profile_id: str) -> tuple[str, str] | None:
    """Return (synthetic id, message) when ``profile_id`` cannot be a key of the delivery log."""
    if len(profile_id) > MAX_PROFILE_ID_LENGTH:
        problem = f"profile id of {len(profile_id)} characters"
    elif profile_id != profile_id.strip():
        # Whitespace that TRIM leaves (tabs, newlines): stripping it in Python could make two ids
        # that the SQL told apart collide in the log.
        problem = "profile id with surrounding whitespace other than spaces"
    elif not profile_id.isprintable():
        # Control characters, NUL (which PostgreSQL text cannot hold) or bytes that were not UTF-8.
        problem = "profile id with characters that are not printable text"
    elif (profile_id[0] == "(" or profile_id[-1] == ")") and _SYNTHETIC.search(profile_id):
        problem = "profile id in the form of a synthetic id"
    else:
        return None
    digest = hashlib.sha256(profile_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"(invalid profile id) sha256:{digest}", f"{problem}: {_excerpt(profile_id)}"


def classify(
    rows: Iterable[tuple[Any, ...]],
    *,
    max_recipients: int | None = None,
    capped: Container[str] = frozenset(),
) -> Iterator[tuple[str, str | None, str | None, str | None, str | None]]:
    """Yield (profile_id, line_user_id, status, reason, message), one per row ordered by LINE user id.

    ``rows`` are ``(profile_id, line_user_id, occurrence, suppressed)`` as ``wrap_segment_sql`` returns them, or
    ``(profile_id, line_user_id)``: then occurrences are counted here (small in-memory lists only,
    such as a test send's). ``status`` is ``None`` for an eligible profile; otherwise ``excluded`` or
    ``failed`` with a reason. ``profile_id`` is the log key: the normalized id, or a synthetic one for a
    missing, repeated or invalid id. ``message`` explains an invalid profile id. A LINE user in ``capped``
    (over the campaign's frequency cap) is excluded ``frequency_capped``, by every profile of it.
    """
    previous: str | None = None
    eligible = 0
    missing = 0
    counted: Counter[str] | None = None
    for row in rows:
        raw_profile, raw_user = row[0], row[1]
        profile_id = _trim(raw_profile)
        if len(row) > 2:
            occurrence = int(row[2])
        else:
            counted = Counter() if counted is None else counted
            counted[profile_id] += 1
            occurrence = counted[profile_id]
        user = _trim(raw_user)
        logged_user = _logged_recipient(user)
        if not profile_id.strip():
            missing += 1
            yield f"(no profile id) #{missing}", logged_user, EXCLUDED, MISSING_PROFILE_ID, None
            continue
        invalid = _invalid_profile(profile_id)
        key = invalid[0] if invalid else profile_id
        if occurrence > 1:
            yield f"{key} (repeat #{occurrence - 1})", logged_user, EXCLUDED, DUPLICATE_PROFILE_ID, None
        elif invalid:
            yield key, logged_user, FAILED, INVALID_PROFILE_ID, invalid[1]
        elif logged_user is None:
            yield profile_id, None, EXCLUDED, MISSING_RECIPIENT_ID, None
        elif not LINE_USER_ID.match(user):
            yield profile_id, logged_user, FAILED, INVALID_RECIPIENT_ID, None
        elif len(row) > 3 and row[3]:
            previous = user
            yield profile_id, user, EXCLUDED, SUPPRESSED, None
        elif user in capped:
            previous = user
            yield profile_id, user, EXCLUDED, FREQUENCY_CAPPED, None
        elif user == previous:
            yield profile_id, user, EXCLUDED, DUPLICATE_RECIPIENT, None
        elif max_recipients is not None and eligible >= max_recipients:
            previous = user
            yield profile_id, user, EXCLUDED, OVER_MAX_RECIPIENTS, None
        else:
            previous = user
            eligible += 1
            yield profile_id, user, None, None, None


def extract_segment(
    *,
    rows: Iterable[tuple[Any, ...]],
    ledger: DeliveryLog,
    staging_dir: pathlib.Path | str,
    max_recipients: int | None = None,
    is_test: bool = False,
    frequency: FrequencyCheck | None = None,
    value_columns: Sequence[str] = (),
) -> SegmentExtract:
    """Classify ``rows``; log exclusions and failures; stage eligible recipients as one Parquet file.

    Every row gives one outcome: ``profiles`` is the number of rows read. Re-running it for the same
    run rewrites the staged file and leaves existing log rows alone. ``frequency`` (a real or dry run)
    leaves out the users over the campaign's frequency cap and claims the others (``settle``).
    ``value_columns`` names the personalization values that follow the four columns of each row
    (``wrap_segment_sql(..., columns=...)``); they are staged with each eligible recipient as JSON.
    """
    base = staging_path(staging_dir)
    base.mkdir(parents=True, exist_ok=True)
    target = base / "segment.parquet"
    result = SegmentExtract(segment_uri=str(target), is_test=is_test)
    logged: list[LedgerRow] = []
    eligible: list[tuple[str, ...]] = []
    current: list[tuple[Any, ...]] = [()]
    schema = VALUES_SCHEMA if value_columns else SCHEMA
    with target.open("wb") as handle, pq.ParquetWriter(handle, schema) as writer:
        capped = frequency.prepare() if frequency is not None else frozenset()
        for profile_id, user, status, reason, message in classify(
            profile_values.remembering(rows, current), max_recipients=max_recipients, capped=capped
        ):
            result.profiles += 1
            if status is None:
                result.eligible += 1
                eligible.append(profile_values.staged(profile_id, user, value_columns, current[0]))  # type: ignore[arg-type]
                if len(eligible) >= FETCH_SIZE:
                    _write_batch(writer, eligible)
            else:
                (result.excluded if status == EXCLUDED else result.failed)[reason] += 1
                logged.append(
                    LedgerRow(profile_id, user, status, reason, line_message=message, is_test=is_test)
                )
                if len(logged) >= FETCH_SIZE:
                    ledger.add(logged)
                    logged = []
        _write_batch(writer, eligible)
    ledger.add(logged)
    if frequency is not None:
        _settle_frequency(frequency, result, base, is_test=is_test)
    if value_columns:
        empty = profile_values.empty_values(read_segment(result.segment_uri, with_values=True))
        result.personalization = {"columns": list(value_columns), "empty": empty}
    return result


def _settle_frequency(frequency: FrequencyCheck, result: SegmentExtract, base, *, is_test: bool) -> None:
    """Claim the staged recipients; restage without those another run's claim put over the cap meanwhile."""
    late = frequency.settle(lambda: read_segment(result.segment_uri), is_test=is_test)
    if not late:
        return
    left_out = {profile for profile, _user in late}
    target = base / "segment-capped.parquet"
    with staging_path(result.segment_uri).open("rb") as handle:
        schema = parquet_file(handle).schema_arrow
    with target.open("wb") as handle, pq.ParquetWriter(handle, schema) as writer:
        kept: list[tuple[str, ...]] = []
        for pair in read_segment(result.segment_uri, with_values=True):
            if pair[0] not in left_out:
                kept.append(pair)
                if len(kept) >= FETCH_SIZE:
                    _write_batch(writer, kept)
        _write_batch(writer, kept)
    result.segment_uri = str(target)
    result.eligible -= len(late)
    result.excluded[FREQUENCY_CAPPED] += len(late)


def _write_batch(writer: pq.ParquetWriter, rows: list[tuple[str, ...]]) -> None:
    if rows:
        columns = [string_array(column) for column in zip(*rows, strict=True)]
        writer.write_table(pa.Table.from_arrays(columns, schema=writer.schema))
        rows.clear()


def read_segment(segment_uri: str, *, with_values: bool = False) -> Iterator[tuple[str, ...]]:
    """Yield the staged eligible recipients in batches (never the whole file in memory):
    ``(profile_id, line_user_id)``, and their personalization values (JSON) when ``with_values``
    and the campaign is personalized."""
    with staging_path(segment_uri).open("rb") as handle:
        parquet = parquet_file(handle)
        columns = 3 if with_values and "values" in parquet.schema_arrow.names else 2
        for batch in parquet.iter_batches(batch_size=FETCH_SIZE):
            yield from zip(*(batch.column(n).to_pylist() for n in range(columns)), strict=True)


def read_segment_chunks(
    segment_uri: str, chunk_size: int, *, with_values: bool = False
) -> Iterator[pa.Table]:
    """Yield the staged eligible recipients as Arrow tables of ``chunk_size`` rows (the last may hold
    fewer), in the segment's order: ``profile_id``, ``line_user_id`` and, when ``with_values`` and the
    campaign is personalized, ``values``. One chunk at a time is held in memory."""
    with staging_path(segment_uri).open("rb") as handle:
        parquet = parquet_file(handle)
        schema = VALUES_SCHEMA if with_values and "values" in parquet.schema_arrow.names else SCHEMA
        batches = parquet.iter_batches(batch_size=FETCH_SIZE, columns=schema.names)
        # a cast only where the file's types differ: casting loads Arrow's compute layer (about 7 MB)
        same = (batch if batch.schema.equals(schema) else batch.cast(schema) for batch in batches)
        yield from arrow_chunks(same, chunk_size)


def rows_for_test_send(user_ids: Iterable[str]) -> list[tuple[str, str]]:
    """Return the rows of a test send: each listed LINE user id under a ``test:`` profile id."""
    return [(f"test:{uid}", uid) for uid in dict.fromkeys(u.strip() for u in user_ids if u and u.strip())]
