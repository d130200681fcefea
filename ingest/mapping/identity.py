"""Which call or session an event belongs to."""

from __future__ import annotations

from typing import Any


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def call_id(message: dict[str, Any]) -> str | None:
    """Vapi's ``call.id``; session and chat events have none."""
    return _text(_dict(message.get("call")).get("id"))


def session_id(message: dict[str, Any]) -> str | None:
    """The Vapi session an event belongs to: the session itself, or the chat's session, or the chat.

    ``session.*`` events carry ``session.id``; ``chat.*`` events carry a ``chat`` whose
    ``sessionId`` links it to a session when there is one, else the chat stands alone.
    """
    session = _text(_dict(message.get("session")).get("id"))
    if session:
        return session
    chat = _dict(message.get("chat"))
    return _text(chat.get("sessionId")) or _text(chat.get("id"))
