"""ingest.mapping.timing: instants in Vapi's units, reported durations, conversation spans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fixtures import load_call, load_event, parse_body

from ingest.mapping.timing import conversation_span, parse_instant, reported_duration_seconds


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
        start, end = parse_instant(message["startedAt"]), parse_instant(message["endedAt"])
        assert start is not None
        assert end is not None
        computed = Decimal((end - start) // timedelta(milliseconds=1)) / 1000
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


def test_implausible_instants_are_named() -> None:
    """Before 2015, or more than a day after the event was received, an instant is implausible."""
    from ingest.mapping.timing import implausible

    received = datetime(2026, 3, 10, tzinfo=UTC)
    assert implausible(datetime(1, 1, 1, tzinfo=UTC), received) == "before 2015-01-01"
    assert implausible(datetime(9999, 1, 1, tzinfo=UTC), received) == "more than a day after the event was received"
    assert implausible(datetime(2015, 1, 1, tzinfo=UTC), received) is None
    assert implausible(received + timedelta(hours=23), received) is None
