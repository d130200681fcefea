"""transfer-update: a transfer happened; kept on the timeline and in ``metadata.transfers``.

``destination`` is a number, SIP URI or assistant; only its type and target are kept
(keyed by when it happened), not the whole transfer plan."""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, call_event, timeline_entry, with_metadata, with_timeline
from ingest.mapping.identity import obj
from ingest.patch import Patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    destination = obj(message.get("destination"))
    kind = destination.get("type") if isinstance(destination.get("type"), str) else None
    target = destination.get("number") or destination.get("sipUri") or destination.get("assistantName")
    entry = timeline_entry(message, destination=kind)
    patch = with_timeline(call_event(message, context), entry)
    transfer = {"type": kind, "target": target if isinstance(target, str) else None}
    return with_metadata(patch, transfers={entry.get("at", "unknown"): transfer} if kind else None)
