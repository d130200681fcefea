"""Putting deliveries on the Dramatiq queue from the event loop, cheaply.

A plain ``actor.send`` is a blocking Redis round trip per delivery. Here messages are
written exactly as Dramatiq's Redis broker does (the message in the ``<ns>:<queue>.msgs``
hash, its id pushed on the ``<ns>:<queue>`` list) by one MULTI/EXEC per event-loop turn:
every delivery handled in the same turn shares it (one HSET, one RPUSH). Calls go through
``RedisPipe``, one pipelined connection, so a batch never waits for the previous one's
reply. The worker is an ordinary Dramatiq worker consuming that queue.

The message body is spliced in as raw JSON (it was parsed, so it is valid), which spares
re-encoding a large end-of-call report on the request path, and the message goes to Redis
in pieces that are never joined here (a Lua script joining them in Redis costs Redis more:
bench/README.md has the figures).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid

import orjson

from ingest.queue_keys import QueueKeys
from ingest.web.redis_pipe import Arg, RedisPipe, RedisPipeError

# The worker actor's name on the wire (``worker.actors.apply_queued_event``): messages already
# queued carry it, so it never changes.
ACTOR_NAME = "apply_event"
DEFAULT_NAMESPACE = "dramatiq"


class EnqueueError(Exception):
    """Redis did not take the message in time; the caller keeps it elsewhere."""


def message_parts(queue_name: str, body: bytes, received_at_ms: int) -> tuple[str, bytes, bytes, bytes]:
    """A Dramatiq message calling ``apply_event(body, received_at_ms)``, in three pieces.

    ``head + body + tail`` is the message; it is written to the socket in pieces, because
    joining a large report here costs a fresh multi-page allocation and a copy per
    delivery. Returns the message's Redis id first. The message id doubles as the Redis id
    (Dramatiq gives a retried message a new Redis id and keeps its message id).
    """
    message_id = str(uuid.uuid4())
    head = orjson.dumps(
        {
            "queue_name": queue_name,
            "actor_name": ACTOR_NAME,
            "kwargs": {},
            "options": {"redis_message_id": message_id},
            "message_id": message_id,
            "message_timestamp": int(time.time() * 1000),
        }
    )
    return message_id, head[:-1] + b',"args":[', body, b",%d]}" % received_at_ms


def encode_message(queue_name: str, body: bytes, received_at_ms: int) -> tuple[str, bytes]:
    """The whole message as bytes, with its Redis id (for tools that write it themselves)."""
    redis_id, head, body, tail = message_parts(queue_name, body, received_at_ms)
    return redis_id, b"".join((head, body, tail))


Parts = tuple[bytes, bytes, bytes, bytes]


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
        self._redis = RedisPipe(redis_url, connect_timeout=timeout)
        keys = QueueKeys(namespace, queue_name)
        self._keys = [keys.messages.encode(), keys.ready.encode()]
        self._batch: list[tuple[Parts, asyncio.Future[None]]] = []

    async def close(self) -> None:
        await self._redis.close()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self._redis.call(b"PING") == b"PONG")
        except (RedisPipeError, TimeoutError):
            return False

    async def send(self, body: bytes, received_at_ms: int) -> None:
        """Queue one delivery; raises ``EnqueueError`` when Redis fails or is slower than the timeout."""
        redis_id, head, body, tail = message_parts(self.queue_name, body, received_at_ms)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._flush)
        self._batch.append(((redis_id.encode(), head, body, tail), future))
        await future

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._batch:
            batch, self._batch = self._batch[: self.max_batch], self._batch[self.max_batch :]
            messages: list[Arg] = [b"HSET", self._keys[0]]
            ids: list[Arg] = [b"RPUSH", self._keys[1]]
            for (redis_id, head, body, tail), _ in batch:
                messages += (redis_id, (head, body, tail))
                ids.append(redis_id)
            futures = [future for _, future in batch]
            reply = self._redis.transaction(messages, ids)
            expiry = loop.call_later(self.timeout, self._expire, futures)
            reply.add_done_callback(functools.partial(self._settle, futures, expiry))

    def _expire(self, futures: list[asyncio.Future[None]]) -> None:
        error = EnqueueError(f"redis did not answer within {self.timeout * 1000:.0f} ms")
        for future in futures:
            if not future.done():
                future.set_exception(error)
        # A Redis this slow is not to be waited for again on the same connection: whatever
        # else waits on it falls back too (a late write that lands is a harmless duplicate).
        self._redis.drop()

    def _settle(
        self, futures: list[asyncio.Future[None]], expiry: asyncio.TimerHandle, reply: asyncio.Future[object]
    ) -> None:
        expiry.cancel()
        error: EnqueueError | None = None
        if reply.cancelled():
            error = EnqueueError("redis enqueue cancelled")
        elif (exc := reply.exception()) is not None:
            error = EnqueueError(f"redis enqueue failed: {type(exc).__name__}: {exc}")
        for future in futures:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
