"""Which call or session an event belongs to, and how long an identity may be."""

from __future__ import annotations

import re
import uuid
from typing import Any

from ingest.errors import Unmappable

# The longest identity (session id, chat id, client id, user id) an event may carry. Vapi's
# ids are UUIDs; indexed columns hold these values, and a btree entry cannot exceed about
# 2,700 bytes (255 characters are at most 1,020 bytes of UTF-8).
MAX_ID_CHARS = 255


def indexable(value: str | None) -> str | None:
    """``value`` cut to ``MAX_ID_CHARS``: for call_events' lookup columns (the body keeps it whole)."""
    return value if value is None or len(value) <= MAX_ID_CHARS else value[:MAX_ID_CHARS]


def bounded_id(value: str | None, what: str) -> str | None:
    """``value``, or ``Unmappable`` when it is longer than any identity a row may hold."""
    if value is not None and len(value) > MAX_ID_CHARS:
        raise Unmappable(f"{what} is {len(value)} characters long, more than {MAX_ID_CHARS}")
    return value


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (2024 payloads send ``null``s)."""
    return value if isinstance(value, dict) else {}


# What Vapi sends: a UUID's canonical text already, returned as it is (parsing one and
# writing it out again costs about 3 µs, and an event asks for several).
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def as_uuid(value: Any) -> str | None:
    """The canonical text of a UUID, or None for anything else."""
    if not isinstance(value, str):
        return None
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def call_id(message: dict[str, Any]) -> str | None:
    """Vapi's ``call.id``; session and chat events have none."""
    return _text(obj(message.get("call")).get("id"))


def session_id(message: dict[str, Any]) -> str | None:
    """The Vapi session an event belongs to: the session itself, or the chat's session, or the chat.

    ``session.*`` events carry ``session.id``; ``chat.*`` events carry a ``chat`` whose
    ``sessionId`` links it to a session when there is one, else the chat stands alone.
    """
    session = _text(obj(message.get("session")).get("id"))
    if session:
        return session
    chat = obj(message.get("chat"))
    return _text(chat.get("sessionId")) or _text(chat.get("id"))
