"""The Dramatiq broker, configured before any actor module is imported.

``worker.actors`` imports this module first, so ``dramatiq.set_broker`` has run by the
time any ``@dramatiq.actor`` binds. Messages are JSON (orjson), the same bytes the
endpoint writes straight to Redis.
"""

from __future__ import annotations

import dramatiq

from ingest.settings import Settings
from worker.encoder import OrjsonEncoder
from worker.factory import make_broker

settings = Settings.from_env()
broker, resources = make_broker(settings)
dramatiq.set_encoder(OrjsonEncoder())
dramatiq.set_broker(broker)
