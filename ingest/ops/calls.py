"""Reading calls (``user_sessions`` rows) for operators: the recent ones, and one call whole.

- ``list_calls(conn, *, since=None, client=None, assistant=None, outcome=None, limit=50)``
  → ``list[CallListing]``: newest started first (a row that has no start yet is placed by
  when it was created), narrowed to one client, one assistant, one outcome, rows started
  (or created) at or after ``since``. A listing holds the row's key fields and the
  customer's number masked; never a transcript, a summary or a raw body.
- ``get_call(conn, call_id)`` → ``CallDetail`` or None: every column of the row as stored
  (numbers whole, sealed values sealed), its ``*_nz`` times as the local wall-clock times
  they hold with the zone's name, ``metadata.provenance`` (the source of each value) and its
  newest ``EVENTS_SHOWN`` events in arrival order, whatever their state. What a front shows
  is one of two views of it:
  - ``detail.hidden(region)``: personal data hidden (``ingest.ops.reveal``): numbers masked,
    transcript, summary, keywords, metadata and event errors redacted and masked, sealed
    values named by their key (``sealed (key k…)``), recording links left out;
  - ``detail.revealed_with(privacy)``: the row as stored with its sealed values opened (the
    original transcript and summary, raw numbers), for a reveal made with a reason;
    ``KeyUnavailable`` / ``SealError`` (naming the key) when one does not open.

- ``export_customer(conn, numbers, privacy, *, client=None)``: every row of one caller,
  revealed, with its events' messages opened: the answer to an access request
  (``ingest calls export``, which records it).

All read the view ``user_sessions_local`` (migration 0018), which shows each ``*_nz``
column as a plain local timestamp next to the zone it is in.
"""

from __future__ import annotations

import dataclasses
import decimal
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest import queries
from ingest.mapping.identity import as_uuid
from ingest.ops import events
from ingest.ops.masking import mask_phone
from ingest.ops.reveal import hidden_json, hidden_text, sealed_label
from ingest.patch import ORIGINALS
from ingest.privacy import RAW_NUMBERS, Privacy
from ingest.vocabulary import EventState

Connection = psycopg.Connection[Any]

EVENTS_SHOWN = 200
PHONE_COLUMNS = ("business_number", "customer_number")
TEXT_COLUMNS = ("call_summary", "call_transcript", "call_outcome")  # free text: hidden unless revealed
JSON_COLUMNS = ("metadata", "server_messages")
RECORDINGS = "recordings"  # metadata: recording links, which grant access to the audio
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
    revealed: bool = False  # the sealed values are opened

    def hidden(self, region: str) -> CallDetail:
        """This call with its personal data hidden: what every front shows unless asked to reveal."""
        if self.revealed:
            raise ValueError("hide the call as stored, not once revealed")
        row = {column: _hidden(column, value, region) for column, value in self.row.items()}
        errors = [dataclasses.replace(e, error=hidden_text(e.error, region) if e.error else None) for e in self.events]
        return dataclasses.replace(self, row=row, events=errors, revealed=False)

    def revealed_with(self, privacy: Privacy) -> CallDetail:
        """This call with its sealed values opened; ``KeyUnavailable`` or ``SealError`` naming the key."""
        return dataclasses.replace(self, row=privacy.open_row(self.row), revealed=True)

    def original(self, column: str) -> str | None:
        """The original text of ``call_transcript`` or ``call_summary`` once revealed (the column
        itself when its original is NULL: redaction changed nothing)."""
        if not self.revealed:
            raise ValueError("the originals are shown only once revealed")
        opened = self.row.get(ORIGINALS[column])
        return opened if opened is not None else self.row.get(column)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: times as ISO 8601 (the local ones without offset), amounts and ids as strings."""
        return {
            "revealed": self.revealed,
            "row": {key: _plain(value) for key, value in self.row.items()},
            "local": {
                "timezone": self.local_timezone,
                "started_at_local": _plain(self.started_at_local),
                "ended_at_local": _plain(self.ended_at_local),
            },
            "provenance": self.provenance,
            "events": [event.as_dict() for event in self.events],
        }


_SEALED_COLUMNS = frozenset(ORIGINALS.values())


def _hidden(column: str, value: Any, region: str) -> Any:
    """One column as it is shown without a reveal."""
    if value is None:
        return None
    if column in PHONE_COLUMNS:
        return mask_phone(value)
    if column in _SEALED_COLUMNS:
        return sealed_label(value)
    if column in TEXT_COLUMNS:
        return hidden_text(value, region)
    if column == "keywords":
        return [hidden_text(str(keyword), region) for keyword in value]
    if column in JSON_COLUMNS:
        if column == "metadata" and isinstance(value, dict):
            return _hidden_metadata(value, region)
        return hidden_json(value, region)
    return value


def _hidden_metadata(metadata: dict[str, Any], region: str) -> dict[str, Any]:
    """``metadata`` hidden; sealed raw numbers named by their key, recording links left out."""
    hidden: dict[str, Any] = hidden_json(
        {key: value for key, value in metadata.items() if key not in (RAW_NUMBERS, RECORDINGS)}, region
    )
    raw = metadata.get(RAW_NUMBERS)
    if isinstance(raw, dict):
        hidden[RAW_NUMBERS] = {key: sealed_label(str(value)) for key, value in raw.items()}
    recordings = metadata.get(RECORDINGS)
    if isinstance(recordings, dict):
        hidden[RECORDINGS] = {key: "(link not shown)" for key, value in recordings.items() if value}
    return hidden


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


def export_customer(
    conn: Connection, numbers: Sequence[str], privacy: Privacy, *, client: str | None = None
) -> list[dict[str, Any]]:
    """Everything kept about a caller (an access request): each row whose ``customer_number`` is one of
    ``numbers`` (``ingest.ops.erase.customer_numbers``), revealed, with its events' messages opened.

    JSON-able; ``KeyUnavailable`` or ``SealError`` naming the key when a sealed value does not open.
    """
    params = {"numbers": list(numbers), "client": client.strip() if client else None}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(queries.CUSTOMER_SESSIONS, params).fetchall()
        exported = []
        for found in rows:
            row = privacy.open_row({key: value for key, value in found.items() if key not in LOCAL_COLUMNS})
            keys = {"call_id": str(row["call_id"]) if row["call_id"] else None, "session_id": row["session_id"]}
            kept = cur.execute(queries.EXPORT_EVENTS, keys).fetchall()
            exported.append(
                {
                    "row": {key: _plain(value) for key, value in row.items()},
                    "local": {
                        "timezone": found["local_timezone"],
                        "started_at_local": _plain(found["started_at_local"]),
                        "ended_at_local": _plain(found["ended_at_local"]),
                    },
                    "events": [
                        {
                            "id": event["id"],
                            "received_at": _plain(event["received_at"]),
                            "message_type": event["message_type"],
                            "state": event["state"],
                            "error": event["last_error"],
                            "message": privacy.open_message(event["message"], event["body"], event["envelope"]),
                        }
                        for event in kept
                    ],
                }
            )
    return exported


__all__ = [
    "EVENTS_SHOWN",
    "PHONE_COLUMNS",
    "TEXT_COLUMNS",
    "CallDetail",
    "CallListing",
    "export_customer",
    "get_call",
    "list_calls",
]
