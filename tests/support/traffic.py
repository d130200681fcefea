"""Generated call traffic for the anomaly detectors: ``user_sessions`` rows written directly.

A test places a scan at ``at`` and builds what it needs around the window ending there: a
quiet ``baseline`` in the same local hour of earlier weeks, the day's ordinary calls, then a
pattern (``spread``). Only those rows are written, so a test stays fast.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

ZONE = ZoneInfo("Pacific/Auckland")  # the suite's LOCAL_TIMEZONE (tests/conftest.py)
ASSISTANT = "7c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
_numbers = itertools.count(1)


def fresh_number() -> str:
    """A New Zealand mobile number no other generated call has."""
    return f"+6422{next(_numbers):07d}"


@dataclass(frozen=True)
class Call:
    """One row of ``user_sessions``: started at ``at``, ended ``seconds`` later."""

    client: str | None
    at: datetime
    number: str | None = None  # None: a fresh caller
    seconds: float = 120.0
    cost: float = 0.2
    type: str = "inboundPhoneCall"
    phone_number_id: str | None = None
    ended_reason: str = "customer-ended-call"


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in the suite's local zone."""
    return datetime(year, month, day, hour, minute, tzinfo=ZONE)


def weeks_back(at: datetime, weeks: int) -> datetime:
    """The same local wall-clock time ``weeks`` weeks earlier (across daylight saving)."""
    wall = at.astimezone(ZONE).replace(tzinfo=None) - timedelta(weeks=weeks)
    return wall.replace(tzinfo=ZONE)


def spread(template: Call, count: int, minutes: float = 30.0) -> list[Call]:
    """``count`` calls like ``template``, evenly over ``minutes`` from its ``at``."""
    step = timedelta(minutes=minutes) / max(count, 1)
    return [replace(template, at=template.at + step * i) for i in range(count)]


def baseline(template: Call, weeks: Iterable[int], per_week: int | Iterable[int], minutes: float = 30.0) -> list[Call]:
    """``spread`` of ``template`` in the same local window of each of ``weeks`` weeks before."""
    weeks = list(weeks)
    counts = [per_week] * len(weeks) if isinstance(per_week, int) else list(per_week)
    calls: list[Call] = []
    for week, count in zip(weeks, counts, strict=True):
        calls += spread(replace(template, at=weeks_back(template.at, week)), count, minutes)
    return calls


def insert(conn: psycopg.Connection[Any], calls: Iterable[Call]) -> int:
    """Write the calls (their clients, assistant and phone numbers are created by the triggers)."""
    rows = []
    for call in calls:
        ended = call.at + timedelta(seconds=call.seconds)
        rows.append(
            (
                str(uuid.uuid4()),
                ASSISTANT,
                call.client,
                call.phone_number_id,
                call.number or fresh_number(),
                call.type,
                call.at,
                ended,
                call.seconds,
                round(call.seconds / 60, 2),
                call.cost,
                call.ended_reason,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO user_sessions (call_id, assistant_id, client_id, phone_number_id, customer_number, type,"
            " started_at_utc, ended_at_utc, duration_seconds, duration_minutes, cost_total, ended_reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    return len(rows)
