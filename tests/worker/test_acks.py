"""Gathered acknowledgements: noted by worker threads, sent together, never lost on a failed send."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from ingest.queue_keys import QueueKeys
from worker.acks import Broker, GatheringConsumer

QUEUE = "acks-test"


@pytest.fixture
def broker(redis_server_url: str, redis_namespace: str) -> Iterator[RedisBroker]:
    made = Broker(url=redis_server_url, namespace=redis_namespace, middleware=[])  # type: ignore[no-untyped-call]
    made.declare_queue(QUEUE)
    yield made
    made.close()


def fetch(broker: RedisBroker, count: int) -> tuple[GatheringConsumer, list[dramatiq.broker.MessageProxy]]:
    consumer = broker.consume(QUEUE, prefetch=count, timeout=100)
    assert isinstance(consumer, GatheringConsumer)
    messages = [next(consumer) for _ in range(count)]
    assert all(message is not None for message in messages)
    return consumer, messages


def enqueue(broker: RedisBroker, count: int) -> None:
    for n in range(count):
        broker.enqueue(dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(n,), kwargs={}, options={}))


def test_acks_are_sent_together_when_the_consumer_asks_for_more(broker: RedisBroker) -> None:
    """Acknowledged messages stay fetched until the consumer's next fetch, then all leave Redis in one call."""
    client: redis.Redis = broker.client
    keys = QueueKeys(broker.namespace, QUEUE)
    fetched = f"{broker.namespace}:__acks__.{broker.broker_id}.{QUEUE}"
    enqueue(broker, 3)
    consumer, messages = fetch(broker, 3)
    for message in messages:
        consumer.ack(message)
    assert client.scard(fetched) == 3
    assert client.hlen(keys.messages) == 3
    assert next(consumer) is None  # sends the acknowledgements, then finds the queue empty
    assert client.scard(fetched) == 0
    assert client.hlen(keys.messages) == 0
    assert consumer.send_acks() == 0
    consumer.close()


def test_a_failed_send_keeps_the_acks_for_the_next(broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """When Redis refuses the call, the acknowledgements are kept and go with the next send."""
    keys = QueueKeys(broker.namespace, QUEUE)
    enqueue(broker, 2)
    consumer, messages = fetch(broker, 2)
    consumer.ack(messages[0])
    working = consumer._ack_many

    def refuse(**_: object) -> None:
        raise redis.ResponseError("refused")

    monkeypatch.setattr(consumer, "_ack_many", refuse)
    with pytest.raises(redis.ResponseError):
        consumer.send_acks()
    monkeypatch.setattr(consumer, "_ack_many", working)
    consumer.ack(messages[1])
    assert consumer.send_acks() == 2
    assert broker.client.hlen(keys.messages) == 0
    consumer.close()


def test_closing_sends_what_was_noted(broker: RedisBroker) -> None:
    """A consumer closed at shutdown sends the acknowledgements it still holds."""
    keys = QueueKeys(broker.namespace, QUEUE)
    enqueue(broker, 1)
    consumer, (message,) = fetch(broker, 1)
    consumer.ack(message)
    consumer.close()
    assert broker.client.hlen(keys.messages) == 0


def held(broker: RedisBroker) -> tuple[GatheringConsumer, dramatiq.broker.MessageProxy, QueueKeys]:
    enqueue(broker, 1)
    consumer, (message,) = fetch(broker, 1)
    consumer.hold(message)
    return consumer, message, QueueKeys(broker.namespace, QUEUE)


@pytest.mark.parametrize("order", ["returned first", "released first"])
def test_a_held_message_is_acknowledged_once_returned_and_released(broker: RedisBroker, order: str) -> None:
    """Its worker thread's ack alone leaves it fetched; the commit's release alone too; both send it."""
    consumer, message, keys = held(broker)
    first, second = (consumer.ack, consumer.release) if order == "returned first" else (consumer.release, consumer.ack)
    first(message)
    assert consumer.send_acks() == 0
    assert broker.client.hlen(keys.messages) == 1
    assert consumer.outstanding_message_count == 1  # still in flight: counts against the prefetch
    second(message)
    assert consumer.send_acks() == 1
    assert broker.client.hlen(keys.messages) == 0
    assert consumer.outstanding_message_count == 0
    consumer.close()


def test_an_unheld_message_is_settled_by_its_thread(broker: RedisBroker) -> None:
    """``unhold`` (the event was never handed over) gives the message back to the usual ack."""
    consumer, message, keys = held(broker)
    consumer.unhold(message)
    consumer.ack(message)
    assert consumer.send_acks() == 1
    assert broker.client.hlen(keys.messages) == 0
    consumer.close()


def test_closing_waits_for_the_held_messages(broker: RedisBroker) -> None:
    """At shutdown the consumer waits for a held message's commit, then sends its acknowledgement."""
    consumer, message, keys = held(broker)
    consumer.ack(message)
    releaser = threading.Timer(0.3, consumer.release, args=(message,))
    releaser.start()
    started = time.monotonic()
    consumer.close()
    assert time.monotonic() - started >= 0.25
    assert broker.client.hlen(keys.messages) == 0


def test_closing_gives_up_on_a_commit_that_never_reports(broker: RedisBroker) -> None:
    """A held message whose commit never reports stays fetched (given back once the heartbeat is old)."""
    consumer, message, keys = held(broker)
    consumer.ack(message)
    consumer.close(timeout=0.2)
    assert broker.client.hlen(keys.messages) == 1
    consumer.release(message)  # reported after all, after closing: sent at once
    assert broker.client.hlen(keys.messages) == 0


def test_a_full_consumer_waits_for_places_to_free_then_fetches(broker: RedisBroker) -> None:
    """With every place in flight held, asking for more waits until commits free some (not a blind
    sleep that may outlast them), then fetches the next messages at once."""
    enqueue(broker, 3)
    consumer, messages = fetch(broker, 2)
    for message in messages:
        consumer.hold(message)
        consumer.ack(message)  # the worker threads are done, the commits are not
    timer = threading.Timer(0.05, lambda: [consumer.release(message) for message in messages])  # within a poll
    timer.start()
    started = time.monotonic()
    third = next(consumer)
    assert third is not None
    assert third.args == (2,)
    assert 0.04 <= time.monotonic() - started < 1
    consumer.close(timeout=0.1)


def test_a_message_held_by_a_replaced_consumer_waits_for_its_commit(broker: RedisBroker) -> None:
    """After a connection error Dramatiq makes a new consumer, and a worker thread finishing a
    message the old one fetched acknowledges it there: still not before its commit."""
    consumer, message, keys = held(broker)
    replacement = broker.consume(QUEUE, prefetch=1, timeout=100)
    assert isinstance(replacement, GatheringConsumer)
    replacement.ack(message)  # the worker thread returns, to the new consumer
    assert replacement.send_acks() == 0
    assert broker.client.hlen(keys.messages) == 1
    consumer.release(message)  # the commit reports, to the consumer that fetched it
    assert consumer.send_acks() == 1
    assert broker.client.hlen(keys.messages) == 0
    consumer.close(timeout=0.1)
    replacement.close(timeout=0.1)


def test_a_failure_whose_retry_cannot_be_queued_still_frees_its_place(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the middleware fail on a commit's error (Redis refusing the retry), the message is
    settled all the same: its place in flight is not lost (the event waits pending for the sweeper)."""
    consumer, message, keys = held(broker)
    consumer.ack(message)

    def refuse(*_: object, **__: object) -> None:
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(broker, "emit_after", refuse)
    consumer.release(message, RuntimeError("commit failed"))
    assert consumer.outstanding_message_count == 0
    assert consumer.send_acks() == 1
    assert broker.client.hlen(keys.messages) == 0
    consumer.close(timeout=0.1)
