"""The campaign pages in a real browser: headless Chromium (Debian's) against `make airflow`'s stack.

The stack is ``line_oa.cli.stack``: a real api-server, scheduler, dag-processor and triggerer (metadata
on PostgreSQL), the simulator and a sample CDP, with the shipped example campaigns. The demo campaign
is triggered through the REST API as a user would and delivered by the stack's scheduler; the browser
logs in with the api-server's own token and opens the three pages through the Airflow UI (each is an
iframe there).
Screenshots go to the test's temporary folder, or to ``$LINE_OA_SCREENSHOTS`` when set: ``make
screenshots`` sets it to ``docs/images`` (the README links them there).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from line_oa.cli.stack import ADMIN, Stack, drop_database, free_port

pytestmark = [pytest.mark.live, pytest.mark.slow]

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def shipped_examples_planned_ahead(folder: pathlib.Path) -> pathlib.Path:
    """Copy the shipped campaigns with spring_sale's send_at 30 days ahead, whatever today's date: its
    fixed date would make it Suspended (and the stack would deliver it) once that date passed."""
    import datetime as dt

    import yaml

    shutil.copytree(ROOT / "include" / "campaigns", folder)
    path = folder / "spring_sale.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    ahead = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
    document["delivery_schedule"]["send_at"] = ahead.isoformat()
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from line_oa.cli.sample_cdp import generate_sample_cdp
    from line_simulator import DEFAULT_TOKEN
    from line_simulator.testing import SimulatorProcess

    assert shutil.which("chromium") or pathlib.Path(CHROMIUM).exists(), (
        "Debian's chromium is missing: apt-get install -y chromium (.ci/run installs it)"
    )
    home = tmp_path_factory.mktemp("stack")
    campaigns = shipped_examples_planned_ahead(home / "campaigns")
    cdp = generate_sample_cdp(home / "cdp.db", profiles=3000, seed=5)
    recipients = {"blocked": cdp.blocked_user_ids, "unknown": cdp.unknown_user_ids}
    with SimulatorProcess({"recipients": recipients}) as simulator:
        running = Stack(
            home=home,
            port=free_port(),
            database=f"line_oa_ui_{secrets.token_hex(4)}",
            campaigns_dir=campaigns,
        )
        running.environment(simulator.base_url, DEFAULT_TOKEN)
        assert running.database, "the UI test runs Airflow on PostgreSQL (127.0.0.1:5432)"
        running.start()
        try:
            run_id = deliver_demo(running)
            yield running, simulator, run_id
        finally:
            running.stop()
            drop_database(running.database)


def api(stack: Stack, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """Call the api-server's REST API as the admin user; return (status, JSON body)."""
    request = urllib.request.Request(
        f"{stack.url}/api/v2{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token_of(stack)}"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as err:
        return err.code, {}


def deliver_demo(stack: Stack, timeout: float = 300.0) -> str:
    """Trigger the demo campaign as a user would and wait until the scheduler finishes it; return the run id."""
    dag = "/dags/line_campaign__welcome_back"
    deadline = time.monotonic() + timeout
    while api(stack, "GET", dag)[0] != 200:  # the dag-processor has not parsed it yet
        assert time.monotonic() < deadline, "the dag-processor never parsed the campaigns:\n" + tails(stack)
        time.sleep(2)
    status, run = api(stack, "POST", f"{dag}/dagRuns", {"logical_date": None, "conf": {}})
    assert status == 200, (status, run)
    while True:
        state = api(stack, "GET", f"{dag}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}")[1][
            "state"
        ]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"the demo run is still {state}:\n" + tails(stack)
        time.sleep(3)
    assert state == "success", f"the demo run {state}:\n" + tails(stack)
    return run["dag_run_id"]


def tails(stack: Stack, lines: int = 25) -> str:
    """The last lines of each component's output, for a failure message (the folder is temporary)."""
    parts = []
    for log in sorted((stack.home / "components").glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(parts)


def token_of(stack: Stack) -> str:
    request = urllib.request.Request(
        f"{stack.url}/auth/token",
        data=json.dumps({"username": ADMIN, "password": stack.password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["access_token"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> pathlib.Path:
    folder = os.environ.get("LINE_OA_SCREENSHOTS")
    return pathlib.Path(folder).resolve() if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser_page(stack):
    from playwright.sync_api import sync_playwright

    running = stack[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_cookies([{"name": "_token", "value": token_of(running), "url": running.url}])
        page = context.new_page()
        yield page
        browser.close()


def plugin_frame(page, url: str, ready: str):
    """Open ``url`` in the Airflow UI and return the plugin's iframe once ``ready`` shows in it."""
    page.goto(url, wait_until="domcontentloaded")
    frame = page.frame_locator("iframe").first
    frame.locator(ready).first.wait_for(timeout=60_000)
    return frame


def test_the_campaigns_page_lists_the_examples_with_their_states(stack, browser_page, images):
    running = stack[0]
    frame = plugin_frame(browser_page, f"{running.url}/plugin/line-campaigns", "#campaigns")
    rows = {
        row.get_attribute("data-campaign"): row.locator(".state").first.inner_text()
        for row in frame.locator("tr[data-campaign]").all()
    }
    assert rows == {"spring_sale": "Planned", "summer_preview": "Draft", "welcome_back": "Finished"}
    browser_page.screenshot(path=str(images / "ui-campaigns.png"))


def test_the_campaign_tab_draws_the_spring_sale_imagemap_with_its_two_areas(stack, browser_page, images):
    running = stack[0]
    frame = plugin_frame(
        browser_page, f"{running.url}/dags/line_campaign__spring_sale/plugin/line-campaign", ".lo-imagemap"
    )
    areas = frame.locator(".lo-imagemap [data-action]")
    assert areas.count() == 2
    assert [areas.nth(n).get_attribute("data-action") for n in range(2)] == ["uri", "message"]
    assert "utm_source=line" in frame.locator(".lo-imagemap a").first.get_attribute("href")
    browser_page.screenshot(path=str(images / "ui-campaign-tab.png"))


def test_the_delivery_tab_of_the_demo_run_shows_its_counts(stack, browser_page, images):
    running, simulator, run_id = stack
    frame = plugin_frame(
        browser_page,
        f"{running.url}/dags/line_campaign__welcome_back/runs/{run_id}/plugin/line-delivery",
        "#progress",
    )
    assert frame.locator("#kind").inner_text() == "Real delivery"
    sent = int(frame.locator("#sent").inner_text().replace(",", ""))
    assert sent == simulator.admin.stats()["deliveries"] > 0
    done = re.fullmatch(r"([\d,]+) / ([\d,]+)", frame.locator("#done").inner_text())
    assert done.group(1) == done.group(2), "the finished run did everything it had to"
    browser_page.screenshot(path=str(images / "ui-delivery-tab.png"))
