"""user-interrupted: the caller spoke over the assistant (optional ``turnId``); identity only."""

from __future__ import annotations

from ingest.handlers.common import call_event

handle = call_event
