"""The Dramatiq broker, configured before any actor module is imported.

``worker.actors`` imports this module first, so ``dramatiq.set_broker`` has run by the
time any ``@dramatiq.actor`` binds. Messages are JSON (orjson), the same bytes the
endpoint writes straight to Redis.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Retries, TimeLimit

from ingest.db import require
from ingest.settings import Settings
from worker.encoder import OrjsonEncoder
from worker.middleware import Resources


def make_broker(settings: Settings) -> tuple[RedisBroker, Resources]:
    url = require(settings.redis_url, "REDIS_URL")
    # Only the middleware this service uses. Dramatiq's defaults add Callbacks, Pipelines and
    # ShutdownNotifications, and every middleware is called at each step of every message.
    middleware = [AgeLimit(), TimeLimit(), Retries()]
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=url,
        namespace=settings.queue_namespace,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        middleware=middleware,
    )
    resources = Resources(settings)
    broker.add_middleware(resources)
    broker.declare_queue(settings.queue_name)
    return broker, resources


settings = Settings.from_env()
broker, resources = make_broker(settings)
dramatiq.set_encoder(OrjsonEncoder())
dramatiq.set_broker(broker)
