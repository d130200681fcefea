"""Session and chat events: rows keyed by ``session_id`` rather than a call.

A Vapi session (``session.*``) carries its own assistant, customer, cost and status; a
chat (``chat.*``) belongs to a session through ``sessionId``, or stands alone when it
has none, in which case the chat id keys the row. Routing hints sit in the session's or
chat's ``metadata`` or in ``assistantOverrides.metadata``.
"""

from __future__ import annotations

from typing import Any

from ingest.mapping.costs import raw_cost
from ingest.mapping.identity import as_uuid, obj, session_id
from ingest.mapping.numbers import money
from ingest.mapping.phone import normalise_number
from ingest.mapping.timing import parse_instant
from ingest.patch import Patch, Source

CHAT_TYPE = "chat"


def _hint(holder: dict[str, Any], key: str) -> str | None:
    for metadata in (obj(holder.get("metadata")), obj(obj(holder.get("assistantOverrides")).get("metadata"))):
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def holder_identity(message: dict[str, Any], holder: dict[str, Any], region: str) -> Patch:
    """Identity shared by session and chat objects."""
    patch = Patch(session_id=session_id(message))
    patch = patch.with_value("assistant_id", as_uuid(holder.get("assistantId")), Source.SESSION)
    patch = patch.with_value("phone_number_id", as_uuid(holder.get("phoneNumberId")), Source.SESSION)
    customer = normalise_number(obj(holder.get("customer")).get("number"), region)
    patch = patch.with_value("customer_number", customer.e164, Source.SESSION)
    patch = patch.with_value("type", CHAT_TYPE, Source.SESSION)
    patch = patch.with_value("client_id", _hint(holder, "client_id"), Source.SESSION)
    return patch.with_value("user_id", _hint(holder, "user_id"), Source.SESSION)


def session_patch(message: dict[str, Any], region: str) -> Patch:
    session = obj(message.get("session"))
    patch = holder_identity(message, session, region)
    patch = patch.with_value("started_at_utc", parse_instant(session.get("createdAt")), Source.SESSION)
    if session.get("status") == "completed":
        patch = patch.with_value("ended_at_utc", parse_instant(session.get("updatedAt")), Source.SESSION)
    cost = session.get("cost")  # an unusable one is kept raw in metadata
    patch = patch.with_value("cost_total", money(cost), Source.SESSION)
    return Patch(patch.call_id, patch.session_id, patch.values, {**patch.metadata, **raw_cost(cost)}, patch.timeline)


def chat_patch(message: dict[str, Any], region: str) -> tuple[Patch, dict[str, Any]]:
    """The chat's identity and its summary for ``metadata.chats``."""
    chat = obj(message.get("chat"))
    patch = holder_identity(message, chat, region)
    patch = patch.with_value("started_at_utc", parse_instant(chat.get("createdAt")), Source.SESSION)
    summary = {"name": chat.get("name"), "created_at": chat.get("createdAt"), "cost": chat.get("cost")}
    return patch, {key: value for key, value in summary.items() if value is not None}
