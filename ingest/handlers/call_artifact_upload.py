"""call.artifact.upload: which artifacts Vapi wrote to the customer's own storage, after the call.

Kept as ``metadata.artifact_uploads`` (artifact type → success); a later upload of the
same type that succeeded outranks one that failed."""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, lifecycle_event, with_metadata
from ingest.mapping.identity import obj
from ingest.patch import Patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    uploads = {
        str(item["type"]): bool(item.get("success"))
        for item in (obj(a) for a in message.get("artifacts") or [])
        if isinstance(item.get("type"), str)
    }
    return with_metadata(lifecycle_event(message, context), artifact_uploads=uploads)
