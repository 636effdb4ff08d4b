"""Fixtures of the insight tests: the simulator, a LINE connection at it, a delivery log on SQLite or PostgreSQL."""

from __future__ import annotations

from tests.delivery.conftest import ledger_factory, line_conn  # noqa: F401  (fixtures reused)
