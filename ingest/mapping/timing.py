"""Instants and durations, read the way Vapi writes them.

Vapi's units (reference §11): ``message.timestamp`` and message ``time``/``endTime`` are
epoch **milliseconds** as JSON numbers, but before 2025-03 ``timestamp`` was an ISO-8601
string; ``startedAt``/``endedAt``/``createdAt`` are ISO strings with milliseconds and ``Z``.
Durations in the report are legacy fields in three units at once. Nothing here reads a
clock or the environment. Local wall-clock times (the ``*_nz`` columns) and ``ended - started``
are computed by the database (``ingest_local_wallclock``, ``ingest_duration_seconds``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any, Final

from ingest.mapping.numbers import json_number
from ingest.patch import Patch

__all__ = ["conversation_span", "implausible", "parse_instant", "plausible_instant", "reported_duration_seconds"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Below this a number is epoch seconds, above it epoch milliseconds: 1e11 ms is 1973-03-03,
# 1e11 s is the year 5138, so no real instant of either kind is on the wrong side.
_SECONDS_BELOW: Final = Decimal(10) ** 11

_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?")

_MILLI: Final = Decimal("0.001")
# numeric(10,3): anything larger cannot be stored; no real call lasts 115 days.
_MAX_DURATION: Final = Decimal("9999999.999")


def parse_instant(value: object) -> datetime | None:
    """An aware UTC datetime from epoch ms/s (number or digit string) or ISO-8601; else None.

    Numbers are epoch milliseconds unless below 1e11, then epoch seconds. Zero and negative
    numbers are treated as missing (Vapi never sends an instant before 1970). Sub-millisecond
    digits are kept to the microsecond, so milliseconds survive exactly. An ISO string
    without a zone is UTC; a date without a time is not an instant.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, bool):  # bool is an int subclass; True is not 1 ms after the epoch
        return None
    if isinstance(value, int | float):
        number = json_number(value)
        return None if number is None else _from_epoch(number)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return _from_epoch(Decimal(text))
        return _from_iso(text)
    return None


# Instants a call can plausibly have: Vapi did not exist before 2015, and no event describes
# a moment more than a day after it reached us. Anything else (year 0001, 9999, a clock
# gone wrong) would file usage under a month that never had calls.
EARLIEST: Final = datetime(2015, 1, 1, tzinfo=UTC)
AHEAD: Final = timedelta(days=1)
IMPLAUSIBLE_KEY: Final = "implausible_times"


def implausible(instant: datetime, received_at: datetime) -> str | None:
    """Why ``instant`` cannot be a call's, given when its event was received; None when it can be."""
    if instant < EARLIEST:
        return "before 2015-01-01"
    if instant > received_at + AHEAD:
        return "more than a day after the event was received"
    return None


def note_implausible(patch: Patch, field: str, raw: Any, reason: str) -> Patch:
    """``patch`` with ``metadata.implausible_times.<field>`` = the raw value and why it was not used."""
    value = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else str(raw)[:64]
    noted = {**patch.metadata.get(IMPLAUSIBLE_KEY, {}), field: {"value": value, "reason": reason}}
    return Patch(
        patch.call_id, patch.session_id, patch.values, {**patch.metadata, IMPLAUSIBLE_KEY: noted}, patch.timeline
    )


def plausible_instant(patch: Patch, field: str, raw: Any, received_at: datetime) -> tuple[Patch, datetime | None]:
    """``raw`` read as an instant, or None; an implausible one is noted in ``patch``'s metadata instead."""
    instant = parse_instant(raw)
    if instant is None:
        return patch, None
    reason = implausible(instant, received_at)
    if reason is None:
        return patch, instant
    return note_implausible(patch, field, raw, reason), None


def _from_epoch(number: Decimal) -> datetime | None:
    if number <= 0:
        return None
    millis = number * 1000 if number < _SECONDS_BELOW else number
    micros = int((millis * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:  # beyond the year 9999 (e.g. epoch microseconds): not an instant we know
        return None


def _from_iso(text: str) -> datetime | None:
    if len(text) <= 10:  # "2025-06-17" alone is a day, not an instant
        return None
    try:
        # Python 3.11 reads "Z", offsets, "T" or space, and 1-6 fraction digits.
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # "9999-12-31T23:00:00-05:00" is past the last datetime
        return None


# The report's legacy duration fields (reference §2.1, not in Vapi's schema, sent in
# practice), best first: durationSeconds is exact (50.831), durationMs is exact but may be
# absent, durationMinutes is rounded to 4 places (1.0483 min = 62.898 s, not 62.9 s).
_DURATION_FIELDS: Final = (
    ("durationSeconds", Decimal(1)),
    ("durationMs", Decimal("0.001")),
    ("durationMinutes", Decimal(60)),
)


def reported_duration_seconds(message: Mapping[str, Any]) -> Decimal | None:
    """The end-of-call report's own duration in seconds, numeric(10,3); None when it sends none.

    Only JSON numbers count; a non-numeric, negative or non-finite value is skipped and the
    next field is tried. The report's own ``startedAt``/``endedAt`` are the caller's fallback.
    """
    for field, to_seconds in _DURATION_FIELDS:
        amount = json_number(message.get(field))
        if amount is not None and amount >= 0:
            seconds = _fit_seconds(amount * to_seconds)
            if seconds is not None:
                return seconds
    return None


def _fit_seconds(seconds: Decimal) -> Decimal | None:
    if seconds > _MAX_DURATION + 1:  # checked first: quantizing 1e300 would raise
        return None
    rounded = seconds.quantize(_MILLI, rounding=ROUND_HALF_UP)
    return rounded if rounded <= _MAX_DURATION else None


# A conversation message's ``duration`` was seconds in 2024 (``2.82``) and is milliseconds
# since (``2820``, ``30695.0009765625``): no utterance lasts 100 s, none is shorter than 0.1 s.
_DURATION_SECONDS_BELOW: Final = Decimal(100)


def conversation_span(messages: list[Any]) -> tuple[datetime | None, datetime | None]:
    """When a conversation started and ended, read off its messages; for reports without times.

    The start is the earliest ``time - secondsFromStart`` (the system message has
    ``secondsFromStart: 0``), else the earliest ``time``. The end is the latest ``endTime``,
    else ``time + duration`` (``duration`` in seconds below 100, else milliseconds), else
    ``time``. Messages without a usable ``time`` are skipped; (None, None) when none has one.
    """
    starts: list[datetime] = []
    ends: list[datetime] = []
    for item in messages:
        if not isinstance(item, dict):
            continue
        at = parse_instant(item.get("time"))
        if at is None:
            continue
        offset = json_number(item.get("secondsFromStart"))
        starts.append(at - timedelta(seconds=float(offset)) if offset is not None and 0 <= offset < 10**6 else at)
        end = parse_instant(item.get("endTime"))
        if end is None:
            length = json_number(item.get("duration"))
            if length is not None and 0 <= length < 10**9:
                seconds = length if length < _DURATION_SECONDS_BELOW else length / 1000
                end = at + timedelta(seconds=float(seconds))
        ends.append(max(end or at, at))
    if not starts:
        return None, None
    return min(starts), max(ends)
