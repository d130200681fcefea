"""assistant-request: Vapi asks which assistant takes an inbound call (answered by the endpoint).

The call has no assistant yet, so this event usually cannot create the row: it waits in
``call_events`` and joins the timeline once a later event names the assistant."""

from __future__ import annotations

from ingest.handlers.common import lifecycle_event

handle = lifecycle_event
