"""Session and chat events: rows keyed by ``session_id`` rather than a call.

A Vapi session (``session.*``) carries its own assistant, customer, cost and status; a
chat (``chat.*``) belongs to a session through ``sessionId``, or stands alone when it
has none, in which case the chat id keys the row. Routing hints sit in the session's or
chat's ``metadata`` or in ``assistantOverrides.metadata``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.mapping.costs import raw_cost
from ingest.mapping.identity import as_uuid, bounded_id, obj, session_id
from ingest.mapping.numbers import money
from ingest.mapping.phone import normalise_number
from ingest.mapping.timing import plausible_instant
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
    patch = Patch(session_id=bounded_id(session_id(message), "the session id"))
    patch = patch.with_value("assistant_id", as_uuid(holder.get("assistantId")), Source.SESSION)
    patch = patch.with_value("phone_number_id", as_uuid(holder.get("phoneNumberId")), Source.SESSION)
    customer = normalise_number(obj(holder.get("customer")).get("number"), region)
    patch = patch.with_value("customer_number", customer.e164, Source.SESSION)
    patch = patch.with_value("type", CHAT_TYPE, Source.SESSION)
    patch = patch.with_value("client_id", bounded_id(_hint(holder, "client_id"), "metadata.client_id"), Source.SESSION)
    return patch.with_value("user_id", bounded_id(_hint(holder, "user_id"), "metadata.user_id"), Source.SESSION)


def session_patch(message: dict[str, Any], region: str, received_at: datetime) -> Patch:
    """The session's row; implausible times go to ``metadata.implausible_times`` (``timing``)."""
    session = obj(message.get("session"))
    patch = holder_identity(message, session, region)
    patch, created = plausible_instant(patch, "session.createdAt", session.get("createdAt"), received_at)
    patch = patch.with_value("started_at_utc", created, Source.SESSION)
    if session.get("status") == "completed":
        patch, updated = plausible_instant(patch, "session.updatedAt", session.get("updatedAt"), received_at)
        patch = patch.with_value("ended_at_utc", updated, Source.SESSION)
    cost = session.get("cost")  # an unusable one is kept raw in metadata
    patch = patch.with_value("cost_total", money(cost), Source.SESSION)
    return Patch(patch.call_id, patch.session_id, patch.values, {**patch.metadata, **raw_cost(cost)}, patch.timeline)


def chat_patch(message: dict[str, Any], region: str, received_at: datetime) -> tuple[Patch, dict[str, Any]]:
    """The chat's identity and its summary for ``metadata.chats``."""
    chat = obj(message.get("chat"))
    patch = holder_identity(message, chat, region)
    patch, created = plausible_instant(patch, "chat.createdAt", chat.get("createdAt"), received_at)
    patch = patch.with_value("started_at_utc", created, Source.SESSION)
    summary = {"name": chat.get("name"), "created_at": chat.get("createdAt"), "cost": chat.get("cost")}
    return patch, {key: value for key, value in summary.items() if value is not None}
