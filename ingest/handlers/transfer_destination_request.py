"""transfer-destination-request: the model wants to transfer and asks where (answered by the endpoint)."""

from __future__ import annotations

from ingest.handlers.common import lifecycle_event

handle = lifecycle_event
