"""A local LINE Messaging API: LINE's paths, bodies, status codes, limits and rules, plus fault injection.

Start it with ``python -m line_simulator``; drive it from tests with
``line_simulator.testing.SimulatorProcess``. See ``docs/simulator.md``.
"""

from line_simulator.config import DEFAULT_TOKEN, ConfigError, build_config, default_config

__all__ = ["DEFAULT_TOKEN", "ConfigError", "build_config", "default_config"]
