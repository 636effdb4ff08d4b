"""The Airflow plugin of the package (entry point ``airflow.plugins``): the campaign pages in the UI.

Loaded wherever the package is installed. It mounts ``line_oa.ui.app`` in the api-server at
``/line-campaigns`` and adds three external views: a "LINE campaigns" page in the navigation, a
"Campaign" tab on every DAG and a "Delivery" tab on every DAG run (on DAGs that are not campaigns
they say so).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from line_oa.ui.pages import PREFIX


class CampaignPagesApp:
    """The pages' ASGI app, built on its first request.

    Every Airflow process loads the installed plugins (task processes too, for macros), but only the
    api-server serves the pages: building the FastAPI app, with the api-server's security imports,
    when the plugin loads cost each task process about a second.
    """

    def __init__(self) -> None:
        self._app = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            from line_oa.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class LineCampaignsPlugin(AirflowPlugin):
    """Campaign pages: the campaigns list, the Campaign tab (preview, reach) and the Delivery tab."""

    name = "line_oa"
    fastapi_apps = [{"app": CampaignPagesApp(), "url_prefix": PREFIX, "name": "LINE campaigns"}]
    external_views = [
        {
            "name": "LINE campaigns",
            "href": f"{PREFIX}/campaigns",
            "destination": "nav",
            "url_route": "line-campaigns",
        },
        {
            "name": "Campaign",
            "href": f"{PREFIX}/dags/{{DAG_ID}}/campaign",
            "destination": "dag",
            "url_route": "line-campaign",
        },
        {
            "name": "Delivery",
            "href": f"{PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}/delivery",
            "destination": "dag_run",
            "url_route": "line-delivery",
        },
    ]
