"""Reading what the endpoint put on the Dramatiq queue, the way a Dramatiq worker would."""

from __future__ import annotations

from typing import Any

import redis
from dramatiq import Message

QUEUE = "vapi-events"


def queued(redis_url: str, namespace: str, queue: str = QUEUE) -> list[Message[Any]]:
    """Every message waiting on ``queue``, in order, decoded by Dramatiq itself."""
    client = redis.Redis.from_url(redis_url)
    try:
        ids = client.lrange(f"{namespace}:{queue}", 0, -1)
        data = client.hmget(f"{namespace}:{queue}.msgs", ids) if ids else []
    finally:
        client.close()
    return [Message.decode(item) for item in data if item is not None]


def queued_bodies(redis_url: str, namespace: str, queue: str = QUEUE) -> list[dict[str, Any]]:
    """The webhook bodies carried by the queued messages."""
    return [message.args[0] for message in queued(redis_url, namespace, queue)]
