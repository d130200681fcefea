"""call.deleted: Vapi deleted the call (possibly days after it ended); our row is kept for billing."""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, lifecycle_event, timeline_entry, with_metadata
from ingest.patch import Patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    at = timeline_entry(message).get("at")
    return with_metadata(lifecycle_event(message, context), deletion={"deleted": at or True})
