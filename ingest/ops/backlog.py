"""What the queue and the event log hold right now: the numbers every ops view shows.

Dramatiq's Redis broker keeps, per queue, a list of ready message ids (``<ns>:<q>``), a
hash of every message not yet acknowledged (``<ns>:<q>.msgs``: ready and fetched), a delay
queue with the same pair of keys (``<ns>:<q>.DQ``; retries wait there until their eta,
held by a worker) and a dead-letter sorted set with its hash (``<ns>:<q>.XQ``). So, read in
one atomic pipeline:

- ready     = length of the list;
- in flight = messages in the hash but not in the list (fetched, not yet acknowledged):
              being applied, but also prefetched and held in a worker's memory (Dramatiq
              fetches up to 2 × threads per worker process ahead), or held by a dead worker;
- delayed   = messages in the delay queue's hash (waiting or held for a retry);
- dead      = members of the dead-letter set;
- oldest    = age of the message at the head of the list (the next one a worker takes):
              only the ready list is looked at, so messages in flight or delayed, however
              old, do not count.

From ``call_events``: how many events are pending, waiting or failed (failures grouped by
error), and how many were applied in the last minute.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import psycopg
import redis

from ingest import queries

ERROR_GROUPS = 10


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int
    in_flight: int
    delayed: int
    dead: int
    oldest_age_s: float | None  # None when nothing is ready

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErrorGroup:
    error: str
    count: int


@dataclass(frozen=True)
class EventStats:
    pending: int
    waiting: int
    failed: int
    failed_by_error: tuple[ErrorGroup, ...]
    applied_last_minute: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_keys(namespace: str, queue_name: str) -> dict[str, str]:
    base = f"{namespace}:{queue_name}"
    return {
        "ready": base,
        "messages": f"{base}.msgs",
        "delayed": f"{base}.DQ",
        "delayed_messages": f"{base}.DQ.msgs",
        "dead": f"{base}.XQ",
        "dead_messages": f"{base}.XQ.msgs",
    }


def _timestamp_ms(raw: bytes | str | None) -> int | None:
    """The ``message_timestamp`` of a stored Dramatiq message, or None if unreadable."""
    if raw is None:
        return None
    try:
        stamp = orjson.loads(raw).get("message_timestamp")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return stamp if isinstance(stamp, int) else None


def queue_stats(
    client: redis.Redis, namespace: str, queue_names: Sequence[str], *, now_ms: int | None = None
) -> list[QueueStats]:
    """One ``QueueStats`` per queue, each read in one MULTI/EXEC."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    stats = []
    for name in queue_names:
        keys = queue_keys(namespace, name)
        pipe = client.pipeline(transaction=True)
        pipe.llen(keys["ready"])
        pipe.hlen(keys["messages"])
        pipe.hlen(keys["delayed_messages"])
        pipe.zcard(keys["dead"])
        pipe.lindex(keys["ready"], 0)
        ready, held, delayed, dead, head = pipe.execute()
        oldest = _timestamp_ms(client.hget(keys["messages"], head)) if head is not None else None
        stats.append(
            QueueStats(
                name=name,
                ready=ready,
                in_flight=max(held - ready, 0),
                delayed=delayed,
                dead=dead,
                oldest_age_s=None if oldest is None else max(now_ms - oldest, 0) / 1000,
            )
        )
    return stats


def event_stats(conn: psycopg.Connection[Any]) -> EventStats:
    """Counts from ``call_events``; the failed groups are the ``ERROR_GROUPS`` largest."""
    with conn.cursor() as cur:
        cur.execute(queries.EVENT_STATE_COUNTS)
        counts = {state: count for state, count in cur.fetchall()}
        cur.execute(queries.FAILED_EVENTS_BY_ERROR, {"limit": ERROR_GROUPS})
        groups = tuple(ErrorGroup(error or "(no error recorded)", count) for error, count in cur.fetchall())
        cur.execute(queries.APPLIED_SINCE, {"seconds": 60})
        row = cur.fetchone()
    return EventStats(
        pending=counts.get("pending", 0),
        waiting=counts.get("waiting", 0),
        failed=counts.get("failed", 0),
        failed_by_error=groups,
        applied_last_minute=row[0] if row else 0,
    )
