"""speech-update: someone started or stopped speaking (``role``, ``turn``); high-volume, identity only."""

from __future__ import annotations

from ingest.handlers.common import call_event

handle = call_event
