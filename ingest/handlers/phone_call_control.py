"""phone-call-control: Vapi hands hang-up or forwarding to the server (``request``)."""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, call_event, timeline_entry, with_timeline
from ingest.patch import Patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    request = message.get("request") if isinstance(message.get("request"), str) else None
    return with_timeline(call_event(message, context), timeline_entry(message, request=request))
