"""chat.created: a chat began; it belongs to its session's row (or its own, with no session)."""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, timeline_entry, with_metadata, with_timeline
from ingest.mapping.identity import obj
from ingest.mapping.session import chat_patch
from ingest.patch import Patch


def chat_event(message: dict[str, Any], context: Context, moment: str) -> Patch:
    """The chat's identity, a timeline entry, and ``metadata.chats[id][moment]``."""
    patch, summary = chat_patch(message, context.phone_region, context.received_at)
    chat_id = obj(message.get("chat")).get("id")
    patch = with_timeline(patch, timeline_entry(message, chat=chat_id if isinstance(chat_id, str) else None))
    if isinstance(chat_id, str):
        summary = {**summary, moment: timeline_entry(message).get("at", True)}
        patch = with_metadata(patch, chats={chat_id: summary})
    return patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    return chat_event(message, context, "created")
