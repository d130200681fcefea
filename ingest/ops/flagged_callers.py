"""Callers refused under ``BLOCK_FLAGGED_CALLERS``: a Redis hash of caller pseudonym -> anomaly id.

The key, ``<INGEST_REDIS_NAMESPACE>:flagged-callers``, is written by the anomaly scan
(``publish``: replaced whole, in one transaction, by the open repeat-caller anomalies last
seen within ``BLOCK_FLAGGED_HOURS``), and again from the table as soon as a repeat-caller
anomaly is acknowledged (``refresh``, on every surface). The web process reads it on each
``assistant-request`` while blocking is on (``FlaggedCallers.lookup``: one ``HGET`` of the
caller's pseudonym, never the number). The answer has 7.5 s, so the lookup is bounded by the
enqueue timeout; a Redis that does not answer blocks nobody, and the web process says so in
a log line.

Between scans the hash may lag the table by one interval: an anomaly raised by a scan is
blocking as soon as that scan ends, and one acknowledged stops blocking as soon as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
import redis
import redis.asyncio

from ingest.db import require
from ingest.ops import anomalies
from ingest.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["FlaggedCallers", "key", "publish", "refresh"]


def key(namespace: str) -> str:
    return f"{namespace}:flagged-callers"


def publish(client: redis.Redis, namespace: str, flagged: Mapping[str, int]) -> None:
    """Make the hash exactly ``flagged`` (pseudonym -> anomaly id), atomically."""
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(key(namespace))
        if flagged:
            pipe.hset(key(namespace), mapping={pseudonym: str(anomaly) for pseudonym, anomaly in flagged.items()})
        pipe.execute()


def refresh(conn: psycopg.Connection[Any], settings: Settings) -> int:
    """Publish the open repeat-caller anomalies of ``conn``'s database; return how many callers are flagged."""
    flagged = anomalies.flagged_callers(conn, settings.anomalies.block_hours)
    client = redis.Redis.from_url(require(settings.redis_url, "REDIS_URL"), socket_timeout=5, socket_connect_timeout=5)
    try:
        publish(client, settings.queue_namespace, flagged)
    finally:
        client.close()
    return len(flagged)


class FlaggedCallers:
    """The web process's reader of the hash; opened lazily on the event loop."""

    def __init__(self, redis_url: str, namespace: str, *, timeout: float) -> None:
        self._key = key(namespace)
        self._client = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )

    async def lookup(self, pseudonym: str) -> int | None:
        """The id of the anomaly that flags ``pseudonym``; None when it is not flagged or Redis is away."""
        try:
            anomaly = await self._client.hget(self._key, pseudonym)
        except (redis.RedisError, OSError) as exc:
            log.warning("flagged callers unreadable: caller not checked", extra={"error": type(exc).__name__})
            return None
        return int(anomaly) if anomaly is not None else None

    async def close(self) -> None:
        await self._client.aclose()
