"""The SQL connections the package reads and writes: the delivery log's and the CDP's (common.sql hooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from line_oa import settings

if TYPE_CHECKING:
    import pathlib

    from airflow.providers.common.sql.hooks.sql import DbApiHook

DEFAULT_LEDGER_CONN_ID = str(settings.OPTIONS["ledger_conn_id"].default)


def data_dir() -> pathlib.Path:
    """Return the project's data directory (``[line_oa] data_dir``), created if missing."""
    path = settings.data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sql_hook(conn_id: str, fallback_sqlite_file: pathlib.Path) -> DbApiHook:
    """Return the common.sql hook of ``conn_id``, or a SQLite file hook when it is not defined."""
    from airflow.sdk import Connection

    from line_oa.errors import LineOAError

    try:
        conn = Connection.get(conn_id)
    except Exception as err:  # AirflowNotFoundException differs between core and the task SDK
        if "isn't defined" not in str(err) and "not found" not in str(err).lower():
            raise
        return sqlite_file_hook(fallback_sqlite_file, conn_id=conn_id)
    hook = conn.get_hook()
    if not hasattr(hook, "get_conn") or not hasattr(hook, "placeholder"):
        raise LineOAError(f"Connection {conn_id!r} ({conn.conn_type}) is not a SQL connection")
    return hook


def ledger_hook(conn_id: str | None = None) -> DbApiHook:
    """Return the common.sql hook of the delivery log's connection.

    When the connection (default ``line_oa_ledger``) is not defined, the log is a SQLite file
    ``delivery_log.db`` under the project's data directory.
    """
    conn_id = conn_id or settings.ledger_conn_id()
    hook = sql_hook(conn_id, data_dir() / "delivery_log.db")
    if not any(name in type(hook).__name__.lower() for name in ("sqlite", "postgres")):
        from line_oa.errors import LineOAError

        raise LineOAError(f"Delivery log connection {conn_id!r} must be sqlite or postgres")
    return hook


def sqlite_file_hook(path: str | pathlib.Path, *, conn_id: str = DEFAULT_LEDGER_CONN_ID) -> DbApiHook:
    """Return a ``SqliteHook`` on a file, without an Airflow connection having to be defined."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook
    from airflow.sdk import Connection

    class FileSqliteHook(SqliteHook):
        def get_uri(self) -> str:
            return f"sqlite:///{self.connection.host}"

    return FileSqliteHook(connection=Connection(conn_id=conn_id, conn_type="sqlite", host=str(path)))
