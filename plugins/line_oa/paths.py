"""Where the project's folders are by default: a source checkout, or an installed package.

The one place that looks at where the package itself lies. In a source checkout (``plugins/line_oa``
with the checkout's ``include/`` beside ``plugins/``; the Docker image has the same layout under
``/opt/airflow``) the defaults are the checkout's ``data/``, ``include/campaigns`` and ``include/sql``.
Installed from a wheel, nothing of the checkout is there: the defaults are under
``$AIRFLOW_HOME/line_oa`` (``AIRFLOW_HOME`` defaults to ``~/airflow``, as in Airflow).

No Airflow here: ``line_oa.campaign`` uses it and imports no Airflow. ``line_oa.settings`` puts the
``[line_oa]`` options in front of these defaults.
"""

from __future__ import annotations

import os
import pathlib

# plugins/ in a source checkout; site-packages (or wherever it was installed) otherwise.
_PACKAGE_PARENT = pathlib.Path(__file__).resolve().parent.parent


def source_checkout() -> pathlib.Path | None:
    """Return the root of the source checkout the package runs from, or None when it is installed."""
    root = _PACKAGE_PARENT.parent
    if _PACKAGE_PARENT.name == "plugins" and (root / "include").is_dir():
        return root
    return None


def airflow_home() -> pathlib.Path:
    """Return ``$AIRFLOW_HOME``, or ``~/airflow`` when it is not set (Airflow's own default)."""
    return pathlib.Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser()


def default_data_dir() -> pathlib.Path:
    """Return the checkout's ``data/``, else ``$AIRFLOW_HOME/line_oa``."""
    root = source_checkout()
    return root / "data" if root else airflow_home() / "line_oa"


def default_campaigns_dir() -> pathlib.Path:
    """Return the checkout's ``include/campaigns``, else ``$AIRFLOW_HOME/line_oa/campaigns``."""
    root = source_checkout()
    return root / "include" / "campaigns" if root else airflow_home() / "line_oa" / "campaigns"


def default_sql_root() -> pathlib.Path:
    """Return the checkout's ``include/sql``, else ``$AIRFLOW_HOME/line_oa/sql``."""
    root = source_checkout()
    return root / "include" / "sql" if root else airflow_home() / "line_oa" / "sql"
