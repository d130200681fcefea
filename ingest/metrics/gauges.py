"""Gauges read at scrape time from Redis (the queue) and Postgres (``call_events``).

Nothing is stored between scrapes: each scrape reads ``ingest.ops.backlog``, both sources
at once, each with short timeouts, and a source that does not answer in time is reported
as ``vapi_ingest_source_up{source=...} 0`` with its gauges left out, instead of failing or
stalling the whole scrape.

Each source is read on a thread of its own (``SourceReader``), never on the event loop's
default pool, which tool calls (``ingest.web.answers``) need: a read stuck on a dead socket
outlives the scrape that gave up on it, and would otherwise keep a shared thread. While a
source's earlier read is still running past its deadline, scrapes report that source down
without starting another read, so a dead server costs one thread, not one per scrape. The
client-side timeouts below bound how long such a read can hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ingest.ops import anomalies, backlog, reconcile, reconcile_runs, retention
from ingest.ops.backlog import Backlog, EventStats, QueueStats
from ingest.vocabulary import AnomalyKind, EventState

log = logging.getLogger(__name__)

SOURCE_DEADLINE = 3.5  # whatever happens inside, a scrape waits no longer than this for a source

QUEUE_STATES = ("ready", "in_flight", "delayed", "dead")
# The unfinished states ``EventStats`` counts (applied and ignored events are not gauged).
EVENT_STATES = (EventState.PENDING, EventState.WAITING, EventState.FAILED)

T = TypeVar("T")


@dataclass(frozen=True)
class Sources:
    """Where the gauges come from."""

    redis_url: str
    database_url: str
    namespace: str
    queue_names: tuple[str, ...]
    connect_kwargs: Mapping[str, Any]
    # RETENTION_RAW_EVENTS_DAYS, RETENTION_TRANSCRIPT_DAYS, RETENTION_ANONYMISE_DAYS: the overdue count
    retention_raw_days: int = 30
    retention_transcript_days: int = 90
    retention_anonymise_days: int = 365


def read_retention(sources: Sources) -> retention.Figures:
    connect = {**sources.connect_kwargs, **backlog.postgres_timeouts()}
    with psycopg.connect(sources.database_url, **connect) as conn, conn.transaction():
        conn.execute(f"SET LOCAL statement_timeout = '{backlog.POSTGRES_STATEMENT_TIMEOUT}'")
        return retention.figures(
            conn, sources.retention_raw_days, sources.retention_transcript_days, sources.retention_anonymise_days
        )


def read_reconcile(sources: Sources) -> reconcile_runs.Figures:
    connect = {**sources.connect_kwargs, **backlog.postgres_timeouts()}
    with psycopg.connect(sources.database_url, **connect) as conn:
        return backlog.bounded_reconcile_figures(conn)


@dataclass(frozen=True)
class AnomalyFigures:
    """The open anomalies by kind (every kind, 0 included) and when the last scan finished."""

    open_counts: dict[str, int]
    last_scan_at: datetime | None


def read_anomalies(sources: Sources) -> AnomalyFigures:
    connect = {**sources.connect_kwargs, **backlog.postgres_timeouts()}
    with psycopg.connect(sources.database_url, **connect) as conn, conn.transaction():
        conn.execute(f"SET LOCAL statement_timeout = '{backlog.POSTGRES_STATEMENT_TIMEOUT}'")
        scan = anomalies.last_scan(conn)
        return AnomalyFigures(anomalies.open_counts(conn), scan["finished_at"] if scan else None)


def read_queues(sources: Sources) -> list[QueueStats]:
    client = backlog.redis_client(sources.redis_url)
    try:
        return backlog.queue_stats(client, sources.namespace, sources.queue_names)
    finally:
        client.close()


def read_events(sources: Sources) -> EventStats:
    connect = {**sources.connect_kwargs, **backlog.postgres_timeouts()}
    with psycopg.connect(sources.database_url, **connect) as conn:
        return backlog.bounded_event_stats(conn)


class SourceReader(Generic[T]):
    """Reads one source on a thread of its own, one read at a time (see the module's docstring)."""

    def __init__(self, source: str, read: Callable[[Sources], T]) -> None:
        self.source = source
        self.read = read
        self._running: concurrent.futures.Future[T] | None = None
        self._started = 0.0

    def _start(self, sources: Sources) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.read(sources))
            except BaseException as exc:  # handed to the scrape waiting on it
                future.set_exception(exc)

        # A daemon thread: one stuck on a dead socket must not hold up the process's exit.
        threading.Thread(target=run, name=f"metrics-{self.source}", daemon=True).start()
        return future

    async def __call__(self, sources: Sources) -> T | None:
        """The source's figures, or None when it is down (failed, too slow, or still stuck)."""
        running, now = self._running, time.monotonic()
        if running is not None and not running.done():
            waited = now - self._started
            if waited >= SOURCE_DEADLINE:  # an earlier read hangs: no second thread on the same trouble
                log.warning(
                    "metrics source still busy with an earlier read",
                    extra={"source": self.source, "busy_seconds": round(waited, 1)},
                )
                return None
            deadline = SOURCE_DEADLINE - waited  # a concurrent scrape shares the read under way
        else:
            running, self._started, deadline = self._start(sources), now, SOURCE_DEADLINE
            self._running = running
        try:
            return await asyncio.wait_for(asyncio.wrap_future(running), deadline)
        except Exception as exc:  # any failure means the same to a scrape: this source is down
            error = f"{type(exc).__name__}: {exc}".split("\n", 1)[0][:300]
            log.warning("metrics source unavailable", extra={"source": self.source, "error": error})
            return None


class SourceReaders:
    """The readers of both sources, kept for the life of one ``/metrics`` endpoint."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.queues = SourceReader("redis", read_queues)
        self.events = SourceReader("postgres", read_events)
        self.retention = SourceReader("retention", read_retention)
        self.reconcile = SourceReader("reconcile", read_reconcile)
        self.anomalies = SourceReader("anomalies", read_anomalies)

    async def snapshot(self) -> Backlog:
        """Read both sources at once, off the event loop (why a source is down is logged by its reader)."""
        queues, events = await asyncio.gather(self.queues(self.sources), self.events(self.sources))
        return Backlog(datetime.now(UTC), self.sources.namespace, queues, events)

    async def retention_figures(self) -> retention.Figures | None:
        """The last retention run and the overdue unfinished events; None when Postgres does not answer."""
        return await self.retention(self.sources)

    async def reconcile_figures(self) -> reconcile_runs.Figures | None:
        """The last reconciliation runs; None when Postgres does not answer."""
        return await self.reconcile(self.sources)

    async def anomaly_figures(self) -> AnomalyFigures | None:
        """The open anomalies by kind and the last scan; None when Postgres does not answer."""
        return await self.anomalies(self.sources)


class SourceCollector:
    """A prometheus_client collector yielding the gauges of one ``Backlog``."""

    def __init__(
        self,
        snap: Backlog,
        kept: retention.Figures | None = None,
        reconciled: reconcile_runs.Figures | None = None,
        flagged: AnomalyFigures | None = None,
    ) -> None:
        self.snap = snap
        self.kept = kept
        self.reconciled = reconciled
        self.flagged = flagged

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
        if self.kept is not None:
            yield from retention_gauges(self.kept)
        if self.reconciled is not None:
            yield from reconcile_gauges(self.reconciled)
        if self.flagged is not None:
            yield from anomaly_gauges(self.flagged)


def retention_gauges(kept: retention.Figures) -> Iterator[Metric]:
    """The last retention run (time, counts by category) and the unfinished events a due window makes overdue."""
    last = GaugeMetricFamily(
        "vapi_ingest_retention_last_run_timestamp_seconds", "When the last retention run finished (0: never)."
    )
    last.add_metric([], kept.last_run.finished_at.timestamp() if kept.last_run else 0.0)
    yield last
    removed = GaugeMetricFamily(
        "vapi_ingest_retention_last_run_items",
        "What the last retention run removed or anonymised, by category.",
        labels=["category"],
    )
    for category in retention.CATEGORIES:
        removed.add_metric([category], kept.last_run.total(category) if kept.last_run else 0)
    yield removed
    overdue = GaugeMetricFamily(
        "vapi_ingest_retention_overdue_events",
        "Pending or waiting call_events past their raw-events window, or of a call past its transcript or"
        " anonymise window: kept, never removed silently.",
    )
    overdue.add_metric([], kept.overdue)
    yield overdue


def reconcile_gauges(figures: reconcile_runs.Figures) -> Iterator[Metric]:
    """The last successful reconciliation (time, calls by result), whether the last run failed,
    and the calls that reached us only through reconciliation in the last 24 hours."""
    good, last = figures.last_success, figures.last_run
    success = GaugeMetricFamily(
        "vapi_ingest_reconcile_last_success_timestamp_seconds",
        "When the last successful reconciliation with Vapi's API finished (0: never).",
    )
    success.add_metric([], good.finished_at.timestamp() if good else 0.0)
    yield success
    calls = GaugeMetricFamily(
        "vapi_ingest_reconcile_last_run_calls",
        "Calls the last successful reconciliation found, by result.",
        labels=["result"],
    )
    for result in reconcile.RESULTS:
        calls.add_metric([result], good.total(result) if good else 0)
    yield calls
    failed = GaugeMetricFamily(
        "vapi_ingest_reconcile_last_run_failed", "1 when the last reconciliation could not read Vapi's API, else 0."
    )
    failed.add_metric([], 1 if last is not None and last.error is not None else 0)
    yield failed
    only = GaugeMetricFamily(
        "vapi_ingest_reconcile_only_reconciled_calls",
        "Calls of the last 24 h that reached us only through reconciliation: their webhooks never arrived.",
    )
    only.add_metric([], figures.only_reconciled_total)
    yield only


def anomaly_gauges(figures: AnomalyFigures) -> Iterator[Metric]:
    """The open (unacknowledged) anomalies by kind, every kind, and when the last anomaly scan finished."""
    open_ = GaugeMetricFamily(
        "vapi_ingest_anomalies_open", "Anomalies detected and not acknowledged yet, by kind.", labels=["kind"]
    )
    for kind in AnomalyKind:
        open_.add_metric([kind.value], figures.open_counts.get(kind.value, 0))
    yield open_
    scanned = GaugeMetricFamily(
        "vapi_ingest_anomaly_scan_last_success_timestamp_seconds",
        "When the last anomaly scan finished (0: never).",
    )
    scanned.add_metric([], figures.last_scan_at.timestamp() if figures.last_scan_at else 0.0)
    yield scanned
