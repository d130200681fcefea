"""ingest.queue_keys: the key layout agrees with Dramatiq's own Redis broker."""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from ingest.queue_keys import QueueKeys


def test_dramatiq_writes_where_queue_keys_says(redis_server_url: str, redis_namespace: str) -> None:
    """A message Dramatiq's broker enqueues (now and delayed) lands in the keys QueueKeys names."""
    broker = RedisBroker(url=redis_server_url, namespace=redis_namespace)
    try:

        @dramatiq.actor(broker=broker, queue_name="keys-test")
        def noop() -> None: ...

        now = noop.send()
        later = noop.send_with_options(delay=60_000)
        keys = QueueKeys(redis_namespace, "keys-test")
        client = redis.Redis.from_url(redis_server_url)
        # The broker keys each stored message by its own redis_message_id.
        now_id, later_id = now.options["redis_message_id"], later.options["redis_message_id"]
        assert client.lrange(keys.ready, 0, -1) == [now_id.encode()]
        assert client.hexists(keys.messages, now_id)
        assert client.hexists(keys.delayed_messages, later_id)
        client.close()
    finally:
        broker.close()
