"""What one event says about its session, as data: the handlers' output, the upsert's input.

A patch holds column values, each ranked value with the *source* it came from, metadata
to deep-merge, and timeline entries. The database merges a patch into the row with rules
that make the result independent of order (``ingest_merge_session`` in ``sql/``): a value
from a higher-ranked source replaces a lower one, equal ranks are settled by the value
itself, metadata merges key by key, the timeline is a sorted, bounded union.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson


class Source(StrEnum):
    """Where a value came from; a higher rank wins (``ingest_source_rank`` in ``sql/``)."""

    STRUCTURED = "structured"  # the assistant's own structured analysis (rank 10)
    API = "api"  # a Call object of an ended call, read from Vapi's API (rank 9)
    REPORT = "report"  # the end-of-call report's top-level fields (rank 8)
    SESSION = "session"  # a session or chat object (rank 7)
    CALL = "call"  # the embedded call object, possibly a stale snapshot (rank 6)
    STATUS = "status"  # a status-update message (rank 5)
    MESSAGES = "messages"  # times read off the report's conversation messages (rank 4)
    TRANSCRIPTS = "transcripts"  # built from final transcript events (rank 3)
    TIMESTAMP = "timestamp"  # a report's own timestamp standing in for the call's end (rank 2)
    RECEIVED = "received"  # when a report that says nothing of time reached us (rank 1)
    EVENT = "event"  # identity facts repeated on every event (rank 0)


# A redacted column's original text travels in the patch as a value of its own column,
# sealed before the patch is written (``ingest.privacy``). It has no provenance: the merge
# moves it together with the redacted text it belongs to (``ingest_merge_rules``).
ORIGINALS = {"call_transcript": "call_transcript_original", "call_summary": "call_summary_original"}
_COMPANIONS = frozenset(ORIGINALS.values())


@dataclass(frozen=True)
class Patch:
    call_id: str | None = None
    session_id: str | None = None
    values: dict[str, tuple[Any, Source]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    timeline: tuple[dict[str, Any], ...] = ()

    def with_value(self, column: str, value: Any, source: Source) -> Patch:
        """This patch plus ``column`` = ``value`` (nothing changes when the value is None)."""
        if value is None:
            return self
        return Patch(
            self.call_id, self.session_id, {**self.values, column: (value, source)}, self.metadata, self.timeline
        )

    def with_text(self, column: str, text: str | None, source: Source, redacted: str | None) -> Patch:
        """``column`` = the ``redacted`` text, its original beside it when redaction changed it.

        Every write of a redactable column goes through here, so the redacted text and its
        original always travel together (an unchanged text leaves the original empty).
        """
        if text is None or redacted is None:
            return self
        patch = self.with_value(column, redacted, source)
        if redacted != text:
            patch = patch.with_value(ORIGINALS[column], text, source)
        return patch

    def row(self) -> dict[str, Any]:
        """The patch as a ``user_sessions`` row (JSON-able), provenance inside ``metadata``."""
        row: dict[str, Any] = {"call_id": self.call_id, "session_id": self.session_id, "source": "vapi"}
        provenance: dict[str, str] = {}
        for column, (value, source) in self.values.items():
            if column == "duration":
                row["duration_seconds"] = value
            else:
                row[column] = value
            if column not in _COMPANIONS:
                provenance[column] = source.value
        metadata = dict(self.metadata)
        if provenance:
            metadata["provenance"] = provenance
        row["metadata"] = metadata or None
        row["server_messages"] = {"timeline": list(self.timeline)} if self.timeline else None
        return row

    def to_json(self) -> bytes:
        return orjson.dumps(self.row(), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")
