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
error), and how many were applied in the last minute. From ``reconcile_runs``: the last
reconciliation with Vapi's API (``ingest.ops.reconcile_runs``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ingest import queries
from ingest.errors import describe
from ingest.ops import reconcile_runs
from ingest.queue_keys import QueueKeys

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
        keys = QueueKeys(namespace, name)
        pipe = client.pipeline(transaction=True)
        pipe.llen(keys.ready)
        pipe.hlen(keys.messages)
        pipe.hlen(keys.delayed_messages)
        pipe.zcard(keys.dead)
        pipe.lindex(keys.ready, 0)
        ready, held, delayed, dead, head = pipe.execute()
        oldest = _timestamp_ms(client.hget(keys.messages, head)) if head is not None else None
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


# -- one snapshot, one timeout policy: `ingest queue`, the /ops page and /metrics all read here --
# A server that does not answer within these limits is reported missing, never waited on.

REDIS_TIMEOUT = 1.0  # seconds, per connect and per reply
POSTGRES_CONNECT_TIMEOUT = 2  # seconds; libpq's smallest useful value
POSTGRES_STATEMENT_TIMEOUT = "2s"
# libpq's TCP settings: a peer that stops acknowledging is given up after 3 s
# (tcp_user_timeout, libpq 12+), an idle one is probed every second.
POSTGRES_TCP = {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1, "keepalives_count": 2}
POSTGRES_TCP_USER_TIMEOUT_MS = 3000


def redis_client(url: str) -> redis.Redis:
    """A Redis client that gives up on a silent server within ``REDIS_TIMEOUT``, without retrying."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
    )


def postgres_timeouts() -> dict[str, Any]:
    """The client-side limits of a backlog reader's Postgres connection, as libpq parameters."""
    timeouts: dict[str, Any] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT, **POSTGRES_TCP}
    if psycopg.pq.version() >= 120000:  # older libpq refuses the parameter
        timeouts["tcp_user_timeout"] = POSTGRES_TCP_USER_TIMEOUT_MS
    return timeouts


def bounded_event_stats(conn: psycopg.Connection[Any]) -> EventStats:
    """``event_stats`` under ``POSTGRES_STATEMENT_TIMEOUT``, on any connection (pooled or not)."""
    with conn.transaction():
        # SET LOCAL, not a startup option: transaction poolers refuse those.
        conn.execute(f"SET LOCAL statement_timeout = '{POSTGRES_STATEMENT_TIMEOUT}'")
        return event_stats(conn)


def bounded_reconcile_figures(conn: psycopg.Connection[Any]) -> reconcile_runs.Figures:
    """``reconcile_runs.figures`` (the last reconciliation runs) under ``POSTGRES_STATEMENT_TIMEOUT``."""
    with conn.transaction():
        conn.execute(f"SET LOCAL statement_timeout = '{POSTGRES_STATEMENT_TIMEOUT}'")
        return reconcile_runs.figures(conn)


@dataclass(frozen=True)
class Backlog:
    """The queue and the event log at one moment; a source that could not be read is None."""

    taken_at: datetime
    namespace: str
    queues: list[QueueStats] | None
    events: EventStats | None
    failures: dict[str, Exception] = field(default_factory=dict)  # "redis" / "postgres" -> why missing
    reconciliation: reconcile_runs.Figures | None = None  # the last runs; None when not read

    @property
    def errors(self) -> dict[str, str]:
        """Why each missing source is missing, one line each (no row values: see errors.describe)."""
        return {source: describe(exc, 300).split("\n", 1)[0] for source, exc in self.failures.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.taken_at.isoformat(),
            "namespace": self.namespace,
            "queues": None if self.queues is None else [q.as_dict() for q in self.queues],
            "events": None if self.events is None else self.events.as_dict(),
            "reconciliation": None if self.reconciliation is None else self.reconciliation.as_dict(),
            "errors": self.errors,
        }


def snapshot(
    client: redis.Redis,
    connection: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
    namespace: str,
    queue_names: Sequence[str],
) -> Backlog:
    """Read both sources; a failure of either is recorded in the snapshot, not raised."""
    failures: dict[str, Exception] = {}
    queues: list[QueueStats] | None = None
    events: EventStats | None = None
    try:
        queues = queue_stats(client, namespace, queue_names)
    except redis.RedisError as exc:
        failures["redis"] = exc
    reconciliation: reconcile_runs.Figures | None = None
    try:
        with connection() as conn:
            events = bounded_event_stats(conn)
            reconciliation = bounded_reconcile_figures(conn)
    except psycopg.Error as exc:
        failures["postgres"] = exc
    return Backlog(datetime.now(UTC), namespace, queues, events, failures, reconciliation)
