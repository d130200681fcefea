"""Where an accepted delivery goes: the Dramatiq queue, else Postgres, else nowhere (503).

Vapi does not retry by default, so a delivery we answer 200 must survive Redis trouble.
When Redis fails or is slower than the enqueue timeout, the delivery is written to
``call_events`` as pending and not yet queued; a ``Drainer`` in every web process hands
such rows to the queue once Redis answers again. After a Redis failure the intake goes
straight to Postgres for ``breaker_seconds`` instead of making each request wait out the
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from ingest import queries
from ingest.body import loads_storable
from ingest.errors import describe
from ingest.event import Event
from ingest.privacy import Privacy
from ingest.vocabulary import DeliveryOutcome, EventState
from ingest.web.enqueue import EnqueueError, Enqueuer

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """Neither Redis nor Postgres took the delivery."""


class Intake:
    def __init__(
        self, enqueuer: Enqueuer, pool: AsyncConnectionPool, privacy: Privacy, *, breaker_seconds: float = 1.0
    ) -> None:
        self.enqueuer = enqueuer
        self.pool = pool
        self.privacy = privacy
        self.breaker_seconds = breaker_seconds
        self._redis_down_until = 0.0
        self.stored_since_drain = asyncio.Event()

    async def accept(self, body: bytes, received_at_ms: int) -> DeliveryOutcome:
        """Queue ``body``; when Redis fails, keep it in Postgres (re-parsed only then)."""
        if time.monotonic() >= self._redis_down_until:
            try:
                await self.enqueuer.send(body, received_at_ms)
                return DeliveryOutcome.QUEUED
            except EnqueueError as exc:
                self._redis_down_until = time.monotonic() + self.breaker_seconds
                log.warning("redis unavailable; keeping deliveries in postgres", extra={"error": str(exc)})
        await self.store(loads_storable(body), received_at_ms)
        return DeliveryOutcome.STORED

    async def store(self, body: dict[str, Any], received_at_ms: int) -> None:
        try:
            row = Event.from_body(body, received_at_ms).row(EventState.PENDING, self.privacy)
            async with self.pool.connection(timeout=2.0) as conn:
                await conn.execute(queries.STORE_PENDING_EVENT, row)
        except Exception as exc:
            log.error("postgres fallback failed", extra={"error": describe(exc, 500)})
            raise Unavailable from exc
        self.stored_since_drain.set()


class Drainer:
    """Queues the rows the intake kept in Postgres, once Redis is reachable again."""

    def __init__(self, intake: Intake, *, interval: float = 2.0, batch: int = 200) -> None:
        self.intake = intake
        self.interval = interval
        self.batch = batch

    async def drain_once(self) -> int:
        """Queue one batch of unqueued rows; return how many were queued (0 if Redis is down)."""
        if not await self.intake.enqueuer.ping():
            return 0
        async with self.intake.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(queries.CLAIM_UNQUEUED_EVENTS, {"limit": self.batch})
            rows = await cursor.fetchall()
            if not rows:
                return 0
            queued, sends = [], []
            for event_id, kept, body, envelope, received_at_ms in rows:
                try:
                    message = self.intake.privacy.open_message(kept, body, envelope)
                except Exception as exc:  # sealed under a key this process lacks: the sweeper's, later
                    log.warning("cannot open a postgres-held delivery", extra={"id": event_id, "error": describe(exc)})
                    continue
                queued.append(event_id)
                sends.append(self.intake.enqueuer.send(orjson.dumps({"message": message}), received_at_ms))
            await asyncio.gather(*sends)  # an EnqueueError rolls back: the rows stay unqueued
            await conn.execute(queries.MARK_EVENTS_QUEUED, {"ids": queued})
        log.info("drained postgres-held deliveries to the queue", extra={"count": len(queued)})
        return len(queued)

    async def drain(self) -> int:
        total = 0
        while (count := await self.drain_once()) > 0:
            total += count
        return total

    async def run(self) -> None:
        """Drain now and then, and soon after the intake stores something."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.intake.stored_since_drain.wait(), self.interval)
            self.intake.stored_since_drain.clear()
            try:
                await self.drain()
            except EnqueueError:
                pass  # Redis is still down; try again next round
            except Exception:
                log.exception("drainer round failed")
