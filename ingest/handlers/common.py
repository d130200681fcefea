"""Pieces every handler uses: the context, the call's identity, a timeline entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest.mapping.call import call_identity
from ingest.mapping.redaction import redact
from ingest.mapping.timing import parse_instant
from ingest.patch import Patch


@dataclass(frozen=True)
class Context:
    """What a handler may know besides the message: when it arrived, how to read numbers,
    whether personal data in text is redacted (``ingest.mapping.redaction``)."""

    received_at: datetime
    phone_region: str = "NZ"
    redact: bool = True


Handler = Callable[[dict[str, Any], Context], Patch]


def redacted(text: str | None, context: Context) -> str | None:
    """``text`` with personal data replaced by placeholders, unless redaction is off."""
    if text is None or not context.redact:
        return text
    return redact(text, context.phone_region)


def redacted_strings(value: Any, context: Context) -> Any:
    """``value`` (JSON) with every string in it redacted: free-form analysis output kept in metadata."""
    if not context.redact:
        return value
    if isinstance(value, str):
        return redact(value, context.phone_region)
    if isinstance(value, dict):
        return {key: redacted_strings(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted_strings(item, context) for item in value]
    return value


def iso(instant: datetime | None) -> str | None:
    """Millisecond ISO-8601 in UTC, the form timeline entries sort by."""
    if instant is None:
        return None
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def timeline_entry(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``{"at", "type", …}`` for the row's timeline; ``at`` is the message's own timestamp.

    The received time is deliberately not used: it differs between deliveries of the same
    event, and the row must not depend on which delivery was applied.
    """
    entry: dict[str, Any] = {"type": message.get("type")}
    at = iso(parse_instant(message.get("timestamp")))
    if at:
        entry["at"] = at
    entry.update({key: value for key, value in fields.items() if value is not None})
    return entry


def with_timeline(patch: Patch, entry: dict[str, Any]) -> Patch:
    return Patch(patch.call_id, patch.session_id, patch.values, patch.metadata, (*patch.timeline, entry))


def with_metadata(patch: Patch, **fields: Any) -> Patch:
    present = {key: value for key, value in fields.items() if value not in (None, {}, [])}
    return Patch(patch.call_id, patch.session_id, patch.values, {**patch.metadata, **present}, patch.timeline)


def call_event(message: dict[str, Any], context: Context) -> Patch:
    """Identity only: the event proves the call exists and who is on it."""
    return call_identity(message, context.phone_region)


def lifecycle_event(message: dict[str, Any], context: Context) -> Patch:
    """Identity plus an entry on the row's timeline."""
    return with_timeline(call_identity(message, context.phone_region), timeline_entry(message))
