"""The ops page's Jinja2 templates (``ingest/ops/page/html/``) and the filters they use.

Autoescaping is on for every template: event errors, transcripts and analysis are text
from outside and are only ever shown escaped.

Every time on the page has one format, labelled with its zone: ``2026-03-11 10:14:05 UTC``,
and beside it the same instant in ``LOCAL_TIMEZONE`` labelled with its offset
(``2026-03-11 23:14:05 UTC+13``). The page's script formats the live chart's times the
same way (``Intl.DateTimeFormat`` with ``shortOffset``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import zoneinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.templating import Jinja2Templates

from ingest.mapping.timing import parse_instant

TEMPLATE_DIR = Path(__file__).resolve().parent / "html"
FORMAT = "%Y-%m-%d %H:%M:%S"
CHART_WIDTH, CHART_TOP, CHART_HEIGHT = 600, 118, 114  # the live chart's drawing area (index.html)


def _offset(value: dt.datetime) -> str:
    """``UTC``, ``UTC+13``, ``UTC+12:45``, ``UTC-5``: what the script's ``shortOffset`` shows too."""
    offset = value.utcoffset() or dt.timedelta()
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{'+' if minutes > 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")


def utc(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime(FORMAT) + " UTC"


def local(value: dt.datetime | None, zone: str) -> str:
    if value is None:
        return ""
    there = value.astimezone(zoneinfo.ZoneInfo(zone))
    return f"{there.strftime(FORMAT)} {_offset(there)}"


def instant(value: object) -> dt.datetime | None:
    """A stored time (ISO 8601 or epoch ms) as a datetime, for ``utc`` and ``local``."""
    return parse_instant(value)


def chart_seed(stats: dict[str, Any], series: list[str]) -> dict[str, Any]:
    """The live chart's first sample, drawn by the server: the page is never blank until the first poll.

    ``sample`` holds each series' value now (None if unknown); ``y`` where the script would draw it.
    """
    queue = (stats.get("queues") or [None])[0] or {}
    sample = {**(stats.get("events") or {}), **queue}
    values = {key: sample.get(key) if isinstance(sample.get(key), int) else None for key in series}
    top = max([1, *(v for v in values.values() if v is not None)])
    ys = {key: round(CHART_TOP - v / top * CHART_HEIGHT, 1) for key, v in values.items() if v is not None}
    return {"at": stats.get("at"), "sample": values, "max": top, "y": ys, "x": float(CHART_WIDTH)}


def age(seconds: float | None) -> str:
    """Seconds as the page shows them: ``4.2 s``, ``3.5 min``, ``2.0 h``; ``none`` for no value."""
    if seconds is None:
        return "none"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def duration(seconds: decimal.Decimal | float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def money(value: decimal.Decimal | float | None) -> str:
    return "" if value is None else f"${value:.4f}"


def figure(value: decimal.Decimal | float | None) -> str:
    """A measured figure (a count, a cost, a score) to two decimals at most: ``12``, ``3.5``, ``0.25``."""
    if value is None:
        return ""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def path_segment(value: object) -> str:
    """A value safe to put in one path segment of a link (``/`` included)."""
    return quote(str(value), safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        utc=utc,
        local=local,
        instant=instant,
        age=age,
        duration=duration,
        money=money,
        figure=figure,
        segment=path_segment,
    )
    return env


templates = Jinja2Templates(env=_environment())
