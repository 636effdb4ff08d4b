"""Provide the ``line_simulator`` (session) and ``sim`` (clean per test) fixtures.

Load with ``pytest_plugins = ["line_simulator.pytest_plugin"]`` in the root ``conftest.py``, or
``from line_simulator.pytest_plugin import *`` in a nested one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from line_simulator.testing import SimulatorProcess

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["line_simulator", "sim"]


@pytest.fixture(scope="session")
def line_simulator() -> Iterator[SimulatorProcess]:
    """Run one simulator subprocess with the default configuration for the whole session."""
    with SimulatorProcess() as process:
        yield process


@pytest.fixture
def sim(line_simulator: SimulatorProcess) -> SimulatorProcess:
    """Return the session simulator reset to its default configuration: empty record, fresh clock."""
    assert line_simulator.admin is not None
    line_simulator.admin.reset(keep_config=False)
    return line_simulator
