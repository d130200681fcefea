"""The ops page's Jinja2 templates (``ingest/ops/page/html/``) and the filters they use.

Autoescaping is on for every template: event errors, transcripts and analysis are text
from outside and are only ever shown escaped.
"""

from __future__ import annotations

import datetime as dt
import decimal
import zoneinfo
from pathlib import Path
from urllib.parse import quote

import jinja2
from starlette.templating import Jinja2Templates

TEMPLATE_DIR = Path(__file__).resolve().parent / "html"


def utc(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def local(value: dt.datetime | None, zone: str) -> str:
    if value is None:
        return ""
    return value.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


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
    env.filters.update(utc=utc, local=local, age=age, duration=duration, money=money, segment=path_segment)
    return env


templates = Jinja2Templates(env=_environment())
