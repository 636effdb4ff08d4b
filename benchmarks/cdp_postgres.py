"""A throwaway PostgreSQL database for one ``dag_scale`` run: the sample CDP's profiles and the delivery log.

The server is the one the PostgreSQL tests use (127.0.0.1:5432, trust auth, database ``test``). A run gets
its own database ``line_oa_bench_<pid>``, dropped at the end; the profiles are copied from the sample CDP
SQLite file with psycopg 3's ``COPY ... FROM STDIN``, into the table of the sample CDP's own DDL
(``line_oa.cli.sample_cdp.PROFILES_DDL``), so the segment SQL reads the same columns and types.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from typing import TYPE_CHECKING

from benchmarks.environment import POSTGRES_CONN

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

COPY_BATCH = 20_000
PROFILE_COLUMNS = ("profile_id", "line_user_id", "email", "country", "loyalty_tier", "opted_in", "first_name")


def admin_connection():
    """Return an autocommit connection to the server's ``test`` database, as ``postgres`` or else ``root``."""
    import psycopg

    errors = []
    for user in (POSTGRES_CONN["login"], "root"):
        try:
            conn = psycopg.connect(
                host=POSTGRES_CONN["host"], port=POSTGRES_CONN["port"], user=user,
                dbname=POSTGRES_CONN["schema"], autocommit=True, connect_timeout=10,
            )  # fmt: skip
        except psycopg.OperationalError as err:
            errors.append(f"{user}: {str(err).strip().splitlines()[0]}")
            continue
        return conn, user
    raise RuntimeError("PostgreSQL at 127.0.0.1:5432 is not reachable: " + "; ".join(errors))


@contextlib.contextmanager
def server_watched(figures: dict) -> Iterator[None]:
    """Put into ``figures["postgres_server"]`` what the server did during the block (``benchmarks.pg_server``)."""
    from benchmarks.pg_server import activity, snapshot

    admin, _ = admin_connection()
    try:
        before = snapshot(admin)
        yield
        figures["postgres_server"] = activity(before, snapshot(admin))
    finally:
        admin.close()


@contextlib.contextmanager
def scratch_database(prefix: str = "line_oa_bench") -> Iterator[dict]:
    """Create database ``<prefix>_<pid>`` and yield its Airflow connection (JSON form); drop it at the end."""
    admin, user = admin_connection()
    name = f"{prefix}_{os.getpid()}"
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        yield {**POSTGRES_CONN, "login": user, "schema": name}
    finally:
        with contextlib.suppress(Exception):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def copy_profiles(sqlite_path: pathlib.Path, conn: dict) -> dict:
    """Copy the ``profiles`` table of a sample CDP SQLite file into the database of ``conn``.

    Return the rows copied and the seconds it took (table, COPY, ``ANALYZE``).
    """
    import psycopg

    from line_oa.cli.sample_cdp import PROFILES_DDL

    started = time.perf_counter()
    columns = ", ".join(PROFILE_COLUMNS)
    copied = 0
    source = sqlite3.connect(sqlite_path)
    try:
        rows = source.execute(f"SELECT {columns} FROM profiles ORDER BY profile_id")
        with psycopg.connect(
            host=conn["host"], port=conn["port"], user=conn["login"], dbname=conn["schema"]
        ) as pg:
            pg.execute(PROFILES_DDL)
            with pg.cursor().copy(f"COPY profiles ({columns}) FROM STDIN") as copy:
                while batch := list(itertools.islice(rows, COPY_BATCH)):
                    for row in batch:
                        copy.write_row(row)
                    copied += len(batch)
            pg.commit()
            pg.autocommit = True
            pg.execute("ANALYZE profiles")
    finally:
        source.close()
    return {"rows": copied, "seconds": round(time.perf_counter() - started, 2)}
