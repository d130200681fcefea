"""Re-applies events left pending or waiting, so recovery does not depend on the queue.

Dramatiq's Redis broker returns a dead worker's messages only after a heartbeat timeout
and a maintenance pass that runs on a random 0.1 % of commands, and it can acknowledge a
message whose retry failed to enqueue. ``call_events`` is the source of truth instead:
every worker process sweeps it now and then. Rows are claimed with SKIP LOCKED, and
applying is idempotent, so a sweep racing the queue's own redelivery is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from ingest import queries
from ingest.apply import apply_stored_event, rebuild_transcript
from ingest.errors import describe
from ingest.privacy import Privacy
from ingest.sealing import KeyUnavailable

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
    ) -> None:
        super().__init__(name="ingest-sweeper", daemon=True)
        self.also = also
        self.pool = pool
        self.privacy = privacy
        self.interval = interval
        self.grace = grace
        self._stopped = threading.Event()

    def run(self) -> None:
        tasks: list[Callable[[], object]] = [
            lambda: sweep_once(self.pool, self.privacy, grace=self.grace, unqueued_grace=self.grace * 5),
            lambda: rebuild_missing_transcripts(self.pool, self.privacy, grace=self.grace * 5),
        ]
        if self.also is not None:
            tasks.insert(0, self.also)
        while not self._stopped.wait(self.interval):
            for task in tasks:  # each on its own: Redis being down must not stop the database sweep
                try:
                    task()
                except Exception:
                    log.warning("sweep task failed", exc_info=True)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        self.join(timeout)


__all__ = ["Sweeper", "rebuild_missing_transcripts", "sweep_once"]
