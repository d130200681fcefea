"""Acknowledgements gathered and sent together instead of one Redis script call per message.

Dramatiq's Redis consumer acknowledges each message as its worker thread finishes it: one
call of the broker's dispatch script per message, about a tenth of a worker's CPU in a
profile (bench/README.md). Here ``ack`` only notes the message; the consumer thread sends
the noted acknowledgements in one script call whenever it asks for the next message (under
load, all the time; idle, every ``WORKER_IDLE_POLL_MS``) and when it closes.

An acknowledgement does what the dispatch script's ``ack`` does (the message leaves this
worker's set of fetched messages, and the queue's hash), so the data layout stays Dramatiq's.
Sent late, it changes nothing a crash did not already allow: a message fetched and not yet
acknowledged is given back to the queue once the worker's heartbeat is old, and applying
an event again is a duplicate (``call_events``' dedupe key). One that fails to be sent is
kept and sent with the next ones.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed

from ingest.queue_keys import QueueKeys

# KEYS: this worker's set of fetched messages, the queue's hash of messages; ARGV: message ids.
ACK_MANY = """
for i = 1, #ARGV do
    if redis.call("srem", KEYS[1], ARGV[i]) > 0 then
        redis.call("hdel", KEYS[2], ARGV[i])
    end
end
return #ARGV
"""


class GatheringConsumer(_RedisConsumer):
    """A Redis consumer whose acknowledgements are sent together by the consumer thread."""

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self._noted: list[str] = []
        self._lock = threading.Lock()
        # Dramatiq's own names (dispatch.lua): $namespace:__acks__.$worker_id.$queue_name
        self._keys = [
            f"{broker.namespace}:__acks__.{broker.broker_id}.{queue_name}",
            QueueKeys(broker.namespace, queue_name).messages,
        ]
        self._ack_many = broker.client.register_script(ACK_MANY)

    def ack(self, message: MessageProxy) -> None:
        with self._lock:
            self._noted.append(message.options["redis_message_id"])
        self.queued_message_ids.discard(message.message_id)

    def send_acks(self) -> int:
        """Send the acknowledgements noted so far in one call; how many."""
        with self._lock:
            ids, self._noted = self._noted, []
        if not ids:
            return 0
        try:
            self._ack_many(keys=self._keys, args=ids)
        except redis.RedisError as exc:
            with self._lock:
                self._noted[:0] = ids  # sent with the next ones
            if isinstance(exc, redis.ConnectionError):
                raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
            raise
        return len(ids)

    def __next__(self) -> Any:
        self.send_acks()
        return super().__next__()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        # Redis unreachable: like an acknowledgement Dramatiq fails to send, the messages stay
        # fetched by this worker, given back to the queue once its heartbeat is old.
        with contextlib.suppress(redis.RedisError, ConnectionClosed):
            self.send_acks()
        super().close()


class Broker(RedisBroker):
    """Dramatiq's Redis broker, with consumers that gather their acknowledgements."""

    @property
    def consumer_class(self) -> type[GatheringConsumer]:
        return GatheringConsumer
