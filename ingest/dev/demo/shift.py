"""Moving a recorded call in time, so that a demo call happens now.

Every instant in a call's bodies moves by the same number of milliseconds: epoch-millisecond
numbers (``timestamp``, a message's ``time`` and ``endTime``, and the ones inside recording
and log URLs) and ISO 8601 UTC strings (``startedAt``, ``createdAt``, ``presignedUrlsExpiresAt``
…). Durations, order and every other byte stay as recorded, so shifting back by the same
amount gives the recorded bodies again (in whole seconds, as ``delta_to_now`` gives: an ISO
string without milliseconds cannot move by less). A thirteen-digit number counts as an instant
only on its own (not inside an id or a phone number) and within ``WINDOW_MS`` of the call's
message timestamps, so a number someone said in a transcript is almost surely left alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Final

import orjson

WINDOW_MS: Final = 400 * 86_400_000
ENDED_AGO_MS: Final = 60_000
_EPOCH_MS = re.compile(rb"(?<![0-9A-Za-z.+])1[0-9]{12}(?![0-9])")
_ISO = re.compile(rb'"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,6}))?Z"')


def _stamps(bodies: Sequence[bytes]) -> list[int]:
    stamps = [orjson.loads(body)["message"].get("timestamp") for body in bodies]
    return [int(stamp) for stamp in stamps if isinstance(stamp, int | float)]


def delta_to_now(bodies: Sequence[bytes], now_ms: int) -> int:
    """Whole seconds to move ``bodies`` by so that the last of them was sent ``ENDED_AGO_MS`` before ``now_ms``."""
    return (now_ms - ENDED_AGO_MS - max(_stamps(bodies))) // 1000 * 1000


def shift(bodies: Sequence[bytes], delta_ms: int) -> list[bytes]:
    """``bodies`` with every instant in them moved by ``delta_ms``."""
    stamps = _stamps(bodies)
    low, high = min(stamps) - WINDOW_MS, max(stamps) + WINDOW_MS

    def number(match: re.Match[bytes]) -> bytes:
        value = int(match[0])
        return str(value + delta_ms).encode() if low <= value <= high else match[0]

    def iso(match: re.Match[bytes]) -> bytes:
        fraction = match[2] or b""
        micros = int(fraction.ljust(6, b"0")) if fraction else 0
        instant = dt.datetime.fromisoformat(match[1].decode()).replace(tzinfo=dt.UTC, microsecond=micros)
        moved = instant + dt.timedelta(milliseconds=delta_ms)
        text = moved.strftime("%Y-%m-%dT%H:%M:%S").encode()
        if fraction:
            text += b"." + f"{moved.microsecond:06d}".encode()[: len(fraction)]
        return b'"' + text + b'Z"'

    return [_ISO.sub(iso, _EPOCH_MS.sub(number, body)) for body in bodies]
