"""model-output: one token or tool call of the model's answer; high-volume, identity only."""

from __future__ import annotations

from ingest.handlers.common import call_event

handle = call_event
