"""Build the aiohttp application that serves a ``Simulator``: LINE's endpoints and the admin ones."""

from __future__ import annotations

from aiohttp import web

from line_simulator import admin, insights, routes
from line_simulator.runtime import SIMULATOR, Simulator

__all__ = ["Simulator", "create_app"]


def create_app(simulator: Simulator | None = None) -> web.Application:
    """Return the aiohttp application serving LINE's endpoints and the ``/_sim/`` admin endpoints."""
    app = web.Application(client_max_size=routes.READ_LIMIT)
    app[SIMULATOR] = simulator or Simulator()
    routes.add_routes(app)
    admin.add_routes(app)
    insights.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", routes.not_found)
    return app
