"""Start the simulator from the command line, the way users and ``SimulatorProcess`` do."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from line_simulator import build_config
from line_simulator.config import load_file
from line_simulator.testing import SimulatorProcess
from tests.processes import ended

from .simulator_helpers import LineClient, user_id

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "include" / "simulator").glob("*.yaml"))


def start(*options: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "line_simulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first_line = process.stdout.readline().strip()
    return process, first_line


def test_port_0_prints_the_url_first_and_sigterm_stops_cleanly():
    process, first_line = start()
    try:
        assert first_line.startswith("LINE simulator listening on http://127.0.0.1:")
        url = first_line.removeprefix("LINE simulator listening on ")
        assert LineClient(url).push(user_id(1)).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert process.stderr.read() == ""


def test_sigint_stops_cleanly_too():
    process, _ = start()
    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=10) == 0


def test_command_line_options_override_the_config_file(tmp_path):
    config = tmp_path / "sim.yaml"
    config.write_text("channels:\n  - {name: default, token: from-file, quota: {type: limited, value: 9}}\n")
    process, first_line = start("--config", str(config), "--token", "from-cli", "--quota", "3")
    try:
        url = first_line.removeprefix("LINE simulator listening on ")
        client = LineClient(url, token="from-cli")
        assert client.get("/v2/bot/message/quota").json() == {"type": "limited", "value": 3}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_a_bad_config_file_stops_with_a_message_naming_the_key(tmp_path):
    config = tmp_path / "sim.yaml"
    config.write_text("faults: {error_500_rate: 3}\n")

    result = subprocess.run(
        [sys.executable, "-m", "line_simulator", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert result.returncode == 2
    assert "faults.error_500_rate" in result.stderr


@pytest.mark.parametrize(
    "path", EXAMPLES, ids=[f"the example {path.name} is a valid config" for path in EXAMPLES]
)
def test_the_example_config_files_are_valid(path):
    assert build_config(load_file(path))["channels"]


def test_simulator_process_runs_a_given_config_and_stops(tmp_path):
    config = {"channels": [{"name": "default", "quota": {"type": "limited", "value": 1}}]}
    with SimulatorProcess(config) as process:
        assert process.base_url == f"http://127.0.0.1:{process.port}"
        assert process.pid
        client = LineClient(process.base_url)
        assert client.push(user_id(1)).status_code == 200
        assert client.push(user_id(2)).status_code == 429
        assert process.admin.stats()["quota_exceeded"] == 1
        base_url = process.base_url
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/_sim/stats", timeout=2)


def test_a_simulator_process_ends_when_the_program_that_started_it_is_killed():
    """A test run stopped with SIGKILL (or SIGTERM, which runs no cleanup either) left its simulators
    serving; the simulator now stops when the pipe on its standard input closes."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from line_simulator.testing import SimulatorProcess\n"
            "process = SimulatorProcess().start()\n"
            "print(process.pid, process.base_url, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid, base_url = parent.stdout.readline().split()
        assert requests.get(f"{base_url}/_sim/stats", timeout=5).status_code == 200
    finally:
        parent.kill()
        parent.wait()
    simulator = psutil.Process(int(pid))
    deadline = time.monotonic() + 20
    try:
        while not ended(simulator):
            assert time.monotonic() < deadline, "the simulator outlived the process that started it"
            time.sleep(0.1)
    finally:
        if not ended(simulator):
            simulator.kill()  # not left serving after a failure
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/_sim/stats", timeout=2)


@pytest.mark.slow  # six simulator processes, one after another
def test_a_simulator_process_exits_cleanly_on_sigterm_and_when_its_stdin_closes():
    """Its thread watching standard input must not stop the interpreter from exiting cleanly (a thread
    blocked in ``sys.stdin.buffer`` made the exits abort with "could not acquire lock")."""
    statuses = []
    for _ in range(5):
        simulator = SimulatorProcess().start()
        process = simulator.process
        simulator.stop()  # SIGTERM
        statuses.append(process.returncode)
    simulator = SimulatorProcess().start()
    process = simulator.process
    process.stdin.close()
    statuses.append(process.wait(timeout=20))
    simulator.stop()
    assert statuses == [0] * 6
