"""Quiet hours: when the window holds, when it ends (across midnight and daylight saving), and its rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
import yaml

from line_oa.campaign.quiet_hours import held_sentence, quiet_hours_end
from line_oa.campaign.validation import validate_campaign_file

from .campaign_docs import SQL_ROOT, valid_document

if TYPE_CHECKING:
    import pathlib

JST = timezone(timedelta(hours=9))


@pytest.mark.parametrize(
    ("start", "end", "now", "expected"),
    [
        ("21:00", "09:00", datetime(2026, 12, 3, 22, 30, tzinfo=JST), "2026-12-04T09:00:00+09:00"),
        ("21:00", "09:00", datetime(2026, 12, 4, 3, 0, tzinfo=JST), "2026-12-04T09:00:00+09:00"),
        ("21:00", "09:00", datetime(2026, 12, 3, 21, 0, tzinfo=JST), "2026-12-04T09:00:00+09:00"),
        ("21:00", "09:00", datetime(2026, 12, 3, 20, 59, 59, tzinfo=JST), None),
        ("21:00", "09:00", datetime(2026, 12, 4, 8, 59, 59, tzinfo=JST), "2026-12-04T09:00:00+09:00"),
        ("21:00", "09:00", datetime(2026, 12, 4, 9, 0, tzinfo=JST), None),
        ("21:00", "09:00", datetime(2026, 12, 4, 12, 0, tzinfo=JST), None),
        ("21:00", "09:00", datetime(2026, 12, 31, 23, 0, tzinfo=JST), "2027-01-01T09:00:00+09:00"),
        ("12:00", "13:00", datetime(2026, 12, 4, 12, 30, tzinfo=JST), "2026-12-04T13:00:00+09:00"),
        ("12:00", "13:00", datetime(2026, 12, 4, 13, 0, tzinfo=JST), None),
        ("00:00", "06:00", datetime(2026, 12, 4, 0, 0, tzinfo=JST), "2026-12-04T06:00:00+09:00"),
        ("21:00", "09:00", datetime(2026, 12, 3, 13, 30, tzinfo=UTC), "2026-12-04T09:00:00+09:00"),
    ],
    ids=[
        "before midnight inside a window crossing midnight, it ends tomorrow morning",
        "after midnight inside a window crossing midnight, it ends this morning",
        "the start minute itself is quiet",
        "one second before the start is not quiet",
        "one second before the end is still quiet",
        "the end minute itself is not quiet",
        "midday is outside a night window",
        "a window on new year's eve ends on the first of january",
        "a window within one day ends the same day",
        "a window within one day is over at its end",
        "a window starting at midnight holds at midnight",
        "an instant given in UTC is read on the window's clock",
    ],
)
def test_quiet_hours_end_in_asia_tokyo(start, end, now, expected):
    result = quiet_hours_end(start, end, "Asia/Tokyo", now)
    assert (result.isoformat() if result else None) == expected


@pytest.mark.parametrize(
    ("start", "end", "now", "expected"),
    [
        ("22:00", "08:00", datetime(2026, 3, 28, 22, 0, tzinfo=UTC), "2026-03-29T08:00:00+02:00"),
        ("22:00", "08:00", datetime(2026, 10, 24, 21, 0, tzinfo=UTC), "2026-10-25T08:00:00+01:00"),
        ("01:00", "02:30", datetime(2026, 3, 29, 0, 30, tzinfo=UTC), "2026-03-29T03:00:00+02:00"),
        ("01:00", "02:30", datetime(2026, 10, 25, 0, 15, tzinfo=UTC), "2026-10-25T02:30:00+02:00"),
        ("01:00", "02:30", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), None),
        ("01:00", "02:30", datetime(2026, 10, 25, 1, 15, tzinfo=UTC), None),
    ],
    ids=[
        "a night over the spring change ends at 08:00 summer time",
        "a night over the autumn change ends at 08:00 winter time",
        "an end inside the spring gap ends when the clock jumps to 03:00",
        "an end the clock passes twice in autumn ends at its first occurrence",
        "at the first occurrence of the end the window is over",
        "when the clock falls back into the window after its end, the window stays over",
    ],
)
def test_quiet_hours_end_across_daylight_saving_in_europe_berlin(start, end, now, expected):
    result = quiet_hours_end(start, end, "Europe/Berlin", now)
    assert (result.isoformat() if result else None) == expected
    if result:
        assert result > now


def test_the_end_of_a_night_window_is_hours_not_a_day_away_in_the_spring_change():
    result = quiet_hours_end("22:00", "08:00", "Europe/Berlin", datetime(2026, 3, 28, 22, 0, tzinfo=UTC))
    assert result - datetime(2026, 3, 28, 22, 0, tzinfo=UTC) == timedelta(hours=8)


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        quiet_hours_end("21:00", "09:00", "Asia/Tokyo", datetime(2026, 12, 3, 22, 0))  # noqa: DTZ001


def test_the_held_launch_sentence_names_the_window_and_the_start():
    resumes = quiet_hours_end("21:00", "09:00", "Asia/Tokyo", datetime(2026, 12, 3, 22, 0, tzinfo=JST))
    assert held_sentence("21:00", "09:00", "Asia/Tokyo", resumes) == (
        "inside quiet hours 21:00–09:00 Asia/Tokyo: delivery starts at 2026-12-04T09:00+09:00"
    )


def _problems(tmp_path: pathlib.Path, quiet_hours: object, schedule: dict | None = None) -> list[str]:
    document = valid_document()
    if schedule:
        document["delivery_schedule"] = schedule
    document["delivery_schedule"]["quiet_hours"] = quiet_hours
    path = tmp_path / "test_campaign.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    report = validate_campaign_file(path, now=datetime(2026, 11, 1, tzinfo=UTC), sql_root=SQL_ROOT)
    assert all(p.file == str(path) and p.line for p in report.problems), "each problem names file and line"
    return [f"{p.path}: {p.message}" for p in report.problems]


@pytest.mark.parametrize(
    "schedule",
    [
        None,
        {"type": "scheduled", "send_at": "2027-01-01T10:00:00+09:00"},
        {"type": "recurring", "cron": "0 9 * * 1"},
    ],
    ids=["an immediate campaign", "a scheduled campaign", "a recurring campaign"],
)
def test_quiet_hours_crossing_midnight_are_accepted_on_every_schedule(tmp_path, schedule):
    assert _problems(tmp_path, {"start": "21:00", "end": "09:00", "timezone": "Asia/Tokyo"}, schedule) == []


@pytest.mark.parametrize(
    ("quiet_hours", "expected"),
    [
        (
            {"start": "9:00", "end": "21:00", "timezone": "Asia/Tokyo"},
            [
                "delivery_schedule.quiet_hours.start: '9:00' is not a time of day written HH:MM (00:00 to 23:59)"
            ],
        ),
        (
            {"start": "21:00", "end": "24:00", "timezone": "Asia/Tokyo"},
            [
                "delivery_schedule.quiet_hours.end: '24:00' is not a time of day written HH:MM (00:00 to 23:59)"
            ],
        ),
        (
            {"start": 1260, "end": "09:00", "timezone": "Asia/Tokyo"},
            ["delivery_schedule.quiet_hours.start: put the time in quotes: '21:00'"],
        ),
        (
            {"start": "21:00", "end": "09:00", "timezone": "Tokyo"},
            [
                "delivery_schedule.quiet_hours.timezone: 'Tokyo' is not an IANA timezone name "
                "such as 'Asia/Tokyo' or 'UTC'"
            ],
        ),
        (
            {"start": "21:00", "end": "21:00", "timezone": "UTC"},
            ["delivery_schedule.quiet_hours.end: 21:00 is the same as start: the window would be empty"],
        ),
        (
            {"start": "21:00", "end": "09:00", "timezone": "UTC", "days": "weekdays"},
            ["delivery_schedule.quiet_hours.days: unknown key 'days'; allowed here: end, start, timezone"],
        ),
    ],
    ids=[
        "a time without its leading zero is refused",
        "24:00 is refused",
        "an unquoted time, read by YAML as a number, asks for quotes",
        "a timezone that is not an IANA name is refused",
        "a window that starts where it ends is refused",
        "an unknown key is refused (closed schema)",
    ],
)
def test_quiet_hours_problems_name_the_field_and_the_rule(tmp_path, quiet_hours, expected):
    assert _problems(tmp_path, quiet_hours) == expected


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        (
            {"quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Europe/Berlin"}},
            ("22:00", "08:00"),
        ),
        ({"quiet_hours": '{"start": "22:00", "end": "08:00", "timezone": "UTC"}'}, ("22:00", "08:00")),
        ({"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}}, "the same as start"),
        (
            {"quiet_hours": {"start": "22:00", "timezone": "Tokyo"}},
            "end: Field required; timezone: 'Tokyo' is not an IANA timezone",
        ),
        ({"quiet_hours": "21:00-09:00"}, "is not a window such as"),
    ],
    ids=[
        "a connection without the extra sets no default window",
        "a window in the extra is the sender account's default",
        "the extra may be JSON text, as a form field holds it",
        "an empty window in the extra is refused",
        "a missing end and a bad timezone in the extra are named",
        "text that is not a window is refused with an example",
    ],
)
def test_the_sender_accounts_default_quiet_hours_come_from_the_connection_extra(monkeypatch, extra, expected):
    import json

    from line_oa.errors import LineOAError
    from line_oa.integration.hooks import LineOAHook

    connection = {"conn_type": "line_oa", "host": "http://127.0.0.1:9", "password": "t", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_QUIET_TEST", json.dumps(connection))
    hook = LineOAHook(line_oa_conn_id="line_oa_quiet_test")
    if expected is None or isinstance(expected, tuple):
        window = hook.quiet_hours
        assert (window and (window.start, window.end)) == expected
    else:
        with pytest.raises(LineOAError, match="connection extra quiet_hours") as refused:
            _ = hook.quiet_hours
        assert expected in str(refused.value)


def test_a_malformed_default_window_on_the_sender_account_refuses_the_launch(monkeypatch):
    import json

    from line_oa.campaign.loading import load_campaign
    from line_oa.integration.hooks import LineOAHook
    from line_oa.integration.launch import check_sender_account
    from line_oa.integration.pipeline import LaunchRefused

    from .campaign_docs import FIXTURES

    campaign = load_campaign(FIXTURES / "valid" / "full_featured.yaml")
    extra = {
        "workspaces": campaign.workspace,
        "quiet_hours": {"start": "21:00", "end": "9", "timezone": "UTC"},
    }
    connection = {"conn_type": "line_oa", "host": "http://127.0.0.1:9", "password": "t", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_LINE_OA_QUIET_TEST", json.dumps(connection))
    with pytest.raises(LaunchRefused) as refused:
        check_sender_account(campaign, LineOAHook(line_oa_conn_id="line_oa_quiet_test"))
    assert str(refused.value) == (
        f"content.line_config: sender account {campaign.content.line_config!r}: connection extra quiet_hours "
        'is not a window such as {"start": "21:00", "end": "09:00", "timezone": "Asia/Tokyo"}: '
        "end: '9' is not a time of day written HH:MM (00:00 to 23:59)"
    )
