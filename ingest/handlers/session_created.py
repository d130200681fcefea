"""session.created: a Vapi session began; the row is keyed by the session id (not a call id)."""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, timeline_entry, with_timeline
from ingest.mapping.identity import obj
from ingest.mapping.session import session_patch
from ingest.patch import Patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    status = obj(message.get("session")).get("status")
    entry = timeline_entry(message, status=status if isinstance(status, str) else None)
    return with_timeline(session_patch(message, context.phone_region, context.received_at), entry)
