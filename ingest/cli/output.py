"""Terminal output for the ops commands: plain tables, short ages and times, a y/N question."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import orjson

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; the columns at ``right`` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def age(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``1d04h``; ``-`` for none."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def when(instant: datetime | None) -> str:
    """``2026-11-25 02:58:15Z``: second precision, UTC."""
    if instant is None:
        return "-"
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def wallclock(value: datetime | None) -> str:
    """``2026-01-21 16:11:29``: a local wall-clock time (no zone of its own), second precision."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def first_line(text: str | None, width: int = 80) -> str:
    line = (text or "").strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def to_json(value: Any, *, indent: bool = True) -> str:
    """JSON, indented or on one line (datetimes as ISO 8601, Decimals and others as strings)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 if indent else None).decode()


# The largest count or id the commands pass on: Postgres's bigint, which LIMIT and ids are.
MAX_BIGINT = 2**63 - 1


def _whole(text: str, minimum: int, maximum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}")
    if value > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number from 1 to ``MAX_BIGINT``."""
    return _whole(text, 1, MAX_BIGINT)


def event_id(text: str) -> int:
    """An argparse type for an event id (a positive bigint)."""
    return _whole(text, 1, MAX_BIGINT)


def bounded_int(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` to ``maximum``."""
    return lambda text: _whole(text, minimum, maximum)


def positive_number(maximum: float) -> Callable[[str], float]:
    """An argparse type: a finite number above 0 and at most ``maximum`` (no ``nan``, no ``inf``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError("must be a number above 0")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}")
        return value

    return parse


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``10m``, ``2h``, ``1d``, ``1w`` ago, or an ISO 8601 time (UTC when it names no offset)."""
    match = _RELATIVE.match(text)
    if match:
        now = datetime.now(UTC) if now is None else now
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:  # before the year 1: no event is that old
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time nor a relative one like 10m, 2h, 1d") from None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def since(text: str) -> datetime:
    """An argparse type for ``--since``: ``parse_since``, with its error as a usage error."""
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def confirm(question: str, *, assume_yes: bool, stdin: TextIO | None = None, stderr: TextIO | None = None) -> bool:
    """Ask ``question [y/N]`` on a terminal; True only for yes.

    ``assume_yes`` (``--yes``) skips the question. Without a terminal to ask on, the answer
    cannot be given, so it raises ``NotInteractive``.
    """
    if assume_yes:
        return True
    stdin = sys.stdin if stdin is None else stdin
    stderr = sys.stderr if stderr is None else stderr
    if not stdin.isatty():
        raise NotInteractive("not asking without a terminal: pass --yes to confirm")
    stderr.write(f"{question} [y/N] ")
    stderr.flush()
    return stdin.readline().strip().lower() in {"y", "yes"}


class NotInteractive(RuntimeError):
    """A confirmation is needed and there is no terminal to ask on."""
