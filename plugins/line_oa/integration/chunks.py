"""Write a segment's recipients as Parquet chunk files on staging storage, and read them back.

The chunk task streams ``(profile_id, line_user_id)`` rows into ``chunk-00000.parquet``,
``chunk-00001.parquet``... under a staging URI and returns small descriptors; each mapped push task
reads one chunk. XCom carries only the descriptors, never the profiles.

Storage goes through Airflow's ``ObjectStoragePath``: a local directory by default (a plain path
becomes a ``file://`` URI), ``s3://conn_id@bucket/prefix`` or any other fsspec URI on many machines.
"""

from __future__ import annotations

import itertools
import logging
import math
import pathlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath

from line_oa.integration.arrow import pa, pq

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

log = logging.getLogger(__name__)

CHUNK_FILE_PATTERN = re.compile(r"chunk-\d{5,}\.parquet")
CHUNK_SCHEMA = pa.schema([("profile_id", pa.string()), ("line_user_id", pa.string())])
# A personalized campaign's chunks also carry each recipient's values (JSON of the columns its
# placeholders read), so a retried or resumed push renders the body of its first attempt.
VALUES_CHUNK_SCHEMA = CHUNK_SCHEMA.append(pa.field("values", pa.string()))


@dataclass(frozen=True)
class ChunkDescriptor:
    """Point at one chunk file: small and JSON-able, so it can travel through XCom."""

    index: int
    uri: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """Return the descriptor as a plain dict for XCom."""
        return {"index": self.index, "uri": self.uri, "rows": self.rows}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkDescriptor:
        """Build a descriptor from :meth:`to_dict`'s output."""
        return cls(index=int(data["index"]), uri=str(data["uri"]), rows=int(data["rows"]))


def staging_path(staging_uri: str | pathlib.Path) -> ObjectStoragePath:
    """Return the staging location as an ``ObjectStoragePath``; a plain local path becomes ``file://``."""
    uri = str(staging_uri)
    if "://" not in uri:
        uri = pathlib.Path(uri).expanduser().resolve().as_uri()
    return ObjectStoragePath(uri)


def chunk_file_name(index: int) -> str:
    """Return the file name of chunk ``index``: ``chunk-00000.parquet``."""
    return f"chunk-{index:05d}.parquet"


def write_chunks(
    rows: Iterable[tuple[str, ...]], *, staging_uri: str | pathlib.Path, chunk_size: int
) -> list[dict[str, Any]]:
    """Write ``(profile_id, line_user_id[, values])`` rows as Parquet chunk files; return their descriptors.

    Rows are streamed: at most one chunk is held in memory. The staging directory is created if
    needed. Chunk files left by an earlier attempt with more chunks are removed, so the directory
    holds exactly the chunks described. No rows means no chunk files and an empty list.

    :param staging_uri: a local directory, a ``file://`` URI or any ``ObjectStoragePath`` URI.
    :param chunk_size: rows per chunk file (the last one may hold fewer).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be 1 or more, got {chunk_size}")
    return write_chunk_tables(_row_tables(rows, chunk_size), staging_uri=staging_uri)


def write_chunk_tables(
    tables: Iterable[pa.Table], *, staging_uri: str | pathlib.Path
) -> list[dict[str, Any]]:
    """Write each Arrow table (``CHUNK_SCHEMA`` or ``VALUES_CHUNK_SCHEMA``) as the next chunk file.

    As ``write_chunks``, for rows already in Arrow (the chunk task reads the staged segment so, and no
    recipient becomes a Python tuple on its way to a chunk file).
    """
    base = staging_path(staging_uri)
    base.mkdir(parents=True, exist_ok=True)
    descriptors: list[dict[str, Any]] = []
    for index, table in enumerate(tables):
        path = base / chunk_file_name(index)
        with path.open("wb") as handle:
            pq.write_table(table, handle)
        descriptors.append(ChunkDescriptor(index=index, uri=str(path), rows=table.num_rows).to_dict())
    _remove_chunk_files(base, keep={chunk_file_name(index) for index in range(len(descriptors))})
    log.info(
        "wrote %d chunk files (%d rows) under %s",
        len(descriptors),
        sum(descriptor["rows"] for descriptor in descriptors),
        base,
    )
    return descriptors


def parquet_file(handle: Any) -> pq.ParquetFile:
    """Open a staged Parquet file (segment or chunk) for one pass from start to end.

    Without Arrow's read-ahead (``pre_buffer``), which holds whole column chunks in memory before they
    are asked for: reading the 950,271 rows of a 1,000,000-profile segment so took 60.7 MB instead of
    24.9 (issue 17's memory budget) and was slower on a local file (0.17 s against 0.09), not faster.
    """
    return pq.ParquetFile(handle, pre_buffer=False)


def string_array(values: Iterable[str | None]) -> pa.Array:
    """Return ``values`` (text or None) as an Arrow string array.

    Built with Arrow's ``StringBuilder``, not ``pa.array``: ``pa.array`` imports pandas, when it is
    installed, to ask whether its input is a pandas object; that is about 50 MB more in every task process
    that stages recipients (issue 17's memory budget), and the builder is also several times faster.
    """
    builder = pa.lib.StringBuilder()
    builder.append_values(values)
    return builder.finish()


def _row_tables(rows: Iterable[tuple[str, ...]], chunk_size: int) -> Iterator[pa.Table]:
    """Group rows into tables of ``chunk_size`` (a third element per row: its personalization values)."""
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, chunk_size)):
        arrays = [string_array(column) for column in zip(*batch, strict=True)]
        yield pa.Table.from_arrays(arrays, schema=CHUNK_SCHEMA if len(arrays) == 2 else VALUES_CHUNK_SCHEMA)
        del batch, arrays


def arrow_chunks(batches: Iterable[pa.RecordBatch], chunk_size: int) -> Iterator[pa.Table]:
    """Regroup record batches into tables of exactly ``chunk_size`` rows (the last one may hold fewer)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be 1 or more, got {chunk_size}")
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        held.append(batch)
        rows += batch.num_rows
        while rows >= chunk_size:
            table = pa.Table.from_batches(held)
            yield table.slice(0, chunk_size)
            rest = table.slice(chunk_size)
            held, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(held)


def read_chunk(descriptor: Mapping[str, Any] | ChunkDescriptor) -> list[tuple[str, str]]:
    """Return the ``(profile_id, line_user_id)`` rows of one chunk, in the order they were written."""
    if not isinstance(descriptor, ChunkDescriptor):
        descriptor = ChunkDescriptor.from_dict(descriptor)
    # not pq.read_table: read_table loads Arrow's dataset layer and pandas (about 90 MB)
    with ObjectStoragePath(descriptor.uri).open("rb") as handle:
        table = parquet_file(handle).read(columns=["profile_id", "line_user_id"])
    rows = list(
        zip(table.column("profile_id").to_pylist(), table.column("line_user_id").to_pylist(), strict=True)
    )
    if len(rows) != descriptor.rows:
        raise ValueError(f"{descriptor.uri} holds {len(rows)} rows, its descriptor says {descriptor.rows}")
    return rows


def read_chunk_values(descriptor: Mapping[str, Any] | ChunkDescriptor) -> dict[str, str | None]:
    """Return each profile's personalization values (JSON text) of one chunk; empty when it has none."""
    if not isinstance(descriptor, ChunkDescriptor):
        descriptor = ChunkDescriptor.from_dict(descriptor)
    with ObjectStoragePath(descriptor.uri).open("rb") as handle:
        parquet = parquet_file(handle)
        if "values" not in parquet.schema_arrow.names:
            return {}
        table = parquet.read(columns=["profile_id", "values"])
    return dict(zip(table.column("profile_id").to_pylist(), table.column("values").to_pylist(), strict=True))


def plan_chunk_size(total_rows: int, *, requested: int, max_map_length: int = 1024) -> int:
    """Return a chunk size that keeps the number of mapped push tasks within half of ``max_map_length``.

    Airflow refuses to expand a task into more than ``[core] max_map_length`` instances (1024 by
    default). Keeping to half of it leaves room for growth between planning and running. The
    requested size is kept when it fits; otherwise it grows just enough.

    :param total_rows: rows of the segment (recipients to chunk).
    :param requested: chunk size asked for in the campaign file or the trigger parameters.
    """
    if requested < 1:
        raise ValueError(f"requested chunk size must be 1 or more, got {requested}")
    if max_map_length < 1:
        raise ValueError(f"max_map_length must be 1 or more, got {max_map_length}")
    if total_rows < 0:
        raise ValueError(f"total_rows must be 0 or more, got {total_rows}")
    most_chunks = max(1, max_map_length // 2)
    if math.ceil(total_rows / requested) <= most_chunks:
        return requested
    return math.ceil(total_rows / most_chunks)


def remove_chunks(staging_uri: str | pathlib.Path) -> None:
    """Remove the chunk files under ``staging_uri``, then the directory if nothing else is in it.

    Only files named like chunk files are removed, so a mistyped staging URI cannot wipe unrelated
    data. A missing directory is not an error (cleanup may run twice).
    """
    base = staging_path(staging_uri)
    if not base.exists():
        return
    _remove_chunk_files(base, keep=set())
    if base.is_dir() and not any(base.iterdir()):
        base.rmdir()


def _remove_chunk_files(base: ObjectStoragePath, *, keep: set[str]) -> None:
    """Remove chunk files under ``base`` whose names are not in ``keep``."""
    for child in base.iterdir():
        if CHUNK_FILE_PATTERN.fullmatch(child.name) and child.name not in keep:
            child.unlink()
