"""function-call: the legacy single-tool request (answered by the endpoint); recorded on the timeline."""

from __future__ import annotations

from ingest.handlers.common import lifecycle_event

handle = lifecycle_event
