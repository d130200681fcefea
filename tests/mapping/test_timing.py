"""ingest.mapping.timing: instants in Vapi's units, NZ wall-clock times across DST, durations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import load_call, load_event, parse_body

from ingest.mapping.timing import (
    conversation_span,
    duration_seconds,
    local_month,
    local_wallclock,
    parse_instant,
    reported_duration_seconds,
    seconds_to_minutes,
)

NZ = "Pacific/Auckland"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def report(call: str) -> dict[str, Any]:
    """The end-of-call report's ``message`` of a recorded call."""
    messages = [parse_body(raw)["message"] for raw in load_call(call)]
    return next(message for message in messages if message["type"] == "end-of-call-report")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1750183770412, "2025-06-17T18:09:30.412"),
        (1750183770412.0, "2025-06-17T18:09:30.412"),
        ("1750183770412", "2025-06-17T18:09:30.412"),
        (" 1750183770412 ", "2025-06-17T18:09:30.412"),
        (1750183770, "2025-06-17T18:09:30"),
        (1750183770.412, "2025-06-17T18:09:30.412"),
        ("1750183770.412", "2025-06-17T18:09:30.412"),
        ("2025-06-17T18:09:30.485Z", "2025-06-17T18:09:30.485"),
        ("2025-06-17T18:09:30.485+00:00", "2025-06-17T18:09:30.485"),
        ("2025-06-18T06:09:30.485+12:00", "2025-06-17T18:09:30.485"),
        ("2025-06-17T14:09:30-04:00", "2025-06-17T18:09:30"),
        ("2025-06-17T18:09:30.485", "2025-06-17T18:09:30.485"),
        ("2025-06-17 18:09:30Z", "2025-06-17T18:09:30"),
        (99_999_999_999, "5138-11-16T09:46:39"),
        (100_000_000_000, "1973-03-03T09:46:40"),
    ],
)
def test_parse_instant_reads_epoch_ms_seconds_and_iso(value: object, expected: str) -> None:
    """Epoch ms, epoch seconds below 1e11, digit strings and ISO-8601 all give the same aware UTC instant."""
    parsed = parse_instant(value)
    assert parsed == utc(expected)
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "  ",
        "soon",
        "2025-06-17",
        "2025-13-01T00:00:00Z",
        "17/06/2025 18:09",
        "-1750183770412",
        "1e12",
        0,
        -5,
        float("nan"),
        float("inf"),
        10**20,
        [1750183770412],
        {"timestamp": 1750183770412},
        b"1750183770412",
    ],
)
def test_parse_instant_refuses_what_is_not_an_instant(value: object) -> None:
    """Booleans, garbage, bare dates, non-positive, non-finite and out-of-range values give None."""
    assert parse_instant(value) is None


def test_parse_instant_passes_datetimes_through_as_utc() -> None:
    """A datetime is already an instant: aware ones are converted to UTC, naive ones read as UTC."""
    aware = datetime(2026, 4, 5, 2, 30, tzinfo=timezone(timedelta(hours=13)))
    assert parse_instant(aware) == utc("2026-04-04T13:30:00")
    assert parse_instant(datetime(2026, 4, 4, 13, 30)) == utc("2026-04-04T13:30:00")


@given(st.integers(min_value=100_000_000_000, max_value=253_402_300_799_999))
def test_parse_instant_round_trips_epoch_milliseconds(millis: int) -> None:
    """Every epoch-ms number from 1973 to 9999 comes back as the same millisecond, as int, float or text."""
    parsed = parse_instant(millis)
    assert parsed is not None
    assert (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) == millis
    assert parse_instant(str(millis)) == parsed
    assert parse_instant(float(millis)) == parsed


@given(st.datetimes(min_value=datetime(1973, 3, 4), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_parse_instant_round_trips_iso_text_with_milliseconds(instant: datetime) -> None:
    """An instant written the way Vapi writes ``startedAt`` (ms and Z) parses back to itself."""
    instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    text = instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"
    assert parse_instant(text) == instant
    millis = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert parse_instant(millis) == instant


def test_parse_instant_reads_the_pre_2025_iso_timestamp() -> None:
    """The recorded report whose ``timestamp`` is an ISO string (before 2025-03) still has an instant."""
    message = parse_body(load_event("eocr_iso_timestamp"))["message"]
    assert parse_instant(message["timestamp"]) == utc("2025-02-11T03:20:22.491")


# (UTC instant, New Zealand wall-clock time): either side of both 2026 DST changes.
NZ_DST = [
    ("2026-04-04T13:59:59.999", "2026-04-05T02:59:59.999"),  # last NZDT moment
    ("2026-04-04T14:00:00", "2026-04-05T02:00:00"),  # 03:00 NZDT -> 02:00 NZST
    ("2026-04-04T13:30:00", "2026-04-05T02:30:00"),  # 02:30 happens twice...
    ("2026-04-04T14:30:00", "2026-04-05T02:30:00"),  # ...an hour apart
    ("2026-09-26T13:59:59.999", "2026-09-27T01:59:59.999"),  # last NZST moment
    ("2026-09-26T14:00:00", "2026-09-27T03:00:00"),  # 02:00 NZST -> 03:00 NZDT
    ("2026-06-30T12:00:00", "2026-07-01T00:00:00"),  # winter, +12
    ("2026-12-31T11:00:00", "2027-01-01T00:00:00"),  # summer, +13
]


@pytest.mark.parametrize(("instant", "local"), NZ_DST)
def test_local_wallclock_is_the_nz_reading_across_dst(instant: str, local: str) -> None:
    """local_wallclock gives the NZ wall-clock time as a UTC-labelled datetime on both sides of each change."""
    assert local_wallclock(utc(instant), NZ) == utc(local)


def test_local_wallclock_of_the_dst_fixture_calls() -> None:
    """dst_autumn ends 'before' it starts in local time; dst_spring spans 65 wall-clock minutes in 334.6 s."""
    autumn = report("dst_autumn")
    start, end = parse_instant(autumn["startedAt"]), parse_instant(autumn["endedAt"])
    assert start is not None
    assert end is not None
    assert local_wallclock(start, NZ) == utc("2026-04-05T02:58:30.250")
    assert local_wallclock(end, NZ) == utc("2026-04-05T02:02:10.750")
    spring = report("dst_spring")
    start, end = parse_instant(spring["startedAt"]), parse_instant(spring["endedAt"])
    assert start is not None
    assert end is not None
    assert local_wallclock(start, NZ) == utc("2026-09-27T01:57:45.500")
    assert local_wallclock(end, NZ) == utc("2026-09-27T03:03:20.125")
    assert duration_seconds(start, end) == Decimal("334.625")


def test_local_wallclock_in_other_zones_and_naive_input() -> None:
    """The zone is a parameter (UTC is the identity); a naive datetime is refused, not guessed."""
    instant = utc("2026-03-10T21:14:05.334")
    assert local_wallclock(instant, "UTC") == instant
    assert local_wallclock(instant, "America/New_York") == utc("2026-03-10T17:14:05.334")
    with pytest.raises(ValueError, match="aware"):
        local_wallclock(datetime(2026, 3, 10, 21, 14), NZ)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)))
def test_local_wallclock_is_utc_plus_the_zone_offset(instant: datetime) -> None:
    """For any instant the NZ reading is 12 or 13 hours ahead, exactly the zone's UTC offset at that instant."""
    local = local_wallclock(instant, NZ)
    assert local - instant in (timedelta(hours=12), timedelta(hours=13))
    assert local - instant == instant.astimezone(ZoneInfo(NZ)).utcoffset()


@pytest.mark.parametrize(
    ("instant", "month"),
    [
        ("2026-11-30T12:30:00", date(2026, 12, 1)),  # the month_boundary call: 1 December in NZ
        ("2026-11-30T10:59:59", date(2026, 11, 1)),
        ("2026-11-30T11:00:00", date(2026, 12, 1)),  # midnight NZDT
        ("2026-03-10T21:14:05.334", date(2026, 3, 1)),
        ("2026-12-31T11:00:00", date(2027, 1, 1)),
    ],
)
def test_local_month_is_the_first_day_of_the_local_month(instant: str, month: date) -> None:
    """Usage months are local: an instant late on the last UTC day of a month can be next month in NZ."""
    assert local_month(utc(instant), NZ) == month


def test_local_month_of_the_month_boundary_call() -> None:
    """The month_boundary call starts on 30 November UTC, which is December in New Zealand."""
    start = parse_instant(report("month_boundary")["startedAt"])
    assert start is not None
    assert local_month(start, NZ) == date(2026, 12, 1)
    assert local_month(start, "UTC") == date(2026, 11, 1)


def test_duration_seconds_rounds_and_refuses_missing_or_negative() -> None:
    """Durations are numeric(10,3) rounded half up; a missing end or an end before the start gives None."""
    start = utc("2026-05-19T01:30:03.980")
    assert duration_seconds(start, utc("2026-05-19T01:30:33.620")) == Decimal("29.640")
    assert duration_seconds(start, start) == Decimal("0.000")
    assert duration_seconds(start, start + timedelta(microseconds=1500)) == Decimal("0.002")
    assert duration_seconds(start, start + timedelta(microseconds=1499)) == Decimal("0.001")
    assert duration_seconds(start, start + timedelta(days=2)) == Decimal("172800.000")
    assert duration_seconds(start, None) is None
    assert duration_seconds(None, start) is None
    assert duration_seconds(start, start - timedelta(milliseconds=1)) is None
    assert duration_seconds(start, start + timedelta(days=200)) is None  # beyond numeric(10,3)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_seconds_is_exact_for_whole_milliseconds(millis: int) -> None:
    """Any whole number of milliseconds comes back exactly, with three decimals."""
    start = utc("2026-01-01T00:00:00")
    assert duration_seconds(start, start + timedelta(milliseconds=millis)) == Decimal(millis) / 1000


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [
        ("62.900", "1.05"),
        ("29.640", "0.49"),
        ("0.000", "0.00"),
        ("30.000", "0.50"),
        ("0.300", "0.01"),
        ("0.299", "0.00"),
    ],
)
def test_seconds_to_minutes_rounds_half_up(seconds: str, minutes: str) -> None:
    """Minutes are numeric(10,2), rounded half up (0.3 s is 0.005 min, which rounds to 0.01)."""
    assert seconds_to_minutes(Decimal(seconds)) == Decimal(minutes)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"durationSeconds": 50.831, "durationMs": 50831, "durationMinutes": 0.8472}, "50.831"),
        ({"durationMs": 50831, "durationMinutes": 0.8472}, "50.831"),
        ({"durationMinutes": 1.0483}, "62.898"),
        ({"durationSeconds": 17}, "17.000"),
        ({"durationSeconds": "50.8", "durationMs": 50831}, "50.831"),
        ({"durationSeconds": -1, "durationMinutes": 0.5}, "30.000"),
        ({"durationSeconds": True, "durationMs": None, "durationMinutes": 0.5}, "30.000"),
        ({"durationSeconds": float("nan"), "durationMs": 1500}, "1.500"),
        ({"durationSeconds": 0}, "0.000"),
    ],
)
def test_reported_duration_prefers_seconds_then_ms_then_minutes(fields: dict[str, object], expected: str) -> None:
    """The report's own duration: durationSeconds, else durationMs, else durationMinutes; bad values are skipped."""
    assert reported_duration_seconds(fields) == Decimal(expected)


@pytest.mark.parametrize(
    "fields",
    [{}, {"durationSeconds": "62.9"}, {"durationMs": -5}, {"durationSeconds": 1e300}, {"durationMinutes": [1]}],
)
def test_reported_duration_is_none_without_a_usable_field(fields: dict[str, object]) -> None:
    """No usable duration field gives None, so the caller falls back to endedAt - startedAt."""
    assert reported_duration_seconds(fields) is None


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("inbound_booking", "62.900"),
        ("transferred", "24.600"),
        ("voicemail", "17.000"),
        ("dst_spring", "334.625"),
        ("outbound_no_answer", None),
        ("web_call_support", None),
    ],
)
def test_reported_duration_of_recorded_reports(call: str, expected: str | None) -> None:
    """The recorded reports' durations, and None for the ones that send no duration fields."""
    duration = reported_duration_seconds(report(call))
    assert duration == (Decimal(expected) if expected else None)


def test_reported_and_computed_durations_agree_on_the_fixtures() -> None:
    """Where a report sends a duration, it equals endedAt - startedAt to the millisecond."""
    for call in ("inbound_booking", "transferred", "voicemail", "dst_autumn", "dst_spring", "long_call"):
        message = report(call)
        computed = duration_seconds(parse_instant(message["startedAt"]), parse_instant(message["endedAt"]))
        assert reported_duration_seconds(message) == computed, call


def test_conversation_span_from_2024_messages_in_seconds() -> None:
    """Start is time - secondsFromStart; end is time + duration, read as seconds when below 100."""
    messages = [
        {"role": "system", "message": "prompt", "time": 1718000000000, "secondsFromStart": 0},
        {"role": "bot", "message": "Hi", "time": 1718000001500, "secondsFromStart": 1.5, "duration": 2.82},
        {"role": "user", "message": "Hello", "time": 1718000006000, "secondsFromStart": 6, "duration": 1.5},
        "not a message",
        {"role": "user", "message": "no time"},
    ]
    start, end = conversation_span(messages)
    assert start == utc("2024-06-10T06:13:20")
    assert end == utc("2024-06-10T06:13:27.500")


def test_conversation_span_prefers_end_time_and_reads_ms_durations() -> None:
    """endTime wins; a duration of 100 or more is milliseconds (today's unit)."""
    messages = [
        {"role": "bot", "time": 1750183774317, "endTime": 1750183777137, "secondsFromStart": 3.7, "duration": 2820},
        {"role": "user", "time": 1750183777327, "secondsFromStart": 6.71, "duration": 3020},
    ]
    start, end = conversation_span(messages)
    assert start == parse_instant(1750183770617)
    assert end == parse_instant(1750183780347)


def test_conversation_span_without_times() -> None:
    """No message with a time: nothing to say."""
    assert conversation_span([{"role": "user", "message": "hi"}, None]) == (None, None)
