"""Reading user_sessions and usage back as plain JSON-able dicts, for comparisons."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

IGNORED_COLUMNS = ("id", "created_at")


def plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, dt.date)):
        return str(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def session_rows(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """Every row keyed by its call id (or session id), without ``id`` and ``created_at``."""
    rows: dict[str, dict[str, Any]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute("SELECT * FROM user_sessions"):
            key = str(row["call_id"] or row["session_id"])
            rows[key] = {k: plain(v) for k, v in row.items() if k not in IGNORED_COLUMNS}
    return rows


def usage(conn: psycopg.Connection[Any]) -> list[tuple[str, str, int, str, str]]:
    """``client_monthly_usage`` as sorted tuples (client, month, calls, minutes, cost)."""
    rows = conn.execute("SELECT client_id, month, calls, minutes, cost FROM client_monthly_usage").fetchall()
    return sorted((r[0], str(r[1]), r[2], str(r[3]), str(r[4])) for r in rows)


def event_states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("SELECT state, count(*) FROM call_events GROUP BY state").fetchall())
