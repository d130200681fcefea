"""chat.deleted: a chat was deleted at Vapi; noted in ``metadata.chats``, the row is kept."""

from __future__ import annotations

from typing import Any

from ingest.handlers.chat_created import chat_event
from ingest.handlers.common import Context
from ingest.patch import Patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    return chat_event(message, context, "deleted")
