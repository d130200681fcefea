"""conversation-update: the whole history so far, re-sent on every turn.

Its size grows with the call, so nothing of it is copied: the report brings the final
history, and the raw event stays in ``call_events``."""

from __future__ import annotations

from ingest.handlers.common import call_event

handle = call_event
