"""handoff-destination-request: a dynamic handoff asks which assistant takes over (answered by the endpoint)."""

from __future__ import annotations

from ingest.handlers.common import lifecycle_event

handle = lifecycle_event
