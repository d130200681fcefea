"""Replay memory: a signed request Vapi waits on is not run again within its window.

An HMAC signature with a timestamp is valid for ``VAPI_HMAC_TOLERANCE`` seconds either way,
so whoever captures a signed ``tool-calls`` could send it again and have the tools run
again. Each accepted signature is remembered in Redis (``SET NX``, key
``<INGEST_REDIS_NAMESPACE>:replay:<digest of the signature>``, expiring after twice the
tolerance: the whole span in which its timestamp is accepted). The digest is of the
signature ``verify`` computed, not of the header as received, so adding a second
signature or changing case makes no new request.

- The first delivery runs as usual; for a request Vapi waits on (``REQUEST_TYPES``) its
  answer is stored with the signature, when at most ``MAX_ANSWER_BYTES``.
- A replay of a request gets that first answer back, byte for byte, and nothing runs; if
  the first is still being answered, the replay waits for it (at most the tool timeout
  and a second). Without a stored answer (too large, or the first never finished) it is
  a 409 ``replayed``.
- Informational messages are not remembered: the raw log's dedupe key already makes a
  replayed one change nothing, and a Redis round trip on every status update and report
  would cost the request path more than half its throughput.
- If the first delivery could not be kept (503), its signature is forgotten, so that the
  sender may send it again.

Redis down: requests fall back to a bounded memory of this process, so a replay to the
same process still runs nothing twice, and a log line says the shared protection is off (at
most every ``_WARN_EVERY`` seconds).
Only signed (HMAC) deliveries are remembered: a shared secret is the same on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio
from starlette.responses import Response

from ingest.metrics import counters
from ingest.vocabulary import REQUEST_TYPES
from ingest.web.errors import error_response

__all__ = ["MAX_ANSWER_BYTES", "Claim", "ReplayMemory"]

log = logging.getLogger("ingest.web.replays")

MAX_ANSWER_BYTES = 64 * 1024
PENDING = b""  # claimed, answer not stored yet
ANSWER = b"="  # prefix of a stored answer
NO_ANSWER = b"!"  # answered, but too large to keep (or an informational message)
_POLL = 0.05
_LOCAL_ENTRIES = 10_000
_REDIS_PAUSE = 1.0  # after a Redis failure, how long it is left alone
_WARN_EVERY = 60.0


@dataclass
class Claim:
    """What the memory decided for one delivery: ``answer`` is set for a replay."""

    memory: ReplayMemory | None = None
    key: str | None = None
    answer: Response | None = None

    async def keep(self, reply: dict[str, Any] | None) -> None:
        """Store the first answer, for the replays to come."""
        if self.memory is not None and self.key is not None:
            value = NO_ANSWER
            if reply is not None:
                encoded = orjson.dumps(reply)
                value = ANSWER + encoded if len(encoded) <= MAX_ANSWER_BYTES else NO_ANSWER
            await self.memory.store(self.key, value)

    async def release(self) -> None:
        """Forget the signature: the delivery was not kept, so sending it again is no replay."""
        if self.memory is not None and self.key is not None:
            await self.memory.forget(self.key)


NOTHING = Claim()


@dataclass
class ReplayMemory:
    """Signatures seen in the last ``2 × tolerance`` seconds, in Redis (else in this process)."""

    redis_url: str | None
    namespace: str
    tolerance: int
    timeout: float = 0.25
    wait: float = 6.0  # how long a replay waits for the first answer
    _client: redis.asyncio.Redis | None = field(default=None, init=False, repr=False)
    _paused_until: float = field(default=0.0, init=False, repr=False)
    _warned_at: float = field(default=-math.inf, init=False, repr=False)
    _error: str | None = field(default=None, init=False, repr=False)
    _local: OrderedDict[str, tuple[float, bytes]] = field(default_factory=OrderedDict, init=False, repr=False)

    async def claim(self, signature: bytes | None, kind: str, call: str | None) -> Claim:
        """The first sight of ``signature``: a claim to keep the answer with; a replay: its answer."""
        if signature is None or kind not in REQUEST_TYPES:
            return NOTHING
        key = f"{self.namespace}:replay:{hashlib.sha256(signature).hexdigest()[:32]}"
        first = await self._claim_shared(key)
        if first is None:  # Redis did not answer
            first = self._claim_local(key)
        if first:
            return Claim(self, key)
        return Claim(answer=await self._replayed(key, kind, call))

    async def store(self, key: str, value: bytes) -> None:
        if key in self._local:
            self._local[key] = (self._local[key][0], value)
            return
        try:
            await self._redis().set(key, value, xx=True, keepttl=True)
        except redis.RedisError as exc:
            self._down(exc)

    async def forget(self, key: str) -> None:
        self._local.pop(key, None)
        try:
            await self._redis().delete(key)
        except redis.RedisError as exc:
            self._down(exc)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _replayed(self, key: str, kind: str, call: str | None) -> Response:
        deadline = time.monotonic() + self.wait
        value = await self._read(key)
        while value == PENDING and time.monotonic() < deadline:
            await asyncio.sleep(_POLL)
            value = await self._read(key)
        if value is not None and value.startswith(ANSWER):
            self._count(kind, call, "first_answer")
            return Response(value[len(ANSWER) :], media_type="application/json")
        self._count(kind, call, "refused")
        detail = "this signed request was already received; its answer is not kept"
        return error_response(409, "replayed", detail)

    def _count(self, kind: str, call: str | None, answer: str) -> None:
        counters.replay(kind, answer)
        log.warning("replay", extra={"type": counters.type_label(kind), "call_id": call, "answer": answer})

    async def _claim_shared(self, key: str) -> bool | None:
        if time.monotonic() >= self._paused_until:
            try:
                return bool(await self._redis().set(key, PENDING, nx=True, ex=2 * self.tolerance))
            except redis.RedisError as exc:
                self._down(exc)
        self._off()
        return None

    def _claim_local(self, key: str) -> bool:
        now = time.monotonic()
        while self._local and next(iter(self._local.values()))[0] <= now:
            self._local.popitem(last=False)
        if key in self._local:
            return False
        self._local[key] = (now + 2 * self.tolerance, PENDING)
        if len(self._local) > _LOCAL_ENTRIES:
            self._local.popitem(last=False)
        return True

    async def _read(self, key: str) -> bytes | None:
        if key in self._local:
            return self._local[key][1]
        try:
            value = await self._redis().get(key)
        except redis.RedisError as exc:
            self._down(exc)
            return None
        return value if isinstance(value, bytes) else None

    def _redis(self) -> redis.asyncio.Redis:
        if self.redis_url is None:
            raise redis.ConnectionError("no REDIS_URL")
        if self._client is None:
            self._client = redis.asyncio.Redis.from_url(
                self.redis_url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return self._client

    def _down(self, exc: Exception) -> None:
        self._paused_until = time.monotonic() + _REDIS_PAUSE
        self._error = type(exc).__name__

    def _off(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning(
                "replay protection off: redis unavailable",
                extra={
                    "informational": "accepted without replay check",
                    "requests": "remembered in this process only",
                    "error": self._error,
                },
            )
