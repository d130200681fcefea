"""Re-applies events left pending or waiting, so recovery does not depend on the queue.

Dramatiq's Redis broker returns a dead worker's messages only after a heartbeat timeout
and a maintenance pass that runs on a random 0.1 % of commands, and it can acknowledge a
message whose retry failed to enqueue. ``call_events`` is the source of truth instead:
every worker process sweeps it now and then. Rows are claimed with SKIP LOCKED, and
applying is idempotent, so a sweep racing the queue's own redelivery is harmless.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence

from psycopg_pool import ConnectionPool

from ingest import queries
from ingest.apply import apply_stored_event, rebuild_transcript
from ingest.db import connect
from ingest.errors import describe
from ingest.ops import anomalies, flagged_callers, reconcile, reconcile_runs, retention
from ingest.privacy import Privacy
from ingest.sealing import KeyUnavailable
from ingest.settings import Settings

log = logging.getLogger(__name__)


def sweep_once(pool: ConnectionPool, privacy: Privacy, *, grace: float, unqueued_grace: float, limit: int = 100) -> int:
    """Apply up to ``limit`` stale events; return how many were applied or settled."""
    with pool.connection() as conn:
        params = {"grace": grace, "unqueued_grace": unqueued_grace, "limit": limit}
        ids = [row[0] for row in conn.execute(queries.STALE_EVENTS, params).fetchall()]
    done = 0
    for event_id in ids:
        with pool.connection() as conn:
            outcome = apply_stored_event(conn, event_id, privacy)
        if outcome.error is not None:
            log.warning(
                "sweeper could not apply an event", extra={"id": event_id, "error": describe(outcome.error, 300)}
            )
        elif outcome.claimed:  # else applied meanwhile, or another sweeper holds it
            done += 1
    if done:
        log.info("sweeper applied stale events", extra={"count": done})
    return done


def rebuild_missing_transcripts(pool: ConnectionPool, privacy: Privacy, *, grace: float, limit: int = 50) -> int:
    """Build transcripts from final transcript events for calls whose report never came; return the calls tried.

    A call whose finals give no transcript (no spoken text, no usable timestamps) is marked
    with the newest final it was tried with, so it is not read again on every sweep, ahead
    of the calls behind it, but only once a newer final arrives. A call with a final sealed
    under a key this process does not hold is left for a later sweep (logged).
    """
    with pool.connection() as conn:
        calls = conn.execute(queries.CALLS_WITHOUT_TRANSCRIPT, {"grace": grace, "limit": limit}).fetchall()
    for key, newest in calls:
        try:
            with pool.connection() as conn, conn.transaction():
                rebuild_transcript(conn, key, privacy)
                conn.execute(queries.MARK_TRANSCRIPT_TRIED, {"call_id": key, "newest": newest})
        except KeyUnavailable as exc:
            log.warning("transcript rebuild waits for a key", extra={"key_id": exc.key_id})
    return len(calls)


class Interval:
    """This process's own clock for a schedule: ``due()`` is true at first, then once per ``minutes``."""

    def __init__(self, minutes: int) -> None:
        self.seconds = minutes * 60.0
        self._tried = -self.seconds

    def due(self) -> bool:
        if time.monotonic() - self._tried < self.seconds:
            return False
        self._tried = time.monotonic()
        return True


class RetentionSchedule:
    """The retention policy every ``RETENTION_INTERVAL_MINUTES``, by one runner across hosts.

    Every worker process calls it on each sweep; it acts once its interval has passed since
    this process last tried, and only when the last run recorded in Postgres (by any host)
    is that old too. ``retention.run_locked`` takes a session advisory lock on a connection
    of its own: while one process runs, the others skip. A failure is logged and retried at
    the next interval; it never stops the sweeper.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = Interval(settings.retention_interval_minutes)

    def __call__(self) -> retention.Report | None:
        if not self.interval.due():
            return None
        with connect(self.settings) as conn:
            if not retention.due_now(conn, self.settings.retention_interval_minutes):
                return None
            report = retention.run_locked(
                conn,
                self.settings,
                interval_minutes=self.settings.retention_interval_minutes,
                runner="worker",
                auditor=retention.worker_auditor(),
            )
        if report is not None:
            log.info(
                "retention run",
                extra={
                    **{category: report.total(category) for category in retention.CATEGORIES},
                    "overdue": report.overdue_total,
                    "skipped": report.skipped,
                },
            )
            if report.skipped:
                log.warning("retention skipped a step: no INGEST_PSEUDONYM_KEY", extra={"skipped": report.skipped})
        return report


class ReconcileSchedule:
    """Reconciliation with Vapi's API every ``RECONCILE_INTERVAL_MINUTES``, by one runner across hosts.

    Made only when ``VAPI_API_KEY`` is set. Like ``RetentionSchedule``: each worker process
    calls it on every sweep; it acts once its interval has passed since this process last
    tried and the last run recorded in Postgres (by any host, failed ones too) is that old,
    under ``reconcile.run_locked``'s advisory lock. The window is the trailing
    ``RECONCILE_WINDOW_HOURS``, reaching back to the watermark when runs were missed. An API
    that cannot be read is recorded as a failed run and logged, and tried again at the next
    interval: never sooner. A Call that cannot be mapped or applied does not stop the run: it
    is kept as a failed ``api.call`` event with its error (``ingest events list --failed``,
    ``ingest events reapply``), counted ``failed`` in the recorded run, and logged; the
    watermark moves on.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = Interval(settings.reconcile_interval_minutes)

    def __call__(self) -> reconcile.Result | None:
        if not self.interval.due():
            return None
        api = reconcile.make_api(self.settings)
        if api is None:
            return None
        try:
            with connect(self.settings) as conn:
                if not reconcile_runs.due_now(conn, self.settings.reconcile_interval_minutes):
                    return None
                result = reconcile.run_locked(
                    conn,
                    api,
                    self.settings.privacy,
                    window_hours=self.settings.reconcile_window_hours,
                    interval_minutes=self.settings.reconcile_interval_minutes,
                    runner="worker",
                )
        except reconcile.VapiApiError as exc:
            log.warning("reconciliation could not read Vapi's API", extra={"error": str(exc)[:300]})
            return None
        finally:
            api.close()
        if result is not None:
            log.info("reconciliation run", extra={**result.counts_dict(), "gaps": len(result.gaps)})
            if result.failed:
                log.warning(
                    "reconciliation kept calls it could not apply as failed api.call events",
                    extra={
                        "failed": len(result.failed),
                        "errors": sorted({item.error or "" for item in result.failed})[:5],
                    },
                )
        return result


class AnomalySchedule:
    """Every anomaly detector every ``ANOMALY_INTERVAL_MINUTES``, by one runner across hosts.

    Like ``RetentionSchedule``: each worker process calls it on every sweep; it acts once its
    interval has passed since this process last tried and the last scan recorded in Postgres
    (by any host) is that old, under ``anomalies.scan_locked``'s advisory lock. After each
    scan the flagged-caller set in Redis is refreshed (``ingest.ops.flagged_callers``), and
    each new anomaly is logged with its id, kind, client and subject (an id or a pseudonym).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = Interval(settings.anomalies.interval_minutes)

    def __call__(self) -> anomalies.ScanResult | None:
        if not self.interval.due():
            return None
        with connect(self.settings) as conn:
            if not anomalies.due_now(conn, self.settings.anomalies.interval_minutes):
                return None
            result = anomalies.scan_locked(conn, self.settings, runner="worker")
            if result is None:
                return None
            for item in anomalies.list_anomalies(conn, since=result.at, open_only=True):
                if item.detected_at >= result.at:
                    log.warning("anomaly detected", extra=_anomaly_fields(item))
            flagged = flagged_callers.refresh(conn, self.settings)
        log.info(
            "anomaly scan",
            extra={**result.found, "new": result.new, "updated": result.updated, "flagged_callers": flagged},
        )
        if result.skipped:
            log.warning("anomaly scan skipped detectors: no INGEST_PSEUDONYM_KEY", extra={"skipped": result.skipped})
        return result


def _anomaly_fields(item: anomalies.Anomaly) -> dict[str, object]:
    return {
        "anomaly": item.id,
        "kind": item.kind,
        "client_id": item.client_id,
        "subject_kind": item.subject_kind,
        "subject": item.subject,
        "score": item.score,
    }


def ensure_call_event_partitions(pool: ConnectionPool) -> int:
    """Make this month's ``call_events`` partition and the next ones if missing; return how many were made.

    Without them events still land in ``call_events_default``; a partition made later moves
    its month's rows out of it (sql/functions/72_call_event_partitions.sql).
    """
    with pool.connection() as conn:
        row = conn.execute(queries.ENSURE_CALL_EVENT_PARTITIONS).fetchone()
    made = int(row[0]) if row else 0
    if made:
        log.info("call_events partitions made", extra={"count": made})
    return made


class Sweeper(threading.Thread):
    """A daemon thread sweeping every ``interval`` seconds until ``stop()``."""

    def __init__(
        self,
        pool: ConnectionPool,
        privacy: Privacy,
        *,
        interval: float,
        grace: float,
        also: Callable[[], None] | None = None,
        schedules: Sequence[Callable[[], object]] = (),
    ) -> None:
        """``also`` runs first on each sweep; ``schedules`` (retention, reconciliation, anomaly scans) last,
        each deciding for itself whether its interval has come."""
        super().__init__(name="ingest-sweeper", daemon=True)
        self.also = also
        self.schedules = list(schedules)
        self.pool = pool
        self.privacy = privacy
        self.interval = interval
        self.grace = grace
        self._stopped = threading.Event()

    def run(self) -> None:
        partitions = functools.partial(ensure_call_event_partitions, self.pool)
        self._run_each([partitions])  # on start, then with every sweep
        tasks: list[Callable[[], object]] = [
            partitions,
            lambda: sweep_once(self.pool, self.privacy, grace=self.grace, unqueued_grace=self.grace * 5),
            lambda: rebuild_missing_transcripts(self.pool, self.privacy, grace=self.grace * 5),
        ]
        if self.also is not None:
            tasks.insert(0, self.also)
        tasks.extend(self.schedules)
        while not self._stopped.wait(self.interval):
            self._run_each(tasks)

    @staticmethod
    def _run_each(tasks: list[Callable[[], object]]) -> None:
        for task in tasks:  # each on its own: Redis being down must not stop the database sweep
            try:
                task()
            except Exception:
                log.warning("sweep task failed", exc_info=True)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        self.join(timeout)


__all__ = [
    "AnomalySchedule",
    "Interval",
    "ReconcileSchedule",
    "RetentionSchedule",
    "Sweeper",
    "ensure_call_event_partitions",
    "rebuild_missing_transcripts",
    "sweep_once",
]
