"""language-change-detected (and its legacy name language-changed): the caller switched language.

The detected languages are kept in ``metadata.languages`` keyed by when they were
detected, so every change survives whatever order the events arrive in."""

from __future__ import annotations

from typing import Any

from ingest.handlers.common import Context, call_event, timeline_entry, with_metadata, with_timeline
from ingest.patch import Patch


def handle(message: dict[str, Any], context: Context) -> Patch:
    language = message.get("language") if isinstance(message.get("language"), str) else None
    entry = timeline_entry(message, language=language)
    patch = with_timeline(call_event(message, context), entry)
    return with_metadata(patch, languages={entry.get("at", "unknown"): language} if language else None)
