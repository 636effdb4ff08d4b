"""Which statistics to ask LINE for: dates in UTC+9, at most 30 days, the 14 days LINE updates them."""

from __future__ import annotations

import datetime as dt

import pytest

from line_oa.insights.periods import collection_since, days_between, fetch_for, line_date

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("sent", "as_of", "period"),
    [
        ("2026-12-03T14:59:59+00:00", "2026-12-03T14:59:59+00:00", ("20261203", "20261203")),
        ("2026-12-03T15:00:00+00:00", "2026-12-03T15:00:00+00:00", ("20261204", "20261204")),
        ("2026-12-03T14:30:00+00:00", "2026-12-03T15:30:00+00:00", ("20261203", "20261204")),
        ("2026-12-03T23:30:00+09:00", "2026-12-04T00:30:00+09:00", ("20261203", "20261204")),
    ],
    ids=[
        "23:59:59 in Japan is still the UTC day",
        "midnight in Japan is 15:00 UTC: the next LINE day",
        "a send before and a collection after midnight in Japan span two LINE days",
        "times given in UTC+9 give the same days",
    ],
)
def test_periods_are_dated_in_japan_time(sent, as_of, period):
    fetch = fetch_for("c", "u", first_sent=at(sent), as_of=at(as_of))
    assert (fetch.date_from, fetch.date_to) == period


@pytest.mark.parametrize(
    ("days_before", "date_from"),
    [(0, "20261203"), (29, "20261104"), (30, "20261104"), (45, "20261104")],
    ids=["the same day", "29 days before: a 30-day period", "30 days before: cut to 30 days",
         "45 days before: cut to 30 days"],
)  # fmt: skip
def test_a_period_never_spans_more_than_30_days(days_before, date_from):
    as_of = at("2026-12-03T12:00:00+09:00")
    fetch = fetch_for("c", "u", first_sent=as_of - dt.timedelta(days=days_before), as_of=as_of)
    assert fetch.date_from == date_from
    first = dt.datetime.strptime(fetch.date_from, "%Y%m%d")
    last = dt.datetime.strptime(fetch.date_to, "%Y%m%d")
    assert (last - first).days <= 29


def test_collection_looks_back_14_days_and_counts_days_since_sending():
    as_of = at("2026-12-17T00:00:00+00:00")
    assert collection_since(as_of) == at("2026-12-03T00:00:00+00:00")
    assert days_between("20261203", "2026-12-05") == 2
    assert line_date(dt.date(2026, 1, 2)) == "20260102"


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="aware"):
        line_date(dt.datetime(2026, 12, 3, 12, 0))  # noqa: DTZ001
