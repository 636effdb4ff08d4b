"""Provider metadata: the ``line_oa`` connection type (with its UI form) and config section ``[line_oa]``."""

from __future__ import annotations

from line_oa import __version__, settings

# The line_oa connection form's extra fields (Airflow renders them in the Connections UI).
CONNECTION_FIELDS = {
    "push_rate_limit": {
        "label": "Push rate limit (requests/s)",
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 2000},
        "description": "LINE's limit for this channel's push endpoint (2,000/s by default).",
    },
    "multicast_rate_limit": {
        "label": "Multicast rate limit (requests/s)",
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 200},
        "description": "LINE's limit for this channel's multicast endpoint (200/s by default).",
    },
    "workspaces": {
        "label": "Assigned workspaces",
        "schema": {"type": ["string", "null"]},
        "description": "Comma-separated workspaces allowed to send through this account.",
    },
    "concurrent_senders": {
        "label": "Concurrent senders",
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 1},
        "description": "Slots of this channel's pool: the rate limits are divided among them.",
    },
    "frequency_cap": {
        "label": "Default frequency cap",
        "schema": {"type": ["string", "null"]},
        "description": 'JSON, e.g. {"max_deliveries": 2, "window_hours": 24, "scope": '
        '"sender_account"}: applies to campaigns without target_audience.frequency_cap.',
    },
    "timeout": {
        "label": "Request timeout (s)",
        "schema": {"type": ["number", "null"], "minimum": 0.1, "default": 10},
    },
    "quiet_hours": {
        "label": "Quiet hours (default of every campaign)",
        "schema": {"type": ["string", "null"]},
        "description": 'JSON: {"start": "21:00", "end": "09:00", "timezone": "Asia/Tokyo"}; '
        "a campaign's delivery_schedule.quiet_hours replaces it.",
    },
}


def get_provider_info() -> dict:
    """Return the provider info Airflow reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "line-oa-campaigns",
        "name": "LINE Official Account campaigns",
        "description": "Deliver LINE Official Account campaigns (push and multicast) from Airflow.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "line_oa",
                "hook-class-name": "line_oa.integration.hooks.LineOAHook",
                "hook-name": "LINE Official Account",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "API base URL", "password": "Channel access token"},
                    "placeholders": {
                        "host": "https://api.line.me",
                        "password": "long-lived or stateless channel access token",
                    },
                },
                "conn-fields": CONNECTION_FIELDS,
            }
        ],
        "config": settings.provider_config(),
    }
