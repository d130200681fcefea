"""Reading user_sessions and usage back as plain JSON-able dicts, for comparisons."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ingest.privacy import SealedEvent
from ingest.settings import Settings

IGNORED_COLUMNS = ("id", "created_at")
# How the suite's workers treat personal data: the run's key (tests/conftest.py), NZ numbers.
PRIVACY = Settings.from_env().privacy
# What a sealed body needs beside it to open: its call's envelope (sql/functions/71_call_envelopes.sql).
ENVELOPE = "ingest_call_envelope(call_id, envelope_id)"


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
            opened = PRIVACY.open_row(row)  # sealed values differ on every sealing: compare what they hold
            rows[key] = {k: plain(v) for k, v in opened.items() if k not in IGNORED_COLUMNS}
    return rows


def stored_messages(conn: psycopg.Connection[Any], where: str = "true", params: Any = None) -> list[dict[str, Any]]:
    """The messages of the ``call_events`` rows ``where`` selects, opened, in id order."""
    rows = conn.execute(f"SELECT message, body, {ENVELOPE} FROM call_events WHERE {where} ORDER BY id", params)
    return [PRIVACY.open_message(message, body, envelope) for message, body, envelope in rows.fetchall()]


def rewrite_stored_messages(conn: psycopg.Connection[Any], change: Any, where: str = "true", params: Any = None) -> int:
    """Replace the message of each row ``where`` selects by ``change(message)``, sealed as the worker
    seals (against its call's envelope, kept)."""
    query = f"SELECT id, message, body, {ENVELOPE}, call_id FROM call_events WHERE {where} ORDER BY id"
    rows = conn.execute(query, params).fetchall()
    for event_id, message, body, envelope, call_id in rows:
        changed = change(PRIVACY.open_message(message, body, envelope))
        sealed = PRIVACY.seal_event(changed)
        kept = sealed.envelope
        if kept is not None and kept.call_id != call_id:  # the change moved it to another call: sealed whole
            sealed, kept = SealedEvent(PRIVACY.seal_message(changed)), None
        if kept is not None:
            conn.execute("SELECT ingest_keep_call_envelope(%s, %s, %s)", (kept.call_id, kept.id, kept.body))
        conn.execute(
            "UPDATE call_events SET message = %s, body = %s, envelope_id = %s WHERE id = %s",
            (None if sealed.body is not None else Jsonb(changed), sealed.body, kept.id if kept else None, event_id),
        )
    return len(rows)


def usage(conn: psycopg.Connection[Any]) -> list[tuple[str, str, int, str, str]]:
    """``client_monthly_usage`` as sorted tuples (client, month, calls, minutes, cost)."""
    rows = conn.execute("SELECT client_id, month, calls, minutes, cost FROM client_monthly_usage").fetchall()
    return sorted((r[0], str(r[1]), r[2], str(r[3]), str(r[4])) for r in rows)


def event_states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("SELECT state, count(*) FROM call_events GROUP BY state").fetchall())
