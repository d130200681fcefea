"""hang: the assistant is stalling (a slow model, voice or tool server) — worth a timeline entry."""

from __future__ import annotations

from ingest.handlers.common import lifecycle_event

handle = lifecycle_event
