"""The campaign pages as a FastAPI app that the Airflow plugin mounts in the api-server.

Every route needs a logged-in Airflow user (the api-server's own ``get_user``: its JWT cookie or a
bearer token) allowed by Airflow's auth manager to read the DAG concerned; the campaigns list shows
only the campaigns whose DAG the user may read. Routes are plain ``def``: FastAPI runs them in its
thread pool, since they read Airflow's metadata database, the delivery log and the CDP. No
``from __future__ import annotations`` here: FastAPI reads the routes' annotations at definition time.
"""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from line_oa.errors import LineOAError
from line_oa.ui import data, pages


def require_dag(user, dag_id: str, *, runs: bool = False, method: str = "GET") -> None:
    """Refuse (403) a user whom Airflow's auth manager does not allow to read the DAG (or its runs),
    or, with ``method="POST"``, to trigger a run of it."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    allowed = get_auth_manager().is_authorized_dag(
        method=method,
        access_entity=DagAccessEntity.RUN if runs else None,
        details=DagDetails(id=dag_id),
        user=user,
    )
    if not allowed:
        what = "trigger runs of" if method == "POST" else "read"
        raise HTTPException(status_code=403, detail=f"not allowed to {what} {dag_id}")


def readable_dag_ids(user, dag_ids: set[str]) -> set[str]:
    """Return those of ``dag_ids`` the user may read (one check per DAG: parsed or not yet)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().filter_authorized_dag_ids(dag_ids=dag_ids, user=user, method="GET"))


def _campaign_or_404(dag_id: str) -> data.CampaignEntry:
    entry = data.find_campaign(dag_id)
    if entry is None:
        raise HTTPException(status_code=404, detail=f"{dag_id} is not a LINE campaign of this deployment")
    return entry


def campaign_page(user, dag_id: str, *, reach: bool) -> str:
    """Return the Campaign tab: the preview, problems, LINE's insights and, when asked, the reach."""
    require_dag(user, dag_id)
    if not dag_id.startswith(data.DAG_PREFIX):
        return pages.message_page(dag_id, "This DAG is not a LINE campaign: it has no campaign preview.")
    entry = _campaign_or_404(dag_id)
    preview_html = ""
    estimate = None
    if entry.campaign is not None:
        from line_oa.campaign.preview import render_preview

        preview_html = render_preview(entry.campaign, problems=entry.problems)
        try:
            preview_html += data.insights_html(entry.campaign)
        except (LineOAError, OSError) as err:
            preview_html += pages.message_section("LINE insights", f"not readable: {err}")
        if reach:
            try:
                estimate = data.reach_estimate(entry.campaign)
            except (LineOAError, OSError) as err:
                estimate = data.Reach(
                    profiles=0, by_reason={}, effective=0, error=f"segment unavailable: {err}"
                )
    return pages.campaign_tab(entry, preview_html, estimate)


def create_app() -> FastAPI:
    """Return the app the plugin mounts at ``/line-campaigns``."""
    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="LINE campaigns", docs_url=None, redoc_url=None, openapi_url=None)
    User = Annotated[object, Depends(get_user)]

    @app.get("/campaigns", response_class=HTMLResponse)
    def campaigns(user: User, workspace: str = Query(""), state: str = Query("")) -> str:
        every = [data.read_campaign(path) for path in data.campaign_files()]
        readable = readable_dag_ids(user, {entry.dag_id for entry in every})
        every = [entry for entry in every if entry.dag_id in readable]
        workspaces = sorted({entry.workspace for entry in every if entry.workspace})
        entries = data.select_campaigns(every, workspace=workspace, state=state)
        return pages.campaigns_page(entries, workspaces=workspaces, workspace=workspace, state=state)

    @app.get("/dags/{dag_id}/campaign", response_class=HTMLResponse)
    def campaign(user: User, dag_id: str) -> str:
        return campaign_page(user, dag_id, reach=False)

    @app.post("/dags/{dag_id}/campaign", response_class=HTMLResponse)
    def campaign_with_reach(user: User, dag_id: str) -> str:
        # The estimate runs the segment SQL on the CDP and asks LINE for the quota: a POST, allowed
        # to whom may trigger the campaign, never a link a browser may prefetch.
        require_dag(user, dag_id, runs=True, method="POST")
        return campaign_page(user, dag_id, reach=True)

    @app.get("/dags/{dag_id}/runs/{run_id}/delivery", response_class=HTMLResponse)
    def delivery(user: User, dag_id: str, run_id: str) -> str:
        require_dag(user, dag_id, runs=True)
        if not dag_id.startswith(data.DAG_PREFIX):
            return pages.message_page(dag_id, "This DAG is not a LINE campaign: it has no delivery view.")
        entry = _campaign_or_404(dag_id)
        if entry.campaign is None:
            return pages.message_page(entry.path.name, entry.error or "invalid campaign file")
        view = data.run_view(entry, run_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"no run {run_id} of {dag_id}")
        return pages.delivery_tab(entry, view)

    return app
