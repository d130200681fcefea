"""ingest.handlers.end_of_call_report across payload eras: every report ends its call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.handlers import Context
from ingest.handlers.end_of_call_report import handle
from ingest.mapping.timing import parse_instant
from ingest.patch import Source

RECEIVED = datetime(2026, 6, 1, 6, 20, tzinfo=UTC)  # after every time below: later ones are implausible
CALL = {"id": "00000000-0000-4000-8000-000000000002", "assistantId": "359ecb8e-2b18-470f-b38b-2b3e375752bb"}
MESSAGES = [
    {"role": "system", "message": "prompt", "time": 1718000000000, "secondsFromStart": 0},
    {"role": "bot", "message": "Kia ora", "time": 1718000001500, "secondsFromStart": 1.5, "duration": 2.82},
    {"role": "user", "message": "Hi, I need a booking", "time": 1718000006000, "secondsFromStart": 6, "duration": 3.5},
]


def report(**fields: Any) -> dict[str, Any]:
    return {"type": "end-of-call-report", "call": CALL, "endedReason": "customer-ended-call", **fields}


def times(message: dict[str, Any]) -> dict[str, tuple[Any, Source]]:
    values = handle(message, Context(received_at=RECEIVED)).values
    return {column: values[column] for column in ("started_at_utc", "ended_at_utc") if column in values}


def test_modern_report_times_are_the_report_s() -> None:
    """startedAt and endedAt rank as the report's own."""
    message = report(startedAt="2026-03-10T21:14:05.334Z", endedAt="2026-03-10T21:15:08.234Z", messages=MESSAGES)
    assert times(message) == {
        "started_at_utc": (parse_instant("2026-03-10T21:14:05.334Z"), Source.REPORT),
        "ended_at_utc": (parse_instant("2026-03-10T21:15:08.234Z"), Source.REPORT),
    }


@pytest.mark.parametrize("where", ["messages", "artifact"])
def test_2024_report_times_come_from_its_messages(where: str) -> None:
    """Without startedAt/endedAt, the conversation's messages (top level or artifact) give both."""
    body = {"messages": MESSAGES} if where == "messages" else {"artifact": {"messages": MESSAGES}}
    message = report(timestamp="2024-06-10T06:14:00.000Z", **body)
    assert times(message) == {
        "started_at_utc": (datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC), Source.MESSAGES),
        "ended_at_utc": (datetime(2024, 6, 10, 6, 13, 29, 500000, tzinfo=UTC), Source.MESSAGES),
    }


@pytest.mark.parametrize("stamp", ["2024-06-10T06:14:00.000Z", 1718000040000, 1718000040000.25])
def test_report_with_only_a_timestamp_ends_then(stamp: Any) -> None:
    """No times and no timed messages: the report's timestamp (ISO, epoch ms, fractional) is the end."""
    assert times(report(timestamp=stamp, messages=[{"role": "user", "message": "hi"}])) == {
        "ended_at_utc": (parse_instant(stamp), Source.TIMESTAMP)
    }


def test_report_without_any_time_ends_when_received() -> None:
    """A report that says nothing of time still ends the call: when it reached us, ranked lowest."""
    assert times(report()) == {"ended_at_utc": (RECEIVED, Source.RECEIVED)}


def test_half_given_times_fill_only_what_is_missing() -> None:
    """A report with endedAt but no startedAt takes the start from its messages, the end from itself."""
    message = report(endedAt="2024-06-10T06:13:40.000Z", messages=MESSAGES)
    assert times(message) == {
        "started_at_utc": (datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC), Source.MESSAGES),
        "ended_at_utc": (datetime(2024, 6, 10, 6, 13, 40, tzinfo=UTC), Source.REPORT),
    }


def test_drifted_fields_map_without_failing() -> None:
    """analysis {} with summary "", successEvaluation "true", explicit nulls: mapped, nothing raised."""
    message = report(
        analysis={},
        summary="",
        successEvaluation="true",
        cost=None,
        costs=None,
        artifact=None,
        customer=None,
        phoneNumber=None,
        durationSeconds=None,
        transcript=None,
        timestamp=None,
    )
    message["call"] = {**CALL, "endedAt": None, "cost": None, "assistantOverrides": None, "squad": None}
    patch = handle(message, Context(received_at=RECEIVED))
    assert "call_summary" not in patch.values
    assert "cost_total" not in patch.values
    assert patch.values["ended_at_utc"] == (RECEIVED, Source.RECEIVED)
    assert patch.values["assistant_id"] == (CALL["assistantId"], Source.CALL)


@pytest.mark.parametrize(
    ("started", "ended", "reason"),
    [
        ("0001-01-01T00:00:00.000Z", "0001-01-01T00:10:00.000Z", "before 2015-01-01"),
        ("9999-01-01T00:00:00.000Z", "9999-01-01T00:10:00.000Z", "more than a day after the event was received"),
        ("2026-03-10T21:15:08.234Z", "2026-03-10T21:14:05.334Z", "endedAt is before startedAt"),
    ],
)
def test_implausible_report_times_are_kept_raw_not_used(started: str, ended: str, reason: str) -> None:
    """Times from year 0001 or 9999, or an end before the start, go to metadata.implausible_times with a reason."""
    patch = handle(report(startedAt=started, endedAt=ended), Context(received_at=RECEIVED))
    assert "started_at_utc" not in patch.values
    assert patch.values["ended_at_utc"] == (RECEIVED, Source.RECEIVED)  # a report still ends its call
    assert patch.metadata["implausible_times"] == {
        "startedAt": {"value": started, "reason": reason},
        "endedAt": {"value": ended, "reason": reason},
    }
