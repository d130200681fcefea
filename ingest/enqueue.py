"""Putting deliveries on the Dramatiq queue from the event loop, cheaply.

A plain ``actor.send`` is a blocking Redis round trip per delivery. Here an async Redis
client writes messages exactly as Dramatiq's Redis broker does (the message in the
``<ns>:<queue>.msgs`` hash, its id pushed on the ``<ns>:<queue>`` list), and deliveries
that arrive while a write is in flight share the next one: one MULTI/EXEC round trip for
the whole batch. The worker is an ordinary Dramatiq worker consuming that queue.

The message body is spliced in as raw JSON (it was parsed, so it is valid), which spares
re-encoding a large end-of-call report on the request path.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

ACTOR_NAME = "apply_event"
DEFAULT_NAMESPACE = "dramatiq"


class EnqueueError(Exception):
    """Redis did not take the message in time; the caller keeps it elsewhere."""


def message_parts(queue_name: str, body: bytes, received_at_ms: int) -> tuple[str, bytes, bytes, bytes]:
    """A Dramatiq message calling ``apply_event(body, received_at_ms)``, in three pieces.

    ``head + body + tail`` is the message; it is sent to Redis in pieces and joined there,
    because joining a large report here costs a fresh multi-page allocation and a copy per
    delivery. Returns the message's Redis id first.
    """
    redis_id = str(uuid.uuid4())
    head = orjson.dumps(
        {
            "queue_name": queue_name,
            "actor_name": ACTOR_NAME,
            "kwargs": {},
            "options": {"redis_message_id": redis_id},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": int(time.time() * 1000),
        }
    )
    return redis_id, head[:-1] + b',"args":[', body, b"," + str(received_at_ms).encode() + b"]}"


def encode_message(queue_name: str, body: bytes, received_at_ms: int) -> tuple[str, bytes]:
    """The whole message as bytes, with its Redis id (for tools that write it themselves)."""
    redis_id, head, body, tail = message_parts(queue_name, body, received_at_ms)
    return redis_id, b"".join((head, body, tail))


# One atomic command per batch: each message, joined from its pieces, into the queue's
# hash and its id onto the list — what Dramatiq's own "enqueue" dispatch does, per message.
ENQUEUE_BATCH = """
for i = 1, #ARGV, 4 do
    redis.call("hset", KEYS[1], ARGV[i], ARGV[i + 1] .. ARGV[i + 2] .. ARGV[i + 3])
    redis.call("rpush", KEYS[2], ARGV[i])
end
return #ARGV / 4
"""


class Enqueuer:
    """Batches messages onto one Dramatiq queue; every ``send`` waits for its batch's write."""

    def __init__(
        self,
        redis_url: str,
        queue_name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 0.5,
        max_batch: int = 256,
    ) -> None:
        self.queue_name = queue_name
        self.timeout = timeout
        self.max_batch = max_batch
        self._client = aioredis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=16
        )
        self._keys = [f"{namespace}:{queue_name}.msgs", f"{namespace}:{queue_name}"]
        self._enqueue_batch = self._client.register_script(ENQUEUE_BATCH)
        self._batch: list[tuple[tuple[str, bytes, bytes, bytes], asyncio.Future[None]]] = []
        self._flushing = False

    async def close(self) -> None:
        await self._client.aclose()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def send(self, body: bytes, received_at_ms: int) -> None:
        """Queue one delivery; raises ``EnqueueError`` when Redis fails or is slower than the timeout."""
        parts = message_parts(self.queue_name, body, received_at_ms)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((parts, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush_loop())
        await future

    async def _flush_loop(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch[: self.max_batch], self._batch[self.max_batch :]
                await self._write(batch)
        finally:
            self._flushing = False

    async def _write(self, batch: list[tuple[tuple[str, bytes, bytes, bytes], asyncio.Future[None]]]) -> None:
        error: BaseException | None = None
        try:
            args = [part for parts, _ in batch for part in parts]
            async with asyncio.timeout(self.timeout):
                await self._enqueue_batch(keys=self._keys, args=args)
        except Exception as exc:  # whatever went wrong, every waiting request must get an answer
            error = EnqueueError(f"redis enqueue failed: {type(exc).__name__}: {exc}")
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
