"""Fixtures of the simulator tests: the session simulator (``sim``) and a small LINE client (``line``)."""

from __future__ import annotations

import uuid

import pytest

from .simulator_helpers import LineClient


@pytest.fixture
def line(sim) -> LineClient:
    """Return a LINE client for the clean simulator, using the default channel's token."""
    return LineClient(sim.base_url)


@pytest.fixture
def retry_key() -> str:
    """Return a fresh retry key."""
    return str(uuid.uuid4())
