"""Default folders: a source checkout's, or under ``$AIRFLOW_HOME/line_oa`` when the package is installed."""

from __future__ import annotations

import pathlib

import pytest

from line_oa import paths, settings
from line_oa.campaign import validation

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_folder_settings(monkeypatch):
    for key in ("data_dir", "campaigns_dir", "sql_root"):
        monkeypatch.delenv(f"AIRFLOW__LINE_OA__{key.upper()}", raising=False)
        monkeypatch.delenv(f"LINE_OA_{key.upper()}", raising=False)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Pretend the package lies in a site-packages folder, with no checkout around it."""
    site_packages = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    site_packages.mkdir(parents=True)
    (tmp_path / "venv" / "include").mkdir()  # a venv's include/ is not a checkout's
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", site_packages)
    return tmp_path


def test_this_tree_is_a_source_checkout():
    assert paths.source_checkout() == ROOT
    assert settings.data_dir() == ROOT / "data"
    assert settings.campaigns_dir() == ROOT / "include" / "campaigns"
    assert settings.sql_root() == ROOT / "include" / "sql"


def test_installed_the_defaults_are_under_airflow_home(installed, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(installed / "home"))
    assert paths.source_checkout() is None
    assert settings.data_dir() == installed / "home" / "line_oa"
    assert settings.campaigns_dir() == installed / "home" / "line_oa" / "campaigns"
    assert settings.sql_root() == installed / "home" / "line_oa" / "sql"


def test_installed_without_airflow_home_the_defaults_are_under_home_airflow(installed, monkeypatch):
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("HOME", str(installed / "user"))
    assert paths.default_data_dir() == installed / "user" / "airflow" / "line_oa"


def test_a_plugins_folder_without_include_beside_it_is_not_a_checkout(tmp_path, monkeypatch):
    (tmp_path / "plugins").mkdir()
    monkeypatch.setattr(paths, "_PACKAGE_PARENT", tmp_path / "plugins")
    assert paths.source_checkout() is None
    (tmp_path / "include").mkdir()
    assert paths.source_checkout() == tmp_path


def test_settings_win_over_the_installed_defaults(installed, monkeypatch):
    monkeypatch.setenv("AIRFLOW__LINE_OA__SQL_ROOT", str(installed / "sql"))
    assert settings.sql_root() == installed / "sql"


def test_validation_without_a_sql_root_uses_the_same_default(installed, monkeypatch):
    """Installed, a campaign's segment SQL is looked for under ``$AIRFLOW_HOME/line_oa/sql``."""
    monkeypatch.setenv("AIRFLOW_HOME", str(installed / "home"))
    report = validation.validate_campaign_file(ROOT / "include" / "campaigns" / "welcome_back.yaml")
    missing = [problem.message for problem in report.problems if problem.tab == "target_audience"]
    assert missing, report.problems
    assert str(installed / "home" / "line_oa" / "sql") in " ".join(missing)
