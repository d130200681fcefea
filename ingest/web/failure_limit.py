"""Failed attempts per client address, limited with the ``limits`` library in Redis.

The counts live in the service's Redis (``REDIS_URL``, keys under
``<INGEST_REDIS_NAMESPACE>:limits:``), so one limit holds across every web process. The
strategy is a moving window: at most ``item.amount`` failures in any ``item`` period, and
an address past it may try again once its oldest failure in the window has aged out.
Only failures are counted: whoever has the right credentials never adds to a count, and
each address has its own, so others' failures never stop a login.

If Redis does not answer, each web process counts in its own memory instead (the limit
then holds per process) and says so in a log line, at most once a minute.
"""

from __future__ import annotations

import logging
import math
import time

import redis.asyncio
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from ingest.errors import ConfigError

__all__ = ["FailureLimit", "parse_limit"]

log = logging.getLogger("ingest.web.failure_limit")

_TIMEOUT = 1.0
_WARN_EVERY = 60.0


def parse_limit(variable: str, text: str) -> RateLimitItem:
    """``10/minute``, ``5 per 30 seconds``… in the ``limits`` notation, or a ``ConfigError`` naming ``variable``."""
    try:
        item = parse(text)
    except ValueError:
        raise ConfigError(f"{variable}: {text!r} is not a limit such as 10/minute or 20 per 5 minutes") from None
    if item.amount < 1:
        raise ConfigError(f"{variable}: the limit must allow at least 1")
    return item


class FailureLimit:
    """Counts failures of ``name`` (``ops-login``…) per address; opened lazily on the event loop."""

    def __init__(self, redis_url: str | None, namespace: str, name: str, item: RateLimitItem) -> None:
        self.name = name
        self.item = item
        self._redis_url = redis_url
        self._prefix = f"{namespace}:limits"
        self._pool: redis.asyncio.ConnectionPool | None = None
        self._shared: MovingWindowRateLimiter | None = None
        self._local: MovingWindowRateLimiter | None = None
        self._warned_at = -math.inf

    async def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None when it may try now."""
        try:
            stats = await self._limiter().get_window_stats(self.item, self.name, address)
        except StorageError as exc:
            self._warn(exc)
            stats = await self._fallback().get_window_stats(self.item, self.name, address)
        if stats.remaining > 0:
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def failed(self, address: str) -> None:
        """Count one failure of ``address``."""
        try:
            await self._limiter().hit(self.item, self.name, address)
        except StorageError as exc:
            self._warn(exc)
            await self._fallback().hit(self.item, self.name, address)

    async def close(self) -> None:
        pool, self._pool, self._shared = self._pool, None, None
        if pool is not None:
            await pool.aclose()

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._redis_url is None:
            return self._fallback()
        if self._shared is None:
            self._pool = redis.asyncio.ConnectionPool.from_url(
                self._redis_url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
            )
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=self._prefix,
                wrap_exceptions=True,
                connection_pool=self._pool,  # type: ignore[arg-type]  # documented; the stub says only scalars
            )
            self._shared = MovingWindowRateLimiter(storage)
        return self._shared

    def _fallback(self) -> MovingWindowRateLimiter:
        if self._local is None:
            self._local = MovingWindowRateLimiter(MemoryStorage())
        return self._local

    def _warn(self, exc: StorageError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            error = type(exc.storage_error).__name__
            log.warning(
                "failure limit counted in this process only: redis unavailable",
                extra={"limit": self.name, "error": error},
            )
