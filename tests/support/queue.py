"""Reading what the endpoint put on the Dramatiq queue, the way a Dramatiq worker would."""

from __future__ import annotations

from typing import Any

import redis
from dramatiq import Message

from ingest.queue_keys import QueueKeys

QUEUE = "vapi-events"


def queued(redis_url: str, namespace: str, queue: str = QUEUE) -> list[Message[Any]]:
    """Every message waiting on ``queue``, in order, decoded by Dramatiq itself."""
    client = redis.Redis.from_url(redis_url)
    try:
        ids = client.lrange(QueueKeys(namespace, queue).ready, 0, -1)
        data = client.hmget(QueueKeys(namespace, queue).messages, ids) if ids else []
    finally:
        client.close()
    return [Message.decode(item) for item in data if item is not None]


def queued_bodies(redis_url: str, namespace: str, queue: str = QUEUE) -> list[dict[str, Any]]:
    """The webhook bodies carried by the queued messages."""
    return [message.args[0] for message in queued(redis_url, namespace, queue)]


def enqueue(redis_url: str, namespace: str, bodies: list[bytes], received_at_ms: int, queue: str = QUEUE) -> None:
    """Queue raw webhook bodies exactly as the endpoint does (same message encoding)."""
    from ingest.web.enqueue import encode_message
    from support.apply import queued_body

    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=True)
        for raw in bodies:
            redis_id, data = encode_message(queue, queued_body(raw), received_at_ms)
            pipe.hset(QueueKeys(namespace, queue).messages, redis_id, data)
            pipe.rpush(QueueKeys(namespace, queue).ready, redis_id)
        pipe.execute()
    finally:
        client.close()


def dead_letters(redis_url: str, namespace: str, queue: str = QUEUE) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard(QueueKeys(namespace, queue).dead))
    finally:
        client.close()
