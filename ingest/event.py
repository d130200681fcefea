"""One received server message, as the worker sees it and as ``call_events`` stores it.

Both processes build events: the worker from each queued message, the web process when
Redis is down and it keeps the delivery in Postgres itself (``Event.row``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.types.json import Jsonb

from ingest.body import clean
from ingest.mapping.event_key import event_key
from ingest.mapping.identity import as_uuid, call_id, indexable, session_id
from ingest.vocabulary import EventState


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

    def row(self, state: EventState, error: str | None = None) -> dict[str, Any]:
        """The ``call_events`` row. Its indexed columns are cut to a length an index can hold
        (an event with a longer id cannot map and fails; its body keeps every character)."""
        raw_call_id = call_id(self.message)
        return {
            "received_at": self.received_at,
            "call_id": as_uuid(raw_call_id) or indexable(raw_call_id),
            "session_id": indexable(session_id(self.message)),
            "message_type": indexable(self.kind),
            "dedupe_key": event_key(self.message),
            "message": _jsonb(self.message),
            "state": state.value,
            "last_error": error,
        }

    def reduced_row(self, state: EventState, error: str | None = None) -> dict[str, Any]:
        """A row that can always be written, for an event whose own ``row`` cannot be.

        The message becomes ``{"type": …, UNSTORABLE_KEY: "<the message as JSON text>"}``
        and the lookup columns are left empty, so nothing in the content can stop the row
        being written; the dedupe key is the event's own.
        """
        text = _json_text(self.message)
        return {
            "received_at": self.received_at,
            "call_id": None,
            "session_id": None,
            "message_type": clean(indexable(self.kind)),
            "dedupe_key": event_key(self.message),
            "message": _jsonb({"type": clean(indexable(self.kind)), UNSTORABLE_KEY: text}),
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
