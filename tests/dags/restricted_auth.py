"""An auth manager for the campaign pages' tests: Airflow's simple auth manager, except that the user
``outsider`` may read one campaign DAG only (``line_campaign__e2e_pages``).

Airflow's simple auth manager gives every viewer every DAG; per-DAG access needs an auth manager that
decides per DAG (FAB, Keycloak...), which is what this subclass does, through the same interface the
api-server calls.
"""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

from tests.dags.pages_users import OUTSIDER, OUTSIDER_MAY_READ


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if user.get_name() == OUTSIDER and (details is None or details.id != OUTSIDER_MAY_READ):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
