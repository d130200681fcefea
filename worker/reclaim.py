"""Give a dead worker's unacknowledged messages back to the queue, on a schedule.

Dramatiq's Redis broker only does this in a maintenance pass that runs on a random 0.1 %
of its commands, after the dead worker's heartbeat is ``heartbeat_timeout`` old. Every
live worker process here asks for that pass explicitly once per sweep, so recovery after
a crash takes the heartbeat timeout plus one sweep interval, not luck. It runs the
broker's own dispatch script (an ``ack`` of an id that does not exist, with maintenance
forced on), so the data layout is Dramatiq's by construction.
"""

from __future__ import annotations

import time
import uuid

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name


def reclaim(broker: RedisBroker, queue_name: str) -> None:
    dispatch = broker.scripts["dispatch"]
    for name in (queue_name, dq_name(queue_name)):
        args = [
            "ack",
            int(time.time() * 1000),
            name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            "1",  # do_maintenance
            broker._max_unpack_size(),  # type: ignore[no-untyped-call]
            f"reclaim-{uuid.uuid4()}",  # acking an id that does not exist changes nothing
        ]
        dispatch(args=args, keys=[broker.namespace])
