"""The environment of a web app (``create_app(env=…)``) over the test's Postgres and Redis."""

from __future__ import annotations

import os

WEBHOOK_SECRET = "webhook-secret"


def app_env(
    db_url: str, redis_url: str, namespace: str, *, secret: str = WEBHOOK_SECRET, **extra: str
) -> dict[str, str]:
    """Postgres, Redis and its namespace, the webhook secret and the suite's sealing key; ``extra`` on top."""
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "VAPI_SECRET": secret,
        "INGEST_ENCRYPTION_KEYS": os.environ["INGEST_ENCRYPTION_KEYS"],
        **extra,
    }
