"""What the ops page shows, read synchronously (the page runs these in a worker thread).

Phone numbers never leave this module whole: only their last digits are shown. A call's
transcript, summary and analysis are read only for its own details view, and recording
links (presigned URLs) are never shown at all.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import redis
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ingest import queries
from ingest.mapping.timing import parse_instant
from ingest.ops import backlog

MASK = "•••"


def mask_phone(value: str | None) -> str:
    """``+64211234567`` → ``•••4567``: the last four characters (three of a short value)."""
    if not value:
        return ""
    keep = 4 if len(value) >= 8 else 3 if len(value) >= 6 else 0
    return MASK + value[-keep:] if keep else MASK


def _status(started: dt.datetime | None, ended: dt.datetime | None) -> str:
    if ended is not None:
        return "ended"
    return "in progress" if started is not None else "not started"


@dataclass(frozen=True)
class CallSummary:
    """One ``user_sessions`` row as the recent-calls list shows it."""

    key: str  # call id, else session id: what /ops/calls/{key} takes
    call_id: str | None
    session_id: str | None
    type: str | None
    customer: str
    business: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    ended_reason: str | None
    duration_seconds: decimal.Decimal | None
    cost_total: decimal.Decimal | None
    outcome: str | None
    sentiment: str | None
    created_at: dt.datetime | None

    @property
    def status(self) -> str:
        return _status(self.started_at, self.ended_at)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CallSummary:
        call_id = str(row["call_id"]) if row["call_id"] is not None else None
        return cls(
            key=call_id or str(row["session_id"]),
            call_id=call_id,
            session_id=row["session_id"],
            type=row["type"],
            customer=mask_phone(row["customer_number"]),
            business=mask_phone(row["business_number"]),
            started_at=row["started_at_utc"],
            ended_at=row["ended_at_utc"],
            ended_reason=row["ended_reason"],
            duration_seconds=row["duration_seconds"],
            cost_total=row["cost_total"],
            outcome=row["call_outcome"],
            sentiment=row["sentiment"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True)
class CallDetail:
    """The resulting row of one call, for its details view."""

    summary: CallSummary
    fields: dict[str, Any]  # the remaining columns, shown as they are
    call_summary: str | None
    transcript: str | None
    keywords: list[str]
    timeline: list[dict[str, Any]]
    provenance: dict[str, Any]
    costs: list[dict[str, Any]]
    analysis: str | None  # pretty JSON
    recordings: list[str] = field(default_factory=list)  # which links exist; never the links


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def call_detail_from_row(row: dict[str, Any]) -> CallDetail:
    metadata = _as_dict(row["metadata"])
    analysis = metadata.get("analysis")
    return CallDetail(
        summary=CallSummary.from_row(row),
        fields={
            "assistant_id": row["assistant_id"],
            "phone_number_id": row["phone_number_id"],
            "client_id": row["client_id"],
            "user_id": row["user_id"],
            "source": row["source"],
            "duration_minutes": row["duration_minutes"],
            "cost_source": metadata.get("cost_source"),
        },
        call_summary=row["call_summary"],
        transcript=row["call_transcript"],
        keywords=[str(k) for k in row["keywords"] or []],
        timeline=[e for e in _as_list(_as_dict(row["server_messages"]).get("timeline")) if isinstance(e, dict)],
        provenance=_as_dict(metadata.get("provenance")),
        costs=[c for c in _as_list(metadata.get("costs")) if isinstance(c, dict)],
        analysis=orjson.dumps(analysis, option=orjson.OPT_INDENT_2).decode() if analysis else None,
        recordings=sorted(key for key, value in _as_dict(metadata.get("recordings")).items() if value),
    )


@dataclass(frozen=True)
class CallEvent:
    """One event of a call's timeline, whatever its state; ``error`` is the whole last error."""

    id: int
    received_at: dt.datetime
    event_at: dt.datetime | None  # the message's own timestamp
    message_type: str
    status: str | None
    call_id: str | None
    session_id: str | None
    state: str
    attempts: int
    error: str | None
    applied_at: dt.datetime | None

    @property
    def key(self) -> str | None:
        return self.call_id or self.session_id


def call_events(conn: psycopg.Connection[Any], key: str, limit: int) -> list[CallEvent]:
    """Every event recorded for a call (or session) id, in arrival order, at most ``limit``."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.OPS_EVENTS_OF_KEY, {"key": key, "limit": limit})
        rows = cur.fetchall()
    return [
        CallEvent(
            id=row["id"],
            received_at=row["received_at"],
            event_at=parse_instant(row["event_timestamp"]),
            message_type=row["message_type"],
            status=row["status"],
            call_id=row["call_id"],
            session_id=row["session_id"],
            state=row["state"],
            attempts=row["attempts"],
            error=row["last_error"],
            applied_at=row["applied_at"],
        )
        for row in rows
    ]


def recent_calls(conn: psycopg.Connection[Any], limit: int = 20) -> list[CallSummary]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.OPS_RECENT_SESSIONS, {"limit": limit})
        return [CallSummary.from_row(row) for row in cur.fetchall()]


def call_detail(conn: psycopg.Connection[Any], key: str) -> CallDetail | None:
    """The row whose call id (or, for chat sessions, session id) is ``key``."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.OPS_SESSION_BY_KEY, {"key": key})
        row = cur.fetchone()
    return call_detail_from_row(row) if row is not None else None


def read_stats(pool: ConnectionPool, client: redis.Redis, namespace: str, queue_name: str) -> dict[str, Any]:
    """The numbers of ``/ops/stats.json``; a source that cannot be read is reported, not raised."""
    taken = backlog.snapshot(client, pool.connection, namespace, [queue_name])
    stats = taken.as_dict()
    # The page names what is missing, not why: the reason can quote a server's address.
    stats["errors"] = [f"{source}: {type(exc).__name__}" for source, exc in taken.failures.items()]
    return stats
