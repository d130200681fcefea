"""The worker's unit of work: apply one event, and keep it whatever happens.

A transient failure (database unavailable, deadlock, serialization) is recorded as
pending with its error and raised again so Dramatiq retries it; a permanent one (content
that can never map) is recorded as failed and raised as ``PermanentError``, which the
actor does not retry and Dramatiq dead-letters. Either way the event is in
``call_events``, so the sweeper or an operator can apply it later: should its row be refused
for its content, ``record_failure`` writes a reduced one. Only a database that cannot be
reached leaves the event to Dramatiq alone ("could not record a failed event").
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ingest.apply import record_failure
from ingest.errors import PermanentError, describe, is_retryable
from ingest.event import Event
from ingest.metrics import counters
from ingest.vocabulary import EventState
from worker.group_commit import GroupCommit

log = logging.getLogger("ingest.worker")


def process(group: GroupCommit, event: Event) -> EventState | None:
    """Apply ``event`` through the process's group commit; keep it and re-raise on failure."""
    pool = group.pool
    started = time.perf_counter()
    try:
        state = group.apply(event)
    except Exception as exc:
        permanent = not is_retryable(exc)
        counters.event_failed(event.kind, permanent=permanent, seconds=time.perf_counter() - started)
        try:
            with pool.connection() as conn:
                record_failure(conn, event, exc, permanent=permanent, privacy=group.privacy)
        except Exception as record_error:  # the database itself is down: Dramatiq still has the message
            log.error("could not record a failed event", extra={"error": type(record_error).__name__})
        fields = {"type": event.kind, "error": describe(exc, 500), "permanent": permanent}
        log.warning("event failed", extra=fields)
        if permanent and not isinstance(exc, PermanentError):
            raise PermanentError(str(exc)) from exc
        raise
    elapsed = time.perf_counter() - started
    counters.event_processed(event.kind, state, elapsed)
    log.debug("event applied", extra={"type": event.kind, "state": state, "latency_ms": round(elapsed * 1000, 3)})
    return state


def event_from_body(body: Any, received_at_ms: Any) -> Event:
    """The queued message's arguments as an Event; a malformed message is permanent."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict) or not isinstance(received_at_ms, int):
        raise PermanentError("queued message does not carry a webhook body and a received-at time")
    return Event.from_body(body, received_at_ms)
