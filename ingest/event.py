"""One received server message, as the worker sees it and as ``call_events`` stores it.

Both processes build events: the worker from each queued message, the web process when
Redis is down and it keeps the delivery in Postgres itself (``Event.row``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from psycopg.types.json import Jsonb

from ingest.body import clean
from ingest.mapping.event_key import event_key
from ingest.mapping.identity import as_uuid, call_id, indexable, session_id
from ingest.mapping.timing import parse_instant
from ingest.vocabulary import TRANSCRIPT_TYPES, EventState, MessageType

if TYPE_CHECKING:
    from ingest.privacy import Privacy


def is_final_transcript(message: dict[str, Any]) -> bool:
    """A final transcript event: what a transcript is rebuilt from when no report brings one."""
    kind = message.get("type")
    return kind in TRANSCRIPT_TYPES and (kind != MessageType.TRANSCRIPT or message.get("transcriptType") == "final")


def clear_columns(message: dict[str, Any]) -> dict[str, Any]:
    """What the SQL reads of a message, kept in clear beside its sealed body (migration 0020):
    whether it is a final transcript, a status-update's status, the message's own timestamp."""
    status = message.get("status") if message.get("type") == MessageType.STATUS_UPDATE else None
    return {
        "final_transcript": is_final_transcript(message),
        "status": indexable(status) if isinstance(status, str) else None,
        "event_at": parse_instant(message.get("timestamp")),
    }


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: orjson.dumps(v).decode())


@dataclass(frozen=True)
class Event:
    """One received server message, as the worker sees it."""

    message: dict[str, Any]
    received_at: datetime

    @classmethod
    def from_body(cls, body: dict[str, Any], received_at_ms: int) -> Event:
        """The body's ``message``; a ``call`` sent beside it (2024 bodies) is folded into it."""
        message: dict[str, Any] = body["message"]
        if isinstance(body.get("call"), dict) and not isinstance(message.get("call"), dict):
            message = {**message, "call": body["call"]}
        return cls(message, datetime.fromtimestamp(received_at_ms / 1000, UTC))

    @property
    def kind(self) -> str:
        return str(self.message.get("type"))

    @property
    def key(self) -> str:
        """The row this event belongs to (call id, else session id), for ordering batches."""
        return call_id(self.message) or session_id(self.message) or ""

    def row(
        self, state: EventState, privacy: Privacy, error: str | None = None, *, with_envelope: bool = False
    ) -> dict[str, Any]:
        """The ``call_events`` row: the message sealed (or plain), the clear columns the SQL
        reads of it. Indexed columns are cut to a length an index can hold (an event with a
        longer id cannot map and fails; its body keeps every character).

        ``with_envelope`` seals the message against its call's envelope (``Privacy.seal_event``):
        ``envelope_id`` and ``envelope`` then name the ``call_envelopes`` row the writer must
        keep with it (``ingest_record_and_apply`` does). Otherwise, and for an event without
        one, both are None and the body holds the message alone."""
        raw_call_id = call_id(self.message)
        if with_envelope:
            sealed = privacy.seal_event(self.message)
            body, envelope = sealed.body, sealed.envelope
        else:
            body, envelope = privacy.seal_message(self.message), None
        return {
            "received_at": self.received_at,
            "call_id": as_uuid(raw_call_id) or indexable(raw_call_id),
            "session_id": indexable(session_id(self.message)),
            "message_type": indexable(self.kind),
            "dedupe_key": event_key(self.message),
            "message": None if body is not None else _jsonb(self.message),
            "body": body,
            "envelope_id": envelope.id if envelope else None,
            "envelope": envelope.body if envelope else None,
            **clear_columns(self.message),
            "state": state.value,
            "last_error": error,
        }

    def reduced_row(self, state: EventState, privacy: Privacy, error: str | None = None) -> dict[str, Any]:
        """A row that can always be written, for an event whose own ``row`` cannot be.

        The message becomes ``{"type": …, UNSTORABLE_KEY: "<the message as JSON text>"}``
        and the lookup columns are left empty, so nothing in the content can stop the row
        being written; the dedupe key is the event's own.
        """
        kept = {"type": clean(indexable(self.kind)), UNSTORABLE_KEY: _json_text(self.message)}
        body = privacy.seal_message(kept)
        return {
            "received_at": self.received_at,
            "call_id": None,
            "session_id": None,
            "message_type": kept["type"],
            "dedupe_key": event_key(self.message),
            "message": None if body is not None else _jsonb(kept),
            "body": body,
            "envelope_id": None,
            "envelope": None,
            "final_transcript": False,
            "status": None,
            "event_at": None,
            "state": state.value,
            "last_error": error,
        }


# Where a reduced row (``Event.reduced_row``) keeps the original message, as JSON text.
UNSTORABLE_KEY = "unstorable_message_json"


def _json_text(message: dict[str, Any]) -> str:
    """``message`` as JSON text with only ASCII in it (no U+0000, no lone surrogate can break it)."""
    try:
        return orjson.dumps(message).decode()
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(message, ensure_ascii=True, default=str)
    except (RecursionError, TypeError, ValueError):
        return json.dumps(repr(message)[:1_000_000])  # nested too deep for any encoder
