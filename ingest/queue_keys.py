"""Where Dramatiq's Redis broker keeps a queue: the one home of its key layout.

The web process writes messages exactly as Dramatiq's ``RedisBroker`` would
(``ingest.web.enqueue``), and the ops side reads and repairs them (``ingest.ops.backlog``,
``ingest.ops.dead_letters``), so all of them must agree with Dramatiq on these names
(dramatiq/brokers/redis.py: ``<namespace>:<queue>``, ``.msgs``, ``.DQ`` delayed, ``.XQ``
dead-lettered).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueKeys:
    namespace: str
    queue: str

    @property
    def ready(self) -> str:
        """A list of message ids waiting to be fetched."""
        return f"{self.namespace}:{self.queue}"

    @property
    def messages(self) -> str:
        """A hash of id -> message for every message not yet acknowledged (ready or fetched)."""
        return f"{self.ready}.msgs"

    @property
    def delayed(self) -> str:
        """The delay queue's id list (retries waiting for their eta)."""
        return f"{self.ready}.DQ"

    @property
    def delayed_messages(self) -> str:
        return f"{self.delayed}.msgs"

    @property
    def dead(self) -> str:
        """A sorted set of dead-lettered message ids, scored by when they died (ms)."""
        return f"{self.ready}.XQ"

    @property
    def dead_messages(self) -> str:
        return f"{self.dead}.msgs"
