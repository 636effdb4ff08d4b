"""docker-compose.yaml is a valid compose file with the stack docs/operations.md describes.

``docker-compose config`` validates and resolves the file without a Docker engine (Debian's
docker-compose 1.29, installed by .ci/run). Fast: not a live test.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest
import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AIRFLOW_SERVICES = (
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
)  # fmt: skip
LONG_RUNNING = ("postgres", "redis", "line-simulator", *AIRFLOW_SERVICES)
STAGING = "/opt/airflow/staging"


def compose_config(path: pathlib.Path = COMPOSE_FILE, **env: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (.ci/run installs it: "
            "apt-get install -y --no-install-recommends docker-compose)"
        )
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(path.parent), **env}
    return subprocess.run(
        [binary, "-f", str(path), "config"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=path.parent,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = compose_config()
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def environment_of(service: dict) -> dict:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_the_stack_has_every_service_of_airflows_celery_compose_file_plus_the_line_simulator(resolved):
    assert set(resolved["services"]) >= {*LONG_RUNNING, "airflow-init"}


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_healthcheck(resolved, name):
    healthcheck = resolved["services"][name].get("healthcheck") or {}
    assert healthcheck.get("test"), f"{name} has no healthcheck"
    assert not healthcheck.get("disable")


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_share_the_celery_settings_the_mounts_and_the_staging_volume(resolved, name):
    service = resolved["services"][name]
    env = environment_of(service)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert env["AIRFLOW__LINE_OA__CHANNEL_POOLS"] == "true"
    assert env["AIRFLOW__LINE_OA__STAGING_URI"] == STAGING
    targets = {volume.split(":")[1] for volume in service["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include", STAGING} <= targets
    staging = next(volume for volume in service["volumes"] if volume.split(":")[1] == STAGING)
    assert staging.split(":")[0] in resolved["volumes"], "chunk files need a volume every worker shares"
    dependencies = service["depends_on"]
    assert dependencies["postgres"]["condition"] == "service_healthy"
    assert dependencies["redis"]["condition"] == "service_healthy"
    assert dependencies["airflow-init"]["condition"] == "service_completed_successfully"


def test_workers_can_be_scaled(resolved):
    worker = resolved["services"]["airflow-worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "a published port would clash between scaled workers"
    assert worker["command"] in ("celery worker", ["celery", "worker"])


def test_the_line_connection_points_at_the_simulator_by_default(resolved):
    simulator = resolved["services"]["line-simulator"]
    command = simulator["command"]
    command = command.split() if isinstance(command, str) else command
    assert command[:3] == ["python", "-m", "line_simulator"]
    assert command[command.index("--port") + 1] == "8099"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    config = command[command.index("--config") + 1]
    assert config == "/opt/airflow/include/simulator/default.yaml"
    sim_token = yaml.safe_load((REPO_ROOT / "include" / "simulator" / "default.yaml").read_text())
    connection = json.loads(
        environment_of(resolved["services"]["airflow-worker"])["AIRFLOW_CONN_LINE_OA_DEFAULT"]
    )
    assert connection["conn_type"] == "line_oa"
    assert connection["host"] == "http://line-simulator:8099"
    assert connection["password"] == sim_token["channels"][0]["token"]
    assert connection["extra"]["workspaces"]


def test_a_real_line_token_from_the_environment_replaces_the_simulator():
    result = compose_config(LINE_OA_HOST="https://api.line.me", LINE_OA_CHANNEL_ACCESS_TOKEN="a+b/c=")
    assert result.returncode == 0, result.stderr
    env = environment_of(yaml.safe_load(result.stdout)["services"]["airflow-scheduler"])
    connection = json.loads(env["AIRFLOW_CONN_LINE_OA_DEFAULT"])
    assert (connection["host"], connection["password"]) == ("https://api.line.me", "a+b/c=")


def test_airflow_init_migrates_and_creates_the_channel_pool_and_the_delivery_log(resolved):
    init = resolved["services"]["airflow-init"]
    script = "\n".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "airflow db migrate" in script
    assert "pools set line_oa__line_oa_default" in script
    assert "DeliveryLog.connect" in script
    ledger = json.loads(environment_of(init)["AIRFLOW_CONN_LINE_OA_LEDGER"])
    assert (ledger["conn_type"], ledger["host"]) == ("postgres", "postgres")


def test_the_image_is_built_from_airflow_3_3_2_with_the_pinned_requirements_and_the_package():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "pip install --no-cache-dir -r" in dockerfile
    assert "--no-deps -e /opt/airflow" in dockerfile
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv", ".git", "data", "logs"} <= set(ignored), (
        "secrets and local state stay out of the image"
    )


def test_the_validation_refuses_a_broken_file(tmp_path):
    broken = COMPOSE_FILE.read_text().replace(
        "    command: scheduler\n", "    command: scheduler\n    restartt: always\n"
    )
    assert broken != COMPOSE_FILE.read_text()
    (tmp_path / "docker-compose.yaml").write_text(broken)
    result = compose_config(tmp_path / "docker-compose.yaml")
    assert result.returncode != 0
    assert "restartt" in result.stderr


def test_the_example_env_file_gives_a_valid_stack_on_the_simulator(tmp_path):
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yaml")
    shutil.copy(REPO_ROOT / ".env.example", tmp_path / ".env")
    result = compose_config(tmp_path / "docker-compose.yaml")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    connection = json.loads(environment_of(services["airflow-worker"])["AIRFLOW_CONN_LINE_OA_DEFAULT"])
    assert connection["host"] == "http://line-simulator:8099"
    assert connection["extra"] == {
        "workspaces": "retail_jp", "push_rate_limit": 2000, "multicast_rate_limit": 200, "concurrent_senders": 1,
    }  # fmt: skip
