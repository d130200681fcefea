"""Acknowledgements held until an event is durable, then gathered and sent together.

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

**Held acknowledgements.** A worker thread hands its event to the group commit and returns
at once (``worker.process.hand_over``), free to take the next message while the batch is
committed; so Dramatiq's worker thread finishes a message before its event is durable.
Such a message is *held* (``hold``): the thread's ``ack`` only marks it returned, and the
acknowledgement is noted when the commit reports (``release``), whichever of the two comes
last. An event that failed at commit is given to Dramatiq's middleware then, as if the
actor had raised it (``Retries`` enqueues the retry or gives up, then the message is
acknowledged or dead-lettered). A held message counts as outstanding, so the events in
flight per process are bounded by the prefetch (``WORKER_PREFETCH``). Closing waits for
the held messages' commits, then sends their acknowledgements.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed

from ingest.queue_keys import QueueKeys

log = logging.getLogger("ingest.worker")

# KEYS: this worker's set of fetched messages, the queue's hash of messages; ARGV: message ids.
ACK_MANY = """
for i = 1, #ARGV do
    if redis.call("srem", KEYS[1], ARGV[i]) > 0 then
        redis.call("hdel", KEYS[2], ARGV[i])
    end
end
return #ARGV
"""


class Held:
    """Messages whose acknowledgement waits for their commit, and the lock every consumer shares."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)
        # message id → False while its worker thread runs, True once the thread has returned
        self.messages: dict[str, bool] = {}


class GatheringConsumer(_RedisConsumer):
    """A Redis consumer whose acknowledgements are sent together by the consumer thread."""

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self._noted: list[str] = []
        # The held messages are the broker's, not this consumer's: Dramatiq makes a new
        # consumer after a connection error, and a worker thread finishing a message fetched
        # by the old one then reports to the new one.
        held = broker.held if isinstance(broker, Broker) else Held()
        self._lock = held.lock
        self._settled = held.settled
        self._held = held.messages
        self._closed = False
        # Dramatiq's own names (dispatch.lua): $namespace:__acks__.$worker_id.$queue_name
        self._keys = [
            f"{broker.namespace}:__acks__.{broker.broker_id}.{queue_name}",
            QueueKeys(broker.namespace, queue_name).messages,
        ]
        self._ack_many = broker.client.register_script(ACK_MANY)

    def ack(self, message: MessageProxy) -> None:
        if not self._returned(message):
            self._note(message)

    def nack(self, message: MessageProxy) -> None:
        if not self._returned(message):
            self._dead_letter(message)

    def hold(self, message: MessageProxy) -> None:
        """Keep ``message`` unacknowledged until ``release``, whatever its worker thread does meanwhile."""
        with self._lock:
            self._held[message.message_id] = False

    def unhold(self, message: MessageProxy) -> None:
        """Its event was not handed over after all: the worker thread settles ``message`` as usual."""
        with self._lock:
            self._held.pop(message.message_id, None)
            self._settled.notify_all()

    def release(self, message: MessageProxy, error: BaseException | None = None) -> None:
        """The held message's event is committed, or failed with ``error``: settle the message.

        A failure goes to Dramatiq's middleware as the actor's exception would have, so that
        ``Retries`` enqueues the retry or marks the message failed (dead-lettered here).
        """
        if error is not None:
            try:
                try:
                    raise error  # Retries keeps the traceback it finds being handled
                except BaseException:
                    self.broker.emit_after("process_message", message, exception=error)
            except Exception as exc:
                # Redis refused the retry (Retries enqueues it): the event waits in call_events,
                # recorded pending with its error, for the sweeper. The message is settled all
                # the same, or its place in flight would stay taken for good.
                log.warning("a failed event's retry could not be queued", extra={"error": type(exc).__name__})
        with self._lock:
            returned = self._held.pop(message.message_id, None)
            if returned is False:  # the worker thread settles it when it returns
                self._held[message.message_id] = True
                return
            self._settled.notify_all()
        if message.failed:
            self._dead_letter(message)
        else:
            self._note(message)

    def _returned(self, message: MessageProxy) -> bool:
        """The worker thread is done with ``message``; True if it is held, to be settled by ``release``."""
        with self._lock:
            returned = self._held.get(message.message_id)
            if returned is None:
                return False
            if returned is False:
                self._held[message.message_id] = True
                return True
            del self._held[message.message_id]  # released first: settled now, by the thread
            self._settled.notify_all()
            return False

    def _note(self, message: MessageProxy) -> None:
        with self._lock:
            self._noted.append(message.options["redis_message_id"])
            self.queued_message_ids.discard(message.message_id)
            closed = self._closed
            self._settled.notify_all()  # a place in flight is free (see __next__)
        if closed:  # nobody fetches any more: send it now
            with contextlib.suppress(redis.RedisError, ConnectionClosed):
                self.send_acks()

    def _dead_letter(self, message: MessageProxy) -> None:
        super().nack(message)  # type: ignore[no-untyped-call]
        with self._lock:
            self._settled.notify_all()

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
        if not self.message_cache and self.outstanding_message_count >= self.prefetch:
            # Every place in flight is taken. Dramatiq would sleep 5 ms, then 10, 20, … up to
            # the idle poll, however soon a commit frees places; wait for a quarter of them
            # instead (fetched in one call, not one by one), at most one idle poll.
            refill = self.prefetch - max(1, self.prefetch // 4)
            with self._lock:
                self._settled.wait_for(lambda: self.outstanding_message_count <= refill, self.timeout / 1000)
            self.send_acks()
            self.misses = 0
        return super().__next__()  # type: ignore[no-untyped-call]

    def close(self, timeout: float = 10.0) -> None:
        # First the held messages' commits (the group commit closes after the consumers), so
        # their acknowledgements go now rather than as duplicates once the heartbeat is old.
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._held and (left := deadline - time.monotonic()) > 0:
                self._settled.wait(left)
            self._closed = True
        # Redis unreachable: like an acknowledgement Dramatiq fails to send, the messages stay
        # fetched by this worker, given back to the queue once its heartbeat is old.
        with contextlib.suppress(redis.RedisError, ConnectionClosed):
            self.send_acks()
        super().close()


class Broker(RedisBroker):
    """Dramatiq's Redis broker, with consumers that gather their acknowledgements."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.consumers: dict[str, GatheringConsumer] = {}  # the newest per queue
        self.held = Held()

    @property
    def consumer_class(self) -> type[GatheringConsumer]:
        return GatheringConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> GatheringConsumer:
        consumer = GatheringConsumer(self, queue_name, prefetch, timeout)
        self.consumers[queue_name] = consumer
        return consumer
