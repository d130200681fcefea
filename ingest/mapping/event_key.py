"""The dedupe key of an event, built from its content.

Vapi sends no event id, so a delivery is identified by what it says: its call (or
session), its type, its timestamp and a digest of its type-specific fields. The shared
envelope (``call``, ``assistant``, ``artifact``, …) is left out: it is large, it may be a
stale snapshot, and the artifact's presigned URLs change on every delivery, so hashing
the whole body would make every retry look new.

The key stored is the SHA-256 (hex) of that composition: 64 characters whatever the event
says, so a 3,000-character ``timestamp`` or ``session.id`` cannot exceed what the unique
index can hold. Migration 0019 rewrote the keys recorded before as the same digest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

from ingest.mapping.identity import call_id, session_id
from ingest.vocabulary import MessageType

# Fields every server message may carry; none of them says which event this is.
ENVELOPE = frozenset(
    {"type", "timestamp", "call", "assistant", "customer", "phoneNumber", "artifact", "assistantVersion", "chat"}
)

# The end-of-call report is sent once per call; a second copy is the same report.
ONCE_PER_CALL = frozenset({MessageType.END_OF_CALL_REPORT})


def _scope(message: dict[str, Any]) -> str:
    call = call_id(message)
    if call:
        return f"call:{call}"
    session = session_id(message)
    return f"session:{session}" if session else "none"


def _timestamp(message: dict[str, Any]) -> str:
    value = message.get("timestamp")
    if isinstance(value, bool) or value is None:
        return "-"
    return str(value)


def _digest(message: dict[str, Any]) -> str:
    specific = {key: value for key, value in message.items() if key not in ENVELOPE}
    if message.get("type") in {MessageType.CHAT_CREATED, MessageType.CHAT_DELETED}:
        specific["chat"] = message.get("chat")
    try:
        encoded = orjson.dumps(specific, option=orjson.OPT_SORT_KEYS, default=str)
    except (TypeError, ValueError):  # nested beyond orjson's 254 levels (queued before the depth bound)
        try:
            encoded = json.dumps(specific, sort_keys=True, default=str).encode()
        except (RecursionError, ValueError):
            encoded = b"unencodable"
    return hashlib.sha256(encoded).hexdigest()[:20]


def composed_key(message: dict[str, Any]) -> str:
    """The readable key (``call:<id>|<type>|<timestamp>|<digest>``), of unbounded length."""
    kind = str(message.get("type"))
    scope = _scope(message)
    if kind in ONCE_PER_CALL and scope != "none":
        return f"{scope}|{kind}"
    return f"{scope}|{kind}|{_timestamp(message)}|{_digest(message)}"


def event_key(message: dict[str, Any]) -> str:
    """A key equal for two deliveries of the same event and different for different events.

    64 hex characters: the SHA-256 of ``composed_key``'s UTF-8 bytes, which is what
    migration 0019 computes in SQL for keys stored before (``sha256(convert_to(key, 'UTF8'))``).
    """
    return hashlib.sha256(composed_key(message).encode("utf-8", "surrogatepass")).hexdigest()
