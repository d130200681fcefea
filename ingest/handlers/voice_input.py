"""voice-input: text sent to the voice provider for one generation; identity only."""

from __future__ import annotations

from ingest.handlers.common import call_event

handle = call_event
