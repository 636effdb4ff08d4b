"""A local LINE Messaging API: LINE's paths, bodies, status codes, limits and rules, plus fault injection.

Start it with ``python -m line_oa.simulator``; drive it from tests with
``line_oa.simulator.testing.SimulatorProcess``. See ``docs/simulator.md``.
"""

from line_oa.simulator.config import DEFAULT_TOKEN, ConfigError, build_config, default_config

__all__ = ["DEFAULT_TOKEN", "ConfigError", "build_config", "default_config"]
