"""One received server message, as the worker sees it and as ``call_events`` stores it.

Both processes build events: the worker from each queued message, the web process when
Redis is down and it keeps the delivery in Postgres itself (``Event.row``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.types.json import Jsonb

from ingest.mapping.event_key import event_key
from ingest.mapping.identity import as_uuid, call_id, session_id
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
        raw_call_id = call_id(self.message)
        return {
            "received_at": self.received_at,
            "call_id": as_uuid(raw_call_id) or raw_call_id,
            "session_id": session_id(self.message),
            "message_type": self.kind,
            "dedupe_key": event_key(self.message),
            "message": _jsonb(self.message),
            "state": state.value,
            "last_error": error,
        }
