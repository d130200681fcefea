"""Reading calls (``user_sessions`` rows) for operators: the recent ones, and one call whole.

- ``list_calls(conn, *, since=None, client=None, assistant=None, outcome=None, limit=50)``
  → ``list[CallListing]``: newest started first (a row that has no start yet is placed by
  when it was created), narrowed to one client, one assistant, one outcome, rows started
  (or created) at or after ``since``. A listing holds the row's key fields and the
  customer's number masked; never a transcript, a summary or a raw body.
- ``get_call(conn, call_id)`` → ``CallDetail`` or None: every column of the row as stored
  (numbers whole, transcript and summary included), its ``*_nz`` times as the local
  wall-clock times they hold with the zone's name, ``metadata.provenance`` (the source of
  each value) and its newest ``EVENTS_SHOWN`` events in arrival order, whatever their state.

Both read the view ``user_sessions_local`` (migration 0018), which shows each ``*_nz``
column as a plain local timestamp next to the zone it is in.
"""

from __future__ import annotations

import decimal
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest import queries
from ingest.mapping.identity import as_uuid
from ingest.ops import events
from ingest.ops.masking import mask_phone
from ingest.vocabulary import EventState

Connection = psycopg.Connection[Any]

EVENTS_SHOWN = 200
PHONE_COLUMNS = ("business_number", "customer_number")
LOCAL_COLUMNS = ("started_at_local", "ended_at_local", "local_timezone")  # the view's own


@dataclass(frozen=True)
class CallListing:
    """One ``user_sessions`` row as ``ingest calls list`` shows it; ``customer`` is masked."""

    call_id: str | None
    session_id: str | None
    started_at: datetime | None  # started_at_utc
    started_at_local: datetime | None  # started_at_nz as the wall-clock time it holds, in local_timezone
    local_timezone: str
    duration_seconds: decimal.Decimal | None
    cost_total: decimal.Decimal | None
    client_id: str | None
    assistant_id: str
    type: str | None
    outcome: str | None
    ended_reason: str | None
    customer: str
    created_at: datetime | None

    @property
    def key(self) -> str:
        """The call id, else the session id (a chat session's row has no call id)."""
        return self.call_id or str(self.session_id)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: times as ISO 8601 (the local one without offset), amounts as strings."""
        return {key: _plain(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class CallDetail:
    """One call whole: ``row`` holds every column of ``user_sessions`` as stored, in table order."""

    row: dict[str, Any]
    started_at_local: datetime | None
    ended_at_local: datetime | None
    local_timezone: str
    provenance: dict[str, str]
    events: list[events.EventSummary]  # arrival order, the newest EVENTS_SHOWN

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: times as ISO 8601 (the local ones without offset), amounts and ids as strings."""
        return {
            "row": {key: _plain(value) for key, value in self.row.items()},
            "local": {
                "timezone": self.local_timezone,
                "started_at_local": _plain(self.started_at_local),
                "ended_at_local": _plain(self.ended_at_local),
            },
            "provenance": self.provenance,
            "events": [event.as_dict() for event in self.events],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return value


def list_calls(
    conn: Connection,
    *,
    since: datetime | None = None,
    client: str | None = None,
    assistant: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
) -> list[CallListing]:
    """Recent calls, newest started first, at most ``limit``; ``assistant`` must be a UUID."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    assistant_id = as_uuid(assistant) if assistant is not None else None
    if assistant is not None and assistant_id is None:
        raise ValueError(f"assistant {assistant!r} is not a UUID")
    params = {
        "since": since,
        "client": client.strip() if client else None,
        "assistant": assistant_id,
        "outcome": outcome.strip().lower() if outcome else None,  # stored lower-cased (the analytics trigger)
        "limit": limit,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(queries.CALLS_LIST, params).fetchall()
    return [
        CallListing(
            call_id=row["call_id"],
            session_id=row["session_id"],
            started_at=row["started_at_utc"],
            started_at_local=row["started_at_local"],
            local_timezone=row["local_timezone"],
            duration_seconds=row["duration_seconds"],
            cost_total=row["cost_total"],
            client_id=row["client_id"],
            assistant_id=row["assistant_id"],
            type=row["type"],
            outcome=row["call_outcome"],
            ended_reason=row["ended_reason"],
            customer=mask_phone(row["customer_number"]),
            created_at=row["created_at"],
        )
        for row in rows
    ]


def get_call(conn: Connection, call_id: str) -> CallDetail | None:
    """The row of ``call_id`` (a UUID, any case), its provenance and its events; None if there is no row."""
    canonical = as_uuid(call_id)
    if canonical is None:
        raise ValueError(f"call id {call_id!r} is not a UUID")
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(queries.CALL_BY_ID, {"call_id": canonical}).fetchone()
    if found is None:
        return None
    row = {key: value for key, value in found.items() if key not in LOCAL_COLUMNS}
    metadata = row["metadata"] if isinstance(row["metadata"], dict) else {}
    provenance = metadata.get("provenance")
    recent = events.list_events(conn, states=list(EventState), call=canonical, limit=EVENTS_SHOWN)
    return CallDetail(
        row=row,
        started_at_local=found["started_at_local"],
        ended_at_local=found["ended_at_local"],
        local_timezone=found["local_timezone"],
        provenance={str(k): str(v) for k, v in provenance.items()} if isinstance(provenance, dict) else {},
        events=recent[::-1],
    )


__all__ = ["EVENTS_SHOWN", "PHONE_COLUMNS", "CallDetail", "CallListing", "get_call", "list_calls"]
