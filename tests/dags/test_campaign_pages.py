"""The campaign pages of the Airflow plugin, served by the real api-server app in process.

Airflow's ``create_app`` mounts the plugin's FastAPI app as the api-server does; requests carry the
api-server's JWT (bearer) as a logged-in user's browser carries its cookie. The DAG runs are real
(``dag.test()`` against the simulator), the delivery log is the run's.
"""

from __future__ import annotations

import re

import pytest

from line_simulator import DEFAULT_TOKEN

from .conftest import eligible_profiles, run_dag, task_states
from .pages_users import OUTSIDER, OUTSIDER_MAY_READ

pytestmark = pytest.mark.slow  # real DAG runs behind the pages
PAGES = "/line-campaigns"


@pytest.fixture(scope="module")
def api(airflow_env):
    """Return (TestClient, token_of(username)) for the api-server app with the plugin mounted."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.dags.restricted_auth.RestrictedAuthManager")
        patch.setenv(
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"viewer:viewer,{OUTSIDER}:viewer,marketer:user"
        )
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        from airflow.api_fastapi import app as api_app
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        api_app.purge_cached_app()
        api_app._AuthManagerState.instance = None
        app = api_app.create_app()

        roles = {"marketer": "user"}

        def token_of(username: str) -> str:
            user = SimpleAuthManagerUser(username=username, role=roles.get(username, "viewer"))
            return api_app.get_auth_manager().generate_jwt(user)

        with TestClient(app) as client:
            yield client, token_of
        api_app._AuthManagerState.instance = None


def get(api, path: str, user: str | None = "viewer", *, method: str = "GET"):
    client, token_of = api
    headers = {"Authorization": f"Bearer {token_of(user)}"} if user else {}
    return client.request(method, PAGES + path, headers=headers)


def test_every_page_refuses_an_anonymous_visitor(api):
    for path in (
        "/campaigns",
        "/dags/line_campaign__e2e_pages/campaign",
        "/dags/line_campaign__e2e_pages/runs/x/delivery",
    ):
        response = get(api, path, user=None)
        assert response.status_code == 401, path


def test_a_user_without_access_to_a_dag_is_refused_and_does_not_see_it(api):
    refused = "line_campaign__e2e_push"
    assert get(api, f"/dags/{refused}/campaign", user=OUTSIDER).status_code == 403
    assert get(api, f"/dags/{refused}/runs/any/delivery", user=OUTSIDER).status_code == 403
    assert get(api, f"/dags/{OUTSIDER_MAY_READ}/campaign", user=OUTSIDER).status_code == 200
    listed = campaign_ids(get(api, "/campaigns", user=OUTSIDER).text)
    assert listed == ["e2e_pages"]


def campaign_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-campaign="([^"]+)"', page)


def states(page: str) -> dict[str, str]:
    rows = re.findall(r'<tr data-campaign="([^"]+)">.*?<span class="state"[^>]*>([A-Za-z]+)</span>', page)
    return dict(rows)


def test_the_campaigns_page_lists_every_campaign_with_the_state_status_gives(api, airflow_env, line):
    from line_oa.integration.status import status_lines

    delivered = run_dag(airflow_env, "e2e_pages")
    assert str(delivered.state) == "success", task_states(delivered)
    page = get(api, "/campaigns").text
    shown = states(page)
    assert set(shown) == {path.stem for path in airflow_env["campaigns"].glob("*.yaml")}
    by_cli = {line.split()[0]: line.split()[1] for line in status_lines(airflow_env["campaigns"])}
    assert shown == by_cli, "the page and `python -m line_oa status` disagree"
    assert shown["e2e_pages"] == "Finished"
    assert shown["e2e_draft"] == "Draft"
    only_drafts = states(get(api, "/campaigns?state=Draft").text)
    assert set(only_drafts) == {"e2e_draft"}
    assert states(get(api, "/campaigns?workspace=retail_kr").text) == {
        "e2e_other_workspace": shown["e2e_other_workspace"]
    }
    assert DEFAULT_TOKEN not in page


def test_the_campaign_tab_shows_the_preview_and_a_reach_estimate_on_request(api, airflow_env, line):
    page = get(api, "/dags/line_campaign__e2e_scheduled/campaign").text
    assert page.count('data-action="') == 2, "the imagemap's two tappable areas"
    assert "utm_source=line" in page
    assert 'id="reach"' not in page, "the estimate runs only on request"
    tab = "/dags/line_campaign__e2e_pages/campaign"
    assert get(api, tab, method="POST").status_code == 403, "a viewer may not run the segment on the CDP"
    assert 'id="reach"' not in get(api, tab + "?reach=1").text, "a GET never runs the estimate"
    estimated = get(api, tab, user="marketer", method="POST").text
    table = re.search(r'<table id="reach".*?</table>', estimated, re.S).group(0)
    effective = int(
        re.search(r"effective reach[^<]*</td><td class=num>([\d,]+)", table).group(1).replace(",", "")
    )
    assert effective == eligible_profiles(airflow_env), "the estimate counts whom a delivery would reach"
    assert DEFAULT_TOKEN not in estimated


def test_the_delivery_tab_tells_the_run_kind_and_shows_the_counts_and_report(api, airflow_env, line):
    dry = run_dag(airflow_env, "e2e_dry", run_conf={"dry_run": True, "test_recipients": []})
    assert str(dry.state) == "success", task_states(dry)
    page = get(api, f"/dags/line_campaign__e2e_dry/runs/{dry.run_id}/delivery").text
    assert "Dry run: nothing is sent" in page
    real = run_dag(
        airflow_env, "e2e_pages", run_conf={"dry_run": False, "test_recipients": [], "redeliver": True}
    )
    assert str(real.state) == "success", task_states(real)
    page = get(api, f"/dags/line_campaign__e2e_pages/runs/{real.run_id}/delivery").text
    sent = len(line.admin.deliveries())
    done = re.search(r'<b id="done">([\d,]+) / ([\d,]+)</b>', page)
    assert done.group(1) == done.group(2), "a finished run has done everything it had to do"
    assert f'<b id="sent">{sent:,}</b>' in page, "sent as LINE's record counts it"
    assert "Redelivery" in page
    assert '<iframe class="report" sandbox=""' in page, "the report cannot run anything in the UI's origin"
    assert "started" in page, "the run's history"
    assert "finished" in page, "the run's history"
    assert DEFAULT_TOKEN not in page
    missing = get(api, "/dags/line_campaign__e2e_pages/runs/no-such-run/delivery")
    assert missing.status_code == 404
