"""Per-process resources for Dramatiq workers, as middleware hooks.

The pool is opened after the worker process boots (never at import, never before a
fork) and closed when it shuts down; the sweeper thread lives and dies with it. An event
that Dramatiq gives up on (retries exhausted, or too old to be processed at all) is
recorded as failed in ``call_events`` so it shows up for operators.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from psycopg_pool import ConnectionPool

from ingest.apply import record_failure
from ingest.db import sync_pool
from ingest.errors import PermanentError
from ingest.event import Event
from ingest.logs import configure_logging
from ingest.mapping.keywords import extract_keywords
from ingest.metrics.exposition import serve_worker_metrics
from ingest.settings import Settings
from worker.acks import Broker
from worker.group_commit import GroupCommit
from worker.process import event_from_body, hand_over
from worker.reclaim import reclaim
from worker.sweeper import AnomalySchedule, ReconcileSchedule, RetentionSchedule, Sweeper

log = logging.getLogger("ingest.worker")


class Resources(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: ConnectionPool | None = None
        self._sweeper: Sweeper | None = None
        self._group: GroupCommit | None = None
        self._current = threading.local()  # the message each worker thread is running
        self._broker: dramatiq.Broker | None = None

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            raise RuntimeError("the database pool is opened when the worker boots")
        return self._pool

    @property
    def group(self) -> GroupCommit:
        if self._group is None:
            raise RuntimeError("the group commit starts when the worker boots")
        return self._group

    @property
    def forks(self) -> list[Callable[[], int]]:
        # With INGEST_WORKER_METRICS_PORT, Dramatiq forks a process serving the workers' counts.
        return [serve_worker_metrics] if self.settings.worker_metrics_port else []

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before the worker threads start, so no message ever finds the pool closed.
        self._broker = broker
        configure_logging(self.settings.log_level)  # JSON lines, like the web process
        self._pool = sync_pool(self.settings, name="worker")
        self._pool.open(wait=True, timeout=30)
        self._group = GroupCommit(self._pool, self.settings.privacy)
        # YAKE and what it imports (numpy, networkx) take about half a second of CPU to load:
        # at boot, not in the middle of the first end-of-call report's batch.
        extract_keywords("keyword extraction loaded at boot")

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        assert isinstance(broker, RedisBroker)
        queue_name = self.settings.queue_name
        self._sweeper = Sweeper(
            self.pool,
            self.settings.privacy,
            interval=self.settings.sweep_interval,
            grace=self.settings.sweep_grace,
            also=lambda: reclaim(broker, queue_name),
            schedules=[
                RetentionSchedule(self.settings),
                *([ReconcileSchedule(self.settings)] if self.settings.vapi_api is not None else []),
                AnomalySchedule(self.settings),
            ],
        )
        self._sweeper.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Only now: Dramatiq stops its worker threads after "before_worker_shutdown", and the
        # messages they are finishing still need the group commit and the pool.
        if self._group is not None:
            self._group.close()
            self._group = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def hand_over(self, event: Event) -> None:
        """Hand the event of the message this worker thread runs to the group commit and return:
        the message is acknowledged once the event is committed (``worker.process.hand_over``)."""
        message: MessageProxy | None = getattr(self._current, "message", None)
        if message is None or not isinstance(self._broker, Broker):
            raise RuntimeError("an event is handed over from a worker thread running its message")
        hand_over(self.group, self._broker.consumers[message.queue_name], message, event)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._current.message = message

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        # Retries calls message.fail() when it gives up; the last attempt left the event
        # pending, which would hand it to the sweeper forever. Mark it failed instead.
        if exception is None or not message.failed or isinstance(exception, PermanentError):
            return
        self._record_failed(message, exception, "could not mark an exhausted event failed")

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        # AgeLimit dead-letters a message that waited longer than the actor's max_age without
        # ever calling the actor, so the event may not be in call_events at all: record it
        # failed (an applied copy stays applied), to be seen and re-applied by an operator.
        if not message.failed:
            return
        error = PermanentError("the queued message exceeded its age limit before a worker took it")
        self._record_failed(message, error, "could not record an expired event")

    def _record_failed(self, message: MessageProxy, error: BaseException, complaint: str) -> None:
        """Keep the message's event in call_events as failed with ``error``; log if even that fails."""
        try:
            event = event_from_body(*message.args)
            with self.pool.connection() as conn:
                record_failure(conn, event, error, permanent=True, privacy=self.settings.privacy)
        except Exception as exc:
            log.error(complaint, extra={"error": type(exc).__name__})
