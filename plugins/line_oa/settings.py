"""The project's settings: Airflow config section ``[line_oa]``, declared by the provider.

Each setting is read when its accessor is called, in this order:

1. Airflow's own config: ``AIRFLOW__LINE_OA__<KEY>`` or ``[line_oa] <key>`` in ``airflow.cfg``;
2. the deprecated variable ``LINE_OA_<KEY>`` (a ``DeprecationWarning`` names the new one);
3. the default below.

``OPTIONS`` is also what ``get_provider_info()`` declares, so ``airflow config list`` shows it.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
import warnings
from typing import NamedTuple

from line_oa import paths

SECTION = "line_oa"
# Show these deprecations (Python hides DeprecationWarning outside __main__), as Airflow does its own.
if not sys.warnoptions:
    warnings.filterwarnings("default", category=DeprecationWarning, module=__name__)


class Option(NamedTuple):
    type: str  # "string", "boolean", "integer" or "float", as in Airflow's config description
    default: str | None  # None: derived, see the description
    description: str
    example: str | None = None


OPTIONS: dict[str, Option] = {
    "data_dir": Option(
        "string",
        None,
        "Folder of the SQLite delivery log, the sample CDP, chunk files and reports when no other "
        "place is set. Default: the source checkout's ``data/`` folder; installed from a wheel, "
        "``$AIRFLOW_HOME/line_oa``.",
        "/opt/airflow/data",
    ),
    "campaigns_dir": Option(
        "string",
        None,
        "Folder whose ``*.yaml`` campaign files become DAGs. Default: the source checkout's "
        "``include/campaigns``; installed from a wheel, ``$AIRFLOW_HOME/line_oa/campaigns``.",
        "/opt/airflow/include/campaigns",
    ),
    "sql_root": Option(
        "string",
        None,
        "Folder holding the segment SQL, ``segments/<parent>/<segment>.sql``. Default: the source "
        "checkout's ``include/sql``; installed from a wheel, ``$AIRFLOW_HOME/line_oa/sql``.",
        "/opt/airflow/include/sql",
    ),
    "staging_uri": Option(
        "string",
        None,
        "Where chunk files go: a local folder or any ``ObjectStoragePath`` URI; every worker must "
        "read it. Default: ``<data_dir>/staging``.",
        "s3://bucket/line",
    ),
    "report_dir": Option(
        "string", None, "Folder of the HTML delivery reports. Default: ``<data_dir>/reports``.", "/reports"
    ),
    "ledger_conn_id": Option(
        "string",
        "line_oa_ledger",
        "Connection of the delivery log (sqlite or postgres). Undefined, the log is the SQLite file "
        "``<data_dir>/delivery_log.db``.",
    ),
    "channel_pools": Option(
        "boolean",
        "False",
        "Run push tasks in pool ``line_oa__<connection id>`` (create it with the connection's "
        "``concurrent_senders`` slots) so campaigns on one LINE channel share its rate limit.",
    ),
    "strict_dags": Option(
        "boolean",
        "False",
        "A broken campaign file is an import error of the DAG file instead of a placeholder DAG (CI).",
    ),
    "log_write_timeout": Option(
        "float",
        "60",
        "Seconds a delivery-log write may take before the chunk fails (resumable) instead of hanging.",
    ),
    "log_connect_timeout": Option(
        "integer", "10", "Seconds to connect to a PostgreSQL delivery log (``PGCONNECT_TIMEOUT``)."
    ),
    "log_statement_timeout_ms": Option(
        "integer", "60000", "``statement_timeout`` of delivery-log sessions on PostgreSQL, in milliseconds."
    ),
    "log_busy_timeout_ms": Option(
        "integer", "30000", "``busy_timeout`` of the SQLite delivery log, in milliseconds."
    ),
    "push_retry_delay": Option(
        "float",
        "10",
        "Seconds Airflow waits before it retries a failed push task (a killed worker, LINE still "
        "failing after the chunk's own backoff); a push task has 3 retries.",
    ),
}
_warned: set[str] = set()


def provider_config() -> dict:
    """Return the ``[line_oa]`` section as a provider declares it (``get_provider_info()["config"]``).

    Defaults are given in the descriptions only: an option with a default would be written uncommented
    into the ``airflow.cfg`` that Airflow generates, and would then hide the deprecated variables.
    """
    options = {}
    for key, option in OPTIONS.items():
        description = option.description
        if option.default is not None:
            description += f" Default: ``{option.default}``."
        options[key] = {
            "description": f"{description} Replaces ``LINE_OA_{key.upper()}`` (deprecated).",
            "version_added": None,
            "type": option.type,
            "example": option.example,
            "default": None,
        }
    return {SECTION: {"description": "LINE Official Account campaign delivery.", "options": options}}


def _text(key: str) -> str | None:
    """Return the setting as text: Airflow's config, else the deprecated variable, else the default."""
    from airflow.sdk import conf

    # AIRFLOW__LINE_OA__<KEY> or airflow.cfg; None when unset (Airflow has no default, see above).
    value = conf.get(SECTION, key, fallback=None)
    old = f"LINE_OA_{key.upper()}"
    if not value and os.environ.get(old):
        if old not in _warned:
            _warned.add(old)
            new = f"AIRFLOW__LINE_OA__{key.upper()}"
            message = f"{old} is deprecated: set {new} (or [{SECTION}] {key} in airflow.cfg) instead"
            warnings.warn(message, DeprecationWarning, stacklevel=2)
        value = os.environ[old]
    return value or OPTIONS[key].default


def _path(key: str) -> pathlib.Path | None:
    text = _text(key)
    return pathlib.Path(text) if text else None


def _bool(key: str) -> bool:
    text = str(_text(key)).strip().lower()
    if text not in ("1", "true", "t", "0", "false", "f"):
        raise ValueError(f"[{SECTION}] {key} must be true or false, not {text!r}")
    return text in ("1", "true", "t")


def data_dir() -> pathlib.Path:
    """Return the data folder (``delivery_log.store.data_dir()`` creates it); default: see ``paths``."""
    return _path("data_dir") or paths.default_data_dir()


def campaigns_dir() -> pathlib.Path:
    return _path("campaigns_dir") or paths.default_campaigns_dir()


def sql_root() -> pathlib.Path:
    return _path("sql_root") or paths.default_sql_root()


def staging_uri() -> str | None:
    """Return where chunk files go, or None for ``<data_dir>/staging``."""
    return _text("staging_uri")


def report_dir() -> pathlib.Path | None:
    """Return the reports folder, or None for ``<data_dir>/reports``."""
    return _path("report_dir")


def ledger_conn_id() -> str:
    return str(_text("ledger_conn_id"))


def channel_pools() -> bool:
    return _bool("channel_pools")


def strict_dags() -> bool:
    return _bool("strict_dags")


def log_write_timeout() -> float:
    return float(str(_text("log_write_timeout")))


def log_connect_timeout() -> int:
    return int(str(_text("log_connect_timeout")))


def log_statement_timeout_ms() -> int:
    return int(str(_text("log_statement_timeout_ms")))


def log_busy_timeout_ms() -> int:
    return int(str(_text("log_busy_timeout_ms")))


def push_retry_delay() -> float:
    text = str(_text("push_retry_delay"))
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:  # refuses nan too
        raise ValueError(f"[{SECTION}] push_retry_delay must be a number of seconds, 0 or more, not {text!r}")
    return seconds
