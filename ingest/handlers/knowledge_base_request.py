"""knowledge-base-request: the assistant asks a custom knowledge base for documents (answered by the endpoint)."""

from __future__ import annotations

from ingest.handlers.common import lifecycle_event

handle = lifecycle_event
