"""Gauges read at scrape time from Redis (the queue) and Postgres (``call_events``).

Nothing is stored between scrapes: each scrape reads ``ingest.queue_stats`` in worker
threads, both sources at once, each with short timeouts, and a source that does not
answer in time is reported as ``vapi_ingest_source_up{source=...} 0`` with its gauges left
out, instead of failing or stalling the whole scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.backoff import NoBackoff
from redis.retry import Retry

from ingest.queue_stats import EventStats, QueueStats, event_stats, queue_stats

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 1.0  # seconds, per connect and per reply
POSTGRES_CONNECT_TIMEOUT = 2  # libpq's smallest useful value
SOURCE_DEADLINE = 3.5  # whatever happens inside, a source gets no longer than this

QUEUE_STATES = ("ready", "in_flight", "delayed", "dead")
EVENT_STATES = ("pending", "waiting", "failed")

T = TypeVar("T")


@dataclass(frozen=True)
class Sources:
    """Where the gauges come from."""

    redis_url: str
    database_url: str
    namespace: str
    queue_names: tuple[str, ...]
    connect_kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    queues: Sequence[QueueStats] | None  # None: Redis did not answer
    events: EventStats | None  # None: Postgres did not answer


def read_queues(sources: Sources) -> list[QueueStats]:
    client = redis.Redis.from_url(
        sources.redis_url,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return queue_stats(client, sources.namespace, sources.queue_names)
    finally:
        client.close()


def read_events(sources: Sources) -> EventStats:
    with psycopg.connect(
        sources.database_url, connect_timeout=POSTGRES_CONNECT_TIMEOUT, **sources.connect_kwargs
    ) as conn:
        # SET LOCAL, not a startup option: transaction poolers refuse those.
        conn.execute("SET LOCAL statement_timeout = '2s'")
        return event_stats(conn)


async def _read(source: str, read: Callable[[Sources], T], sources: Sources) -> T | None:
    try:
        return await asyncio.wait_for(asyncio.to_thread(read, sources), SOURCE_DEADLINE)
    except Exception as exc:  # any failure means the same to a scrape: this source is down
        error = f"{type(exc).__name__}: {exc}".split("\n", 1)[0][:300]
        log.warning("metrics source unavailable", extra={"source": source, "error": error})
        return None


async def snapshot(sources: Sources) -> Snapshot:
    """Read both sources at once, off the event loop."""
    queues, events = await asyncio.gather(_read("redis", read_queues, sources), _read("postgres", read_events, sources))
    return Snapshot(queues, events)


class SourceCollector:
    """A prometheus_client collector yielding the gauges of one ``Snapshot``."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "vapi_ingest_source_up", "1 when the source answered this scrape, else 0.", labels=["source"]
        )
        up.add_metric(["redis"], 0 if self.snap.queues is None else 1)
        up.add_metric(["postgres"], 0 if self.snap.events is None else 1)
        yield up
        if self.snap.queues is not None:
            messages = GaugeMetricFamily(
                "vapi_ingest_queue_messages",
                "Messages held by the Dramatiq queue, by state.",
                labels=["queue", "state"],
            )
            oldest = GaugeMetricFamily(
                "vapi_ingest_queue_oldest_message_age_seconds",
                "Age of the next ready message (0 when none is ready).",
                labels=["queue"],
            )
            for queue in self.snap.queues:
                for state in QUEUE_STATES:
                    messages.add_metric([queue.name, state], getattr(queue, state))
                oldest.add_metric([queue.name], queue.oldest_age_s or 0.0)
            yield messages
            yield oldest
        if self.snap.events is not None:
            events = GaugeMetricFamily(
                "vapi_ingest_call_events", "Events in call_events not applied (yet), by state.", labels=["state"]
            )
            for state in EVENT_STATES:
                events.add_metric([state], getattr(self.snap.events, state))
            yield events
