"""The worker's unit of work: apply one event, and keep it whatever happens.

The actor's path is ``hand_over``: the event goes to the group commit and the worker thread
returns, its message acknowledged once the event is committed (``worker.acks``). ``process``
applies one and waits. A transient failure (database unavailable, deadlock, serialization)
is recorded as pending with its error and handed to Dramatiq, which retries it; a permanent
one (content that can never map) is recorded as failed and handed over as ``PermanentError``,
which the actor does not retry and Dramatiq dead-letters. Either way the event is in
``call_events``, so the sweeper or an operator can apply it later: should its row be refused
for its content, ``record_failure`` writes a reduced one. Only a database that cannot be
reached leaves the event to Dramatiq alone ("could not record a failed event").
"""

from __future__ import annotations

import logging
import time
from typing import Any

from dramatiq.broker import MessageProxy

from ingest.apply import prepare, record_failure
from ingest.errors import PermanentError, describe, is_retryable
from ingest.event import Event
from ingest.metrics import counters
from ingest.vocabulary import EventState
from worker.acks import GatheringConsumer
from worker.group_commit import GroupCommit

log = logging.getLogger("ingest.worker")


def process(group: GroupCommit, event: Event) -> EventState | None:
    """Apply ``event`` through the process's group commit and wait; keep it and re-raise on failure."""
    started = time.perf_counter()
    try:
        state = group.apply(event)
    except Exception as exc:
        error = failed(group, event, exc, started)
        if error is exc:
            raise
        raise error from exc
    applied(event, state, started)
    return state


def hand_over(group: GroupCommit, consumer: GatheringConsumer, message: MessageProxy, event: Event) -> None:
    """Hand ``event`` to the group commit and return; ``message`` is acknowledged once the event is durable.

    The event is mapped and sealed here, in the worker thread. Should that fail, it is
    applied as ``process`` applies it, which raises: Dramatiq sees the error at once. A
    failure at commit reaches Dramatiq's middleware through ``consumer.release``.
    """
    started = time.perf_counter()
    try:
        prepared = prepare(event, group.privacy)
    except Exception:
        process(group, event)  # raises what preparing it raised, the event recorded
        return

    def then(state: EventState | None, error: BaseException | None) -> None:
        if error is None:
            applied(event, state, started)
            consumer.release(message)
        else:
            consumer.release(message, failed(group, event, error, started))

    consumer.hold(message)
    try:
        group.submit(event, prepared, then)
    except BaseException:
        consumer.unhold(message)
        raise


def applied(event: Event, state: EventState | None, started: float) -> None:
    elapsed = time.perf_counter() - started
    counters.event_processed(event.kind, state, elapsed)
    log.debug("event applied", extra={"type": event.kind, "state": state, "latency_ms": round(elapsed * 1000, 3)})


def failed(group: GroupCommit, event: Event, exc: BaseException, started: float) -> BaseException:
    """Keep ``event`` with its error (pending if retryable, else failed); the error for Dramatiq."""
    permanent = not is_retryable(exc)
    counters.event_failed(event.kind, permanent=permanent, seconds=time.perf_counter() - started)
    try:
        with group.pool.connection() as conn:
            record_failure(conn, event, exc, permanent=permanent, privacy=group.privacy)
    except Exception as record_error:  # the database itself is down: Dramatiq still has the message
        log.error("could not record a failed event", extra={"error": type(record_error).__name__})
    fields = {"type": event.kind, "error": describe(exc, 500), "permanent": permanent}
    log.warning("event failed", extra=fields)
    if permanent and not isinstance(exc, PermanentError):
        error = PermanentError(str(exc))
        error.__cause__ = exc
        return error
    return exc


def event_from_body(body: Any, received_at_ms: Any) -> Event:
    """The queued message's arguments as an Event; a malformed message is permanent."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict) or not isinstance(received_at_ms, int):
        raise PermanentError("queued message does not carry a webhook body and a received-at time")
    return Event.from_body(body, received_at_ms)
