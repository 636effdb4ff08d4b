"""LineOAHook's endpoints, the line_oa connection type and the quota pre-flight, against the simulator."""

from __future__ import annotations

import json
import os

import pytest

from line_oa.errors import LineApiError, LineAuthError
from line_oa.integration.hooks import LineOAHook
from line_simulator import DEFAULT_TOKEN

TEXT = [{"type": "text", "text": "hello"}]


def test_the_package_registers_the_line_oa_connection_type_with_its_form_fields():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "line-oa-campaigns" in manager.providers
    info = manager.providers["line-oa-campaigns"].data["connection-types"][0]
    assert info["connection-type"] == "line_oa"
    assert info["hook-class-name"] == "line_oa.integration.hooks.LineOAHook"
    assert info["ui-field-behaviour"]["relabeling"]["password"] == "Channel access token"
    assert info["ui-field-behaviour"]["placeholders"]["host"] == "https://api.line.me"
    assert {"push_rate_limit", "multicast_rate_limit", "workspaces"} <= set(info["conn-fields"])


def test_airflows_connection_test_finds_the_hook_by_connection_type_and_reaches_line(line_conn, sim):
    from airflow.models.connection import Connection

    ok, message = Connection(conn_id=line_conn, conn_type="line_oa").test_connection()
    assert ok, message
    assert message.startswith("Connected to LINE Official Account")


def test_an_empty_host_means_the_real_line_api(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_LINE_OA_EMPTY", json.dumps({"conn_type": "line_oa", "password": "x" * 20})
    )
    assert LineOAHook(line_oa_conn_id="line_oa_empty").settings.base_url == "https://api.line.me"


def test_connection_extras_are_settings_never_http_headers(line_conn, sim, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_LINE_OA_TEST"])
    conn["extra"].update({"push_rate_limit": 500, "X-Evil": "header"})
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_TEST", json.dumps(conn))
    hook = LineOAHook(line_oa_conn_id=line_conn)
    session = hook.get_conn()
    assert "X-Evil" not in session.headers
    assert "push_rate_limit" not in session.headers
    assert hook.settings.push_rate_limit == 500
    assert hook.settings.workspaces == ("retail_jp",)


def test_one_session_is_reused_for_the_task(line_conn, sim):
    hook = LineOAHook(line_oa_conn_id=line_conn)
    assert hook.get_conn() is hook.get_conn()


def test_the_connection_is_looked_up_once_however_many_calls_the_hook_makes(line_conn, sim, monkeypatch):
    lookups = []
    real_get_connection = LineOAHook.get_connection

    def counting(conn_id):
        lookups.append(conn_id)
        return real_get_connection(conn_id)

    monkeypatch.setattr(LineOAHook, "get_connection", staticmethod(counting))
    hook = LineOAHook(line_oa_conn_id=line_conn)
    hook.validate_push(TEXT)
    hook.get_quota()
    hook.get_bot_info()
    hook.async_client()
    assert lookups == [line_conn]


def test_a_login_on_the_connection_never_turns_into_basic_auth(line_conn, sim, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_LINE_OA_TEST"])
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_TEST", json.dumps({**conn, "login": "someone"}))
    hook = LineOAHook(line_oa_conn_id=line_conn)
    assert hook.get_conn().headers["Authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert hook.get_bot_info()


def test_close_ends_the_session_and_the_next_call_opens_another(line_conn, sim):
    hook = LineOAHook(line_oa_conn_id=line_conn)
    first = hook.get_conn()
    hook.close()
    assert hook.get_quota()
    assert hook.get_conn() is not first
    hook.close()
    hook.close()  # closing twice is harmless


def test_validate_quota_and_bot_info_endpoints(line_conn, sim):
    sim.admin.configure(
        channels=[{"name": "default", "token": DEFAULT_TOKEN, "quota": {"type": "limited", "value": 50}}]
    )
    hook = LineOAHook(line_oa_conn_id=line_conn)
    assert hook.validate_push(TEXT).status == 200
    assert hook.validate_multicast(TEXT).status == 200
    assert hook.get_quota() == {"type": "limited", "value": 50}
    hook.push("U" + "1" * 32, TEXT)
    assert hook.get_quota_consumption() == 1
    ok, message = hook.test_connection()
    assert ok
    assert "Connected" in message


def test_an_invalid_bundle_raises_with_lines_message_details_and_request_id(line_conn, sim):
    hook = LineOAHook(line_oa_conn_id=line_conn)
    with pytest.raises(LineApiError) as caught:
        hook.validate_push([{"type": "text", "text": "x" * 5001}])
    err = caught.value
    assert err.status == 400
    assert err.line_message.startswith("The request body has")
    assert any(d.get("property") == "messages[0].text" for d in err.details)
    assert err.request_id


def test_a_wrong_token_is_an_auth_error_and_a_failed_connection_test(line_conn, sim, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_LINE_OA_TEST"])
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_TEST", json.dumps({**conn, "password": "not-the-token"}))
    hook = LineOAHook(line_oa_conn_id=line_conn)
    with pytest.raises(LineAuthError):
        hook.get_bot_info()
    ok, message = hook.test_connection()
    assert not ok
    assert "not-the-token" not in message


@pytest.mark.parametrize(
    ("quota", "reachable", "fits", "remaining"),
    [
        ({"type": "none"}, 10_000, True, None),
        ({"type": "limited", "value": 100}, 100, True, 100),
        ({"type": "limited", "value": 100}, 101, False, 100),
    ],
    ids=[
        "no monthly limit fits anything",
        "exactly the remaining quota fits",
        "one recipient over does not fit",
    ],
)
def test_quota_preflight(line_conn, sim, quota, reachable, fits, remaining):
    from line_oa.integration.launch import preflight

    sim.admin.configure(channels=[{"name": "default", "token": DEFAULT_TOKEN, "quota": quota}])
    facts = preflight(LineOAHook(line_oa_conn_id=line_conn), TEXT, reachable=reachable, mode="push")
    assert (facts["fits"], facts["remaining"], facts["needed"]) == (fits, remaining, reachable)


def test_preflight_refuses_a_bundle_line_rejects(line_conn, sim):
    from line_oa.integration.launch import preflight
    from line_oa.integration.pipeline import LaunchRefused

    with pytest.raises(LaunchRefused, match=r"messages\[0\]\.text"):
        preflight(
            LineOAHook(line_oa_conn_id=line_conn), [{"type": "text", "text": ""}], reachable=1, mode="push"
        )


QUICK_RETRY = {"max_attempts": 3, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.02}


@pytest.mark.parametrize("endpoint", ["validate_push", "quota", "quota_consumption"])
def test_preflight_retries_a_short_outage_of_each_call_and_goes_on(line_conn, sim, endpoint):
    from line_oa.campaign.model import Retry
    from line_oa.integration.launch import preflight

    sim.admin.configure(faults={"outage_seconds": 0.3, "fault_endpoints": [endpoint]})
    policy = Retry(max_attempts=20, initial_backoff_seconds=0.05, max_backoff_seconds=0.1)

    facts = preflight(LineOAHook(line_oa_conn_id=line_conn), TEXT, reachable=1, mode="push", retry=policy)

    assert facts["fits"]
    assert sim.admin.stats()["faults"]["outage"] >= 1


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("validate_push", {"error_500_rate": 1}),
        ("validate_multicast", {"error_503_rate": 1}),
        ("quota", {"rate_limit_429_rate": 1}),
        ("quota_consumption", {"error_500_rate": 1}),
    ],
)
def test_preflight_gives_up_with_line_is_unavailable_not_a_rejection(line_conn, sim, endpoint, fault):
    from line_oa.campaign.model import Retry
    from line_oa.integration.launch import preflight
    from line_oa.integration.pipeline import LaunchRefused

    sim.admin.configure(faults={**fault, "fault_endpoints": [endpoint]})
    mode = "multicast" if endpoint == "validate_multicast" else "push"

    with pytest.raises(LaunchRefused) as refusal:
        preflight(
            LineOAHook(line_oa_conn_id=line_conn), TEXT, reachable=1, mode=mode, retry=Retry(**QUICK_RETRY)
        )

    assert str(refusal.value).startswith("LINE is unavailable, try again:")
    assert "3 time(s)" in str(refusal.value)
    assert "rejected the messages" not in str(refusal.value)
    assert sum(sim.admin.stats()["requests"][endpoint].values()) == 3


def test_fault_endpoints_all_means_every_endpoint(sim):
    config = sim.admin.configure(faults={"fault_endpoints": "all"})

    assert set(config["faults"]["fault_endpoints"]) >= {
        "push",
        "multicast",
        "validate_push",
        "validate_multicast",
        "quota",
        "quota_consumption",
        "bot_info",
    }


def test_international_links_are_sent_in_the_form_line_accepts(line_conn, sim):
    import yaml

    from line_oa.campaign.validation import campaign_from_text
    from tests.unit.campaign_docs import valid_document

    doc = valid_document()
    doc["content"]["messages"][0]["text"] = "新作 https://例え.jp/商品/123 をチェック"
    doc["content"]["messages"][1]["actions"][0]["link_uri"] = "https://例え.jp/商品/123"
    campaign, problems = campaign_from_text(yaml.safe_dump(doc, allow_unicode=True), "test_campaign.yaml")
    assert problems == []
    hook = LineOAHook(line_oa_conn_id=line_conn)
    wire = campaign.wire_messages()

    assert hook.validate_push(wire).status == 200
    wire[1]["actions"][0]["linkUri"] = "https://例え.jp/商品/123"  # as written: LINE refuses it
    with pytest.raises(LineApiError) as refusal:
        hook.validate_push(wire)
    assert refusal.value.details == [
        {"message": "Must be a valid URI", "property": "messages[1].actions[0].linkUri"}
    ]


def test_the_unit_budget_check_rides_out_a_short_outage_and_gives_up_as_line_is_unavailable(line_conn, sim):
    from line_oa.campaign.model import Retry
    from line_oa.integration.launch import check_unit_budget
    from line_oa.integration.pipeline import LaunchRefused

    hook = LineOAHook(line_oa_conn_id=line_conn)
    sim.admin.configure(faults={"outage_seconds": 0.3, "fault_endpoints": ["aggregation_info"]})
    policy = Retry(max_attempts=20, initial_backoff_seconds=0.05, max_backoff_seconds=0.1)
    assert check_unit_budget(hook, "spring_sale", retry=policy) == "spring_sale"
    assert sim.admin.stats()["faults"]["outage"] >= 1

    sim.admin.configure(faults={"error_503_rate": 1, "fault_endpoints": ["aggregation_info"]})
    with pytest.raises(LaunchRefused, match=r"^LINE is unavailable, try again: .* 3 time\(s\)"):
        check_unit_budget(hook, "spring_sale", retry=Retry(**QUICK_RETRY))
