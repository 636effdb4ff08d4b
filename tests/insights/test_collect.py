"""Collecting LINE's statistics over real HTTP (the simulator) into a real delivery log's database."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from line_oa.errors import LineRateLimitError
from line_oa.insights.budget import unit_budget_problem
from line_oa.insights.collect import STORED, UNREADY, Backoff, collect, fetches_due
from line_oa.insights.figures import campaign_figures
from line_oa.insights.store import InsightStore
from line_oa.integration.hooks import LineOAHook
from tests.delivery.test_engine import recipients, run_chunk


@pytest.fixture
def hook(line_conn):
    hook = LineOAHook(line_oa_conn_id=line_conn)
    yield hook
    hook.close()


class Delivered:
    """A campaign delivered through the real engine, its log and the statistics table on the same database."""

    sent: list[int]

    def __init__(
        self, line_conn, ledger_factory, people: int, *, sent_at: dt.datetime | None = None, unit: str = ""
    ):
        self.campaign_id = f"ins_{uuid.uuid4().hex[:10]}"
        self.sent = []
        self.unit = unit or self.campaign_id
        self.line_conn, self.ledger_factory = line_conn, ledger_factory
        ledger = self.deliver(people, self.unit, sent_at=sent_at)
        self.run_id = ledger.run_id
        self.store = InsightStore(ledger.hook)
        self.store.record_unit(self.campaign_id, self.run_id, self.unit, now())  # as validate does

    def deliver(self, people: int, unit: str, *, sent_at: dt.datetime | None = None, run_id: str = ""):
        clock = (lambda: sent_at) if sent_at else None
        ledger = self.ledger_factory(
            campaign_id=self.campaign_id,
            **({"clock": clock} if clock else {}),
            **({"run_id": run_id} if run_id else {}),
        )
        result = run_chunk(
            self.line_conn,
            ledger,
            recipients(people, start=sum(self.sent)),
            mode="multicast",
            aggregation_unit=unit,
        )
        assert result.sent == people
        self.sent.append(people)
        return ledger

    def fetch(self, as_of: dt.datetime):
        fetches = fetches_due(self.store, as_of=as_of, unit_of=lambda campaign_id: self.unit)
        return next(fetch for fetch in fetches if fetch.campaign_id == self.campaign_id)

    def rows(self) -> list[dict]:
        return self.store.statistics(self.campaign_id)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_figures_are_stored_once_per_fetch_key_and_recollection_adds_no_rows(
    line_conn, ledger_factory, sim, hook
):
    campaign = Delivered(line_conn, ledger_factory, 1500)
    sim.admin.advance_clock(2 * 86400)
    fetch = campaign.fetch(now() + dt.timedelta(days=2))
    first = collect(hook, campaign.store, fetch)
    rows = campaign.store.statistics(campaign.campaign_id)
    assert first["status"] == STORED
    assert [row["kind"] for row in rows] == ["click", "message", "overview"]
    again = collect(hook, campaign.store, fetch)
    assert again["rows"] == first["rows"] == 3
    assert campaign.store.statistics(campaign.campaign_id) == [
        {**row, "fetched_at": later["fetched_at"]}
        for row, later in zip(rows, campaign.store.statistics(campaign.campaign_id), strict=True)
    ]
    overview = next(row for row in rows if row["kind"] == "overview")
    assert 300 < overview["unique_impression"] <= 1500
    figures = campaign.store.figures(campaign.campaign_id)
    assert figures.delivered == 1500
    assert [link.url for link in figures.links] == ["https://example.com/sale"]  # utm_source removed
    assert figures.open_rate.endswith("%")


def test_the_open_rate_divides_by_the_sends_the_figures_cover_not_every_send_of_the_campaign(
    line_conn, ledger_factory, sim, hook
):
    campaign = Delivered(line_conn, ledger_factory, 400, unit="spring_first")
    later = campaign.deliver(600, "spring_second", run_id=f"second-{uuid.uuid4().hex[:8]}")
    campaign.store.record_unit(campaign.campaign_id, later.run_id, "spring_second", now())
    sim.admin.advance_clock(86400)
    fetches = fetches_due(campaign.store, as_of=now() + dt.timedelta(days=1), unit_of=lambda _: "unused")
    second = next(f for f in fetches if f.campaign_id == campaign.campaign_id and f.unit == "spring_second")
    collect(hook, campaign.store, second)
    figures = campaign.store.figures(campaign.campaign_id)
    assert campaign.store.sent_count(campaign.campaign_id) == 1000
    assert (figures.unit, figures.delivered) == ("spring_second", 600)
    before = campaign.store.sent_under(campaign.campaign_id, "spring_second", "20000101", "20000131")
    assert before == 0, "sends outside the period are not in LINE's figures"
    impressions = figures.unique_impressions.value
    assert figures.open_rate == f"{100 * impressions / 600:.1f}%"


def test_two_campaigns_sharing_a_unit_keep_their_own_rows(line_conn, ledger_factory, sim, hook):
    first = Delivered(line_conn, ledger_factory, 300, unit="shared_unit")
    second = Delivered(line_conn, ledger_factory, 300, unit="shared_unit")
    sim.admin.advance_clock(86400)
    for campaign in (first, second):
        collect(hook, campaign.store, campaign.fetch(now() + dt.timedelta(days=1)))
    assert [row["kind"] for row in first.rows()] == ["click", "message", "overview"]
    assert [row["campaign_id"] for row in second.rows()] == [second.campaign_id] * 3
    both = next(row for row in second.rows() if row["kind"] == "overview")["unique_impression"]
    assert both == next(row for row in first.rows() if row["kind"] == "overview")["unique_impression"]
    assert both is not None, "LINE counts both campaigns' recipients under the shared unit"


def test_the_unit_a_run_recorded_is_asked_for_even_if_the_file_changed_since(
    line_conn, ledger_factory, sim, hook
):
    campaign = Delivered(line_conn, ledger_factory, 300, unit="unit_at_send_time")
    campaign.store.record_unit(campaign.campaign_id, campaign.run_id, "unit_at_send_time", now())
    sim.admin.advance_clock(86400)
    fetches = fetches_due(campaign.store, as_of=now() + dt.timedelta(days=1), unit_of=lambda _: "unit_now")
    fetch = next(fetch for fetch in fetches if fetch.campaign_id == campaign.campaign_id)
    assert fetch.unit == "unit_at_send_time"
    collect(hook, campaign.store, fetch)
    overview = next(row for row in campaign.rows() if row["kind"] == "overview")
    assert overview["unique_impression"] is not None


def test_a_later_day_adds_a_point_to_the_series(line_conn, ledger_factory, sim, hook):
    campaign = Delivered(line_conn, ledger_factory, 1500)
    for days in (1, 4):
        sim.admin.advance_clock(86400 if days == 1 else 3 * 86400)
        collect(hook, campaign.store, campaign.fetch(now() + dt.timedelta(days=days)))
    rows = campaign.store.statistics(campaign.campaign_id)
    figures = campaign_figures(rows, delivered=1500)
    assert [point.days_since_sending for point in figures.series] == [1, 4]
    assert figures.series[0].unique_impressions < figures.series[1].unique_impressions


def test_figures_are_unready_the_day_of_sending_and_nothing_is_stored(line_conn, ledger_factory, sim, hook):
    campaign = Delivered(line_conn, ledger_factory, 100)
    outcome = collect(hook, campaign.store, campaign.fetch(now()))
    assert outcome["status"] == UNREADY
    assert campaign.store.statistics(campaign.campaign_id) == []


def test_values_under_20_stay_null_and_read_fewer_than_20(line_conn, ledger_factory, sim, hook):
    campaign = Delivered(line_conn, ledger_factory, 19)  # at most 19 can open: always under 20
    sim.admin.advance_clock(14 * 86400)
    collect(hook, campaign.store, campaign.fetch(now() + dt.timedelta(days=13, hours=23)))
    rows = campaign.store.statistics(campaign.campaign_id)
    overview = next(row for row in rows if row["kind"] == "overview")
    assert overview["unique_impression"] is None
    assert overview["unique_click"] is None
    figures = campaign_figures(rows, delivered=19)
    assert figures.unique_impressions.shown == "fewer than 20"
    assert figures.open_rate == "under 20 users"
    assert figures.links[0].unique_clicks.shown == "fewer than 20"


def test_a_send_after_midnight_in_japan_is_asked_for_under_the_next_day(line_conn, ledger_factory, sim, hook):
    sent = dt.datetime(2026, 12, 3, 15, 30, tzinfo=dt.UTC)  # 00:30 on 4 December in Japan
    sim.admin.set_clock(sent.isoformat())
    campaign = Delivered(line_conn, ledger_factory, 1500, sent_at=sent)
    as_of = sent + dt.timedelta(days=1, hours=12)
    sim.admin.set_clock(as_of.isoformat())
    fetch = campaign.fetch(as_of)
    assert (fetch.date_from, fetch.date_to) == ("20261204", "20261205")
    collect(hook, campaign.store, fetch)
    overview = next(r for r in campaign.store.statistics(campaign.campaign_id) if r["kind"] == "overview")
    assert overview["unique_impression"] > 300
    utc_dated = hook.get_statistics_per_unit(campaign.unit, "20261203", "20261203")
    assert utc_dated["overview"]["uniqueImpression"] is None  # nothing was sent on 3 December in Japan


def test_a_429_is_waited_out_and_the_same_request_asked_again(line_conn, ledger_factory, sim, hook):
    campaign = Delivered(line_conn, ledger_factory, 200)
    sim.admin.advance_clock(86400)
    sim.admin.configure_insights(rate_limit_per_hour=3600, rate_limit_burst=1)  # one request a second
    fetch = campaign.fetch(now() + dt.timedelta(days=1))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        import time

        time.sleep(seconds)

    backoff = Backoff(attempts=6, initial_seconds=0.3, max_seconds=2)
    assert collect(hook, campaign.store, fetch, backoff=backoff, sleep=sleep)["status"] == STORED
    assert collect(hook, campaign.store, fetch, backoff=backoff, sleep=sleep)["status"] == STORED
    assert waits[:2] == [0.3, 0.6]
    assert sim.admin.stats()["requests"]["statistics_per_unit"]["429"] == len(waits)


def test_a_rate_limit_that_outlasts_the_backoff_fails_the_collection(line_conn, ledger_factory, sim, hook):
    campaign = Delivered(line_conn, ledger_factory, 50)
    sim.admin.configure_insights(rate_limit_per_hour=1, rate_limit_burst=1)
    fetch = campaign.fetch(now())
    collect(hook, campaign.store, fetch)
    with pytest.raises(LineRateLimitError):
        collect(
            hook,
            campaign.store,
            fetch,
            backoff=Backoff(attempts=3, initial_seconds=0.01),
            sleep=lambda s: None,
        )
    assert sim.admin.stats()["requests"]["statistics_per_unit"]["429"] == 3


def push_under_units(hook, count: int) -> None:
    """Push one message under each of ``count`` units (``unit_0000``...), 16 at a time: LINE's record then
    holds that many units this month. (One at a time, 1,000 pushes took 3 to 9 s of a test.)"""

    # pushing faster than LINE's 2,000/s is answered 429: wait and ask again, as a sender would
    # (a retrying object a push: tenacity keeps its statistics on the object)
    def again() -> AsyncRetrying:
        return AsyncRetrying(retry=retry_if_exception_type(LineRateLimitError), wait=wait_fixed(0.05),
                             stop=stop_after_attempt(100), reraise=True)  # fmt: skip

    async def push_all() -> None:
        async with hook.async_client(max_in_flight=16) as client:
            slots = asyncio.Semaphore(16)

            async def push(number: int) -> None:
                async with slots:
                    await again()(
                        client.push, "U" + "1" * 32, [{"type": "text", "text": "hi"}], str(uuid.uuid4()),
                        aggregation_unit=f"unit_{number:04d}",
                    )  # fmt: skip

            await asyncio.gather(*(push(number) for number in range(count)))

    asyncio.run(push_all())


def test_a_new_unit_beyond_lines_1000_a_month_is_reported_before_launch(sim, hook):
    push_under_units(hook, 1000)
    assert unit_budget_problem(hook, "unit_0999") == (1000, None)  # already one of this month's units
    used, problem = unit_budget_problem(hook, "brand_new_unit")
    assert used == 1000
    assert problem.startswith("aggregation_unit: 'brand_new_unit' would be a new unit this month")
    assert "used 1000 of LINE's 1000 units a month" in problem
    assert sim.admin.stats()["requests"]["aggregation_list"] == {"200": 20}  # 10 pages, twice


def test_999_units_leave_room_for_one_more(sim, hook):
    push_under_units(hook, 999)
    assert unit_budget_problem(hook, "brand_new_unit") == (999, None)


def test_under_the_budget_the_list_is_not_read(sim, hook):
    assert unit_budget_problem(hook, "any_unit") == (0, None)
    assert "aggregation_list" not in sim.admin.stats()["requests"]
