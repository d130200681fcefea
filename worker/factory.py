"""The Redis broker the workers use, built from settings, with no side effects.

``worker.broker`` builds the process's broker with it at import; tests build their own.
"""

from __future__ import annotations

from dramatiq.middleware import AgeLimit, Retries, TimeLimit

from ingest.db import require
from ingest.settings import Settings
from worker.acks import Broker
from worker.middleware import Resources


def make_broker(settings: Settings) -> tuple[Broker, Resources]:
    url = require(settings.redis_url, "REDIS_URL")
    settings.require_keys()  # no worker seals nothing by accident
    # Only the middleware this service uses. Dramatiq's defaults add Callbacks, Pipelines and
    # ShutdownNotifications, and every middleware is called at each step of every message.
    middleware = [AgeLimit(), TimeLimit(), Retries()]
    broker = Broker(
        url=url,
        namespace=settings.queue_namespace,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        middleware=middleware,
    )
    resources = Resources(settings)
    # Before Retries: "after" hooks run in reverse order, so Resources sees a message only
    # after Retries has decided whether it failed for good (``message.failed``).
    broker.add_middleware(resources, before=Retries)
    broker.declare_queue(settings.queue_name)
    return broker, resources
