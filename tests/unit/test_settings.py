"""Settings: Airflow config section ``[line_oa]`` (declared by the provider), deprecated ``LINE_OA_*``."""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import subprocess
import sys
import warnings

import pytest

from line_oa import settings
from line_oa.integration.provider import get_provider_info

ROOT = pathlib.Path(__file__).resolve().parents[2]
# One value per option, as text in the environment and as the accessor returns it.
SAMPLES = {
    "data_dir": ("/srv/line/data", pathlib.Path("/srv/line/data")),
    "campaigns_dir": ("/srv/line/campaigns", pathlib.Path("/srv/line/campaigns")),
    "sql_root": ("/srv/line/sql", pathlib.Path("/srv/line/sql")),
    "staging_uri": ("s3://bucket/line", "s3://bucket/line"),
    "report_dir": ("/srv/line/reports", pathlib.Path("/srv/line/reports")),
    "ledger_conn_id": ("line_oa_pg_log", "line_oa_pg_log"),
    "channel_pools": ("true", True),
    "strict_dags": ("1", True),
    "log_write_timeout": ("2.5", 2.5),
    "log_connect_timeout": ("3", 3),
    "log_statement_timeout_ms": ("1500", 1500),
    "log_busy_timeout_ms": ("700", 700),
    "push_retry_delay": ("0.5", 0.5),
}
DEFAULTS = {
    "data_dir": ROOT / "data",
    "campaigns_dir": ROOT / "include" / "campaigns",
    "sql_root": ROOT / "include" / "sql",
    "staging_uri": None,
    "report_dir": None,
    "ledger_conn_id": "line_oa_ledger",
    "channel_pools": False,
    "strict_dags": False,
    "log_write_timeout": 60.0,
    "log_connect_timeout": 10,
    "log_statement_timeout_ms": 60000,
    "log_busy_timeout_ms": 30000,
    "push_retry_delay": 10.0,
}


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch):
    for key in settings.OPTIONS:
        monkeypatch.delenv(f"AIRFLOW__LINE_OA__{key.upper()}", raising=False)
        monkeypatch.delenv(f"LINE_OA_{key.upper()}", raising=False)
    monkeypatch.setattr(settings, "_warned", set())


def declared_options() -> dict[str, dict]:
    return get_provider_info()["config"]["line_oa"]["options"]


def test_every_declared_option_has_an_accessor_and_every_accessor_is_declared():
    accessors = {
        name
        for name, function in inspect.getmembers(settings, inspect.isfunction)
        if function.__module__ == settings.__name__ and not name.startswith("_") and name != "provider_config"
    }
    assert set(declared_options()) == accessors == set(SAMPLES) == set(DEFAULTS)


def test_the_provider_info_is_valid_for_airflow():
    from airflow.providers_manager import _create_provider_info_schema_validator

    _create_provider_info_schema_validator().validate(get_provider_info())
    for key, option in declared_options().items():
        assert option["description"], key
        # No default for Airflow: a generated airflow.cfg would write it and hide the deprecated names.
        assert option["default"] is None, key
        assert f"LINE_OA_{key.upper()}" in option["description"]


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_defaults(key):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(settings, key)() == DEFAULTS[key]


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_airflow_variables_set_every_option_when_read(key, monkeypatch):
    text, value = SAMPLES[key]
    monkeypatch.setenv(f"AIRFLOW__LINE_OA__{key.upper()}", text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(settings, key)() == value


def test_the_airflow_variable_wins_over_the_deprecated_one(monkeypatch):
    monkeypatch.setenv("AIRFLOW__LINE_OA__DATA_DIR", "/new")
    monkeypatch.setenv("LINE_OA_DATA_DIR", "/old")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings.data_dir() == pathlib.Path("/new")


def test_the_deprecated_variable_still_works_and_warns_once(monkeypatch):
    monkeypatch.setenv("LINE_OA_DATA_DIR", "/old")
    with pytest.warns(
        DeprecationWarning, match="LINE_OA_DATA_DIR is deprecated: set AIRFLOW__LINE_OA__DATA_DIR"
    ):
        assert settings.data_dir() == pathlib.Path("/old")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings.data_dir() == pathlib.Path("/old")
    monkeypatch.setenv("LINE_OA_CHANNEL_POOLS", "1")
    with pytest.warns(DeprecationWarning, match="AIRFLOW__LINE_OA__CHANNEL_POOLS"):
        assert settings.channel_pools() is True


def test_a_boolean_that_is_neither_true_nor_false_is_an_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW__LINE_OA__STRICT_DAGS", "yes please")
    with pytest.raises(ValueError, match=r"\[line_oa\] strict_dags"):
        settings.strict_dags()


@pytest.mark.parametrize("text", ["soon", "-5", "nan", "inf"])
def test_a_push_retry_delay_that_is_not_seconds_is_an_error(monkeypatch, text):
    monkeypatch.setenv("AIRFLOW__LINE_OA__PUSH_RETRY_DELAY", text)
    with pytest.raises(
        ValueError, match=rf"\[line_oa\] push_retry_delay must be a number of seconds.*{text!r}"
    ):
        settings.push_retry_delay()


def test_the_delivery_log_reads_its_timeouts_when_opened(tmp_path, monkeypatch):
    from line_oa.delivery_log.store import DeliveryLog, sqlite_file_hook

    monkeypatch.setenv("AIRFLOW__LINE_OA__LOG_BUSY_TIMEOUT_MS", "1234")
    ledger = DeliveryLog(sqlite_file_hook(tmp_path / "log.db"), campaign_id="c", run_id="r")
    try:
        assert ledger._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    finally:
        ledger.close()


def airflow_environment(home: pathlib.Path) -> dict[str, str]:
    """Return an environment for an Airflow command on this tree, without the test settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LINE_OA_"))}
    env["AIRFLOW_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])
    return env


@pytest.mark.slow
def test_airflow_config_list_shows_every_option_with_its_description(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "config", "list", "--section", "line_oa", "--include-descriptions"],
        env=airflow_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "[line_oa]" in lines
    for key, option in declared_options().items():
        assert f"# {key} = " in lines, key
        assert f"# {option['description']}" in lines, key


@pytest.mark.slow
def test_airflow_cfg_wins_over_the_deprecated_variable(tmp_path):
    (tmp_path / "airflow.cfg").write_text("[line_oa]\ndata_dir = /from/cfg\nlog_connect_timeout = 7\n")
    env = airflow_environment(tmp_path)
    env["LINE_OA_DATA_DIR"] = "/old"
    env["LINE_OA_LOG_BUSY_TIMEOUT_MS"] = "99"
    code = (
        "import json; from line_oa import settings as s; "
        "print(json.dumps([str(s.data_dir()), s.log_connect_timeout(), s.log_busy_timeout_ms()]))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == ["/from/cfg", 7, 99]


@pytest.mark.slow
def test_validate_keeps_its_json_on_stdout_when_a_deprecated_name_is_used(tmp_path):
    env = airflow_environment(tmp_path)
    env["LINE_OA_SQL_ROOT"] = str(ROOT / "include" / "sql")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "line_oa",
            "validate",
            "--format",
            "json",
            "include/campaigns/welcome_back.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(result.stdout)["ok"] is True, result.stderr
    assert "LINE_OA_SQL_ROOT is deprecated: set AIRFLOW__LINE_OA__SQL_ROOT" in result.stderr
