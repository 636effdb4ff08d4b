"""The package as a wheel: built with ``uv build``, installed non-editable into a fresh venv, used there.

Away from the checkout (working directory and ``AIRFLOW_HOME`` in a temporary folder, no
``PYTHONPATH``), the installed package creates the delivery log from its package data, runs the LINE
simulator and loads the campaigns of a configured folder (copies of ``include/campaigns`` and
``include/sql``: user content, not in the wheel); ``python -m line_oa validate`` answers there as it
does in the checkout.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
# What setuptools reads to build: pyproject.toml (no setup.py, setup.cfg or MANIFEST.in), its readme,
# and the packages under plugins/.
BUILD_INPUTS = ("pyproject.toml", "README.md", "plugins")
TIMEOUT = 300

# Run by the fresh venv's python, in the temporary folder; prints one JSON line.
CHILD = r"""
import json, pathlib, sqlite3, sys, sysconfig

import requests

import line_oa, line_simulator
from line_oa import settings
from line_oa.campaign.loading import load_campaign
from line_oa.delivery_log import store
from line_simulator import DEFAULT_TOKEN
from line_simulator.testing import SimulatorProcess

result = {
    "line_oa": line_oa.__file__,
    "line_simulator": line_simulator.__file__,
    "purelib": sysconfig.get_paths()["purelib"],
    "data_dir": str(settings.data_dir()),
}

# (a) the delivery log, its DDL read from the installed package data
log = store.DeliveryLog(
    store.sqlite_file_hook(store.data_dir() / "delivery_log.db"), campaign_id="wheel", run_id="r1"
)
try:
    rows = log._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
finally:
    log.close()
result["log_file"] = str(store.data_dir() / "delivery_log.db")
result["tables"] = sorted(name for (name,) in rows)
result["expected_tables"] = sorted([store.TABLE, store.SUMMARY_TABLE, store.CLAIM_TABLE, store.DELIVERY_TABLE])

# (b) the simulator, started from the installed package (python -m line_simulator --port 0)
with SimulatorProcess() as simulator:
    answer = requests.get(
        f"{simulator.base_url}/v2/bot/message/quota",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
        timeout=10,
    )
    result["quota_status"] = answer.status_code
    result["quota"] = answer.json()

# (c) every campaign of the configured folder
folder = settings.campaigns_dir()
result["campaigns_dir"] = str(folder)
result["sql_root"] = str(settings.sql_root())
result["campaigns"] = sorted(load_campaign(path).id for path in sorted(folder.glob("*.yaml")))
print(json.dumps(result))
"""


def clean_environment(**settings: str) -> dict[str, str]:
    """Return this environment without Airflow's, the project's or Python's path settings, plus ``settings``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "LINE_OA_", "PYTHON", "VIRTUAL_ENV", "UV_"))
    }
    env.update(settings)
    return env


def uv() -> str:
    found = shutil.which("uv", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed (make install puts it in .venv/bin)")
    return found


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    return result


def validate(python: str, cwd: pathlib.Path, env: dict[str, str]) -> tuple[int, dict]:
    result = subprocess.run(
        [python, "-m", "line_oa", "validate", "--format", "json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def outcome(document: dict) -> dict[str, tuple[bool, list[tuple[str, str]]]]:
    """Return each file's verdict and problems by file name (paths differ between the two places)."""
    return {
        pathlib.Path(report["file"]).name: (
            report["ok"],
            sorted((problem["tab"], problem["path"]) for problem in report["problems"]),
        )
        for report in document["files"]
    }


def beside_uvs_cache() -> str | None:
    """A temporary folder's parent on the filesystem of uv's cache (None: the default one is).

    uv links a venv's packages from its cache where it can (hard links: one filesystem); with the
    tests' files on tmpfs (``make test``) it would copy Airflow and the rest, about 780 MB, into memory
    on every run instead.
    """
    cache = run([uv(), "cache", "dir"]).stdout.strip()
    if not cache or not os.path.isdir(cache):
        return None
    device = os.stat(cache).st_dev
    if os.stat(tempfile.gettempdir()).st_dev == device:
        return None
    candidates = ("/var/tmp", os.path.dirname(cache))
    return next(
        (d for d in candidates if os.path.isdir(d) and os.access(d, os.W_OK) and os.stat(d).st_dev == device),
        None,
    )


@pytest.fixture(scope="module")
def installed() -> Iterator[dict]:
    """Build the wheel, install it into a fresh venv and run ``CHILD`` there; yield what it printed.

    The folder (the venv alone is about 780 MB) is removed after the module's tests.
    """
    with tempfile.TemporaryDirectory(prefix="line_oa_wheel_", dir=beside_uvs_cache()) as folder:
        yield build_and_install(pathlib.Path(folder))


def build_and_install(tmp: pathlib.Path) -> dict:
    timings = {}
    started = time.monotonic()
    # Build from a copy: the build writes build/ and *.egg-info beside its sources, never in the checkout.
    source = tmp / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    run([uv(), "build", "--wheel", "--quiet", "-o", str(tmp / "dist"), str(source)])
    (wheel,) = (tmp / "dist").glob("line_oa_campaigns-*.whl")
    timings["build"] = time.monotonic() - started

    started = time.monotonic()
    venv = tmp / "venv"
    run([uv(), "venv", "--quiet", str(venv), "--python", sys.executable])
    python = str(venv / "bin" / "python")
    requirements = str(ROOT / "requirements.txt")
    run([uv(), "pip", "install", "--quiet", "--python", python, "-r", requirements, str(wheel)])
    timings["install"] = time.monotonic() - started

    # The user's content, in the folders the settings name; AIRFLOW_HOME fresh, data_dir left to default.
    work = tmp / "work"
    shutil.copytree(ROOT / "include" / "campaigns", work / "campaigns")
    shutil.copytree(ROOT / "include" / "sql", work / "sql")
    env = clean_environment(
        AIRFLOW_HOME=str(work / "airflow_home"),
        AIRFLOW__LINE_OA__CAMPAIGNS_DIR=str(work / "campaigns"),
        AIRFLOW__LINE_OA__SQL_ROOT=str(work / "sql"),
    )
    started = time.monotonic()
    child = run([python, "-c", CHILD], cwd=work, env=env)
    timings["use"] = time.monotonic() - started
    print(f"wheel test: {', '.join(f'{key} {value:.1f} s' for key, value in timings.items())}")
    return {
        "wheel": wheel,
        "python": python,
        "work": work,
        "env": env,
        "result": json.loads(child.stdout.splitlines()[-1]),
    }


def test_the_wheel_carries_both_packages_and_the_delivery_log_ddl(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "line_oa/delivery_log/schema/sqlite.sql" in names
    assert "line_oa/delivery_log/schema/postgres.sql" in names
    assert "line_oa/delivery_log/schema/insights_sqlite.sql" in names
    assert "line_oa/delivery_log/schema/insights_postgres.sql" in names
    assert "line_simulator/__main__.py" in names
    # User content stays out of the package.
    assert not [name for name in names if name.endswith(".yaml") or "segments/" in name]


def test_the_package_runs_from_the_fresh_venv_not_the_checkout(installed):
    result = installed["result"]
    purelib = pathlib.Path(result["purelib"])
    for module in ("line_oa", "line_simulator"):
        path = pathlib.Path(result[module])
        assert path.is_relative_to(purelib), path
        assert not path.is_relative_to(ROOT), path


def test_installed_it_creates_the_delivery_log_under_airflow_home(installed):
    result = installed["result"]
    data_dir = installed["work"] / "airflow_home" / "line_oa"
    assert pathlib.Path(result["data_dir"]) == data_dir
    assert pathlib.Path(result["log_file"]) == data_dir / "delivery_log.db"
    assert (data_dir / "delivery_log.db").is_file()
    assert set(result["expected_tables"]) <= set(result["tables"])


def test_installed_it_runs_the_simulator(installed):
    assert installed["result"]["quota_status"] == 200
    assert installed["result"]["quota"] == {"type": "none"}


def test_installed_it_loads_every_campaign_of_the_configured_folder(installed):
    result = installed["result"]
    assert pathlib.Path(result["campaigns_dir"]) == installed["work"] / "campaigns"
    assert pathlib.Path(result["sql_root"]) == installed["work"] / "sql"
    expected = sorted(path.stem for path in (ROOT / "include" / "campaigns").glob("*.yaml"))
    assert result["campaigns"] == expected


def test_installed_validate_answers_as_in_the_checkout(installed, tmp_path):
    code, document = validate(installed["python"], installed["work"], installed["env"])
    checkout_code, checkout_document = validate(
        sys.executable, ROOT, clean_environment(AIRFLOW_HOME=str(tmp_path / "airflow_home"))
    )
    assert code == checkout_code
    assert outcome(document) == outcome(checkout_document)
    assert len(document["files"]) == len(list((ROOT / "include" / "campaigns").glob("*.yaml")))
