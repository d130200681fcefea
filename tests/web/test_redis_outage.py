"""A private redis-server stopped mid-stream: every accepted delivery still reaches the queue."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import psycopg
from starlette.testclient import TestClient
from support.live import JSON
from support.queue import queued_bodies

from ingest.dev.embedded import EmbeddedRedis, _free_port
from ingest.web.app import create_app

SECRET = "outage-secret"


def transcript(n: int) -> bytes:
    message = {
        "type": "transcript",
        "role": "user",
        "transcriptType": "final",
        "transcript": f"utterance number {n}",
        "timestamp": 1_780_000_000_000 + n,
        "call": {"id": "2f0c8a6e-54a8-4d2b-9c4e-0d7f3a1b2c3d"},
    }
    return orjson.dumps({"message": message})


def unqueued(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM call_events WHERE state = 'pending' AND enqueued_at IS NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_stopping_redis_mid_stream_loses_nothing(db_url: str, redis_namespace: str, tmp_path: Path) -> None:
    """Deliveries during the outage are kept in Postgres and drained to the queue once Redis is back."""
    port = _free_port()
    server = EmbeddedRedis(tmp_path / "redis")
    redis_url = server.start(port=port)
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "VAPI_SECRET": SECRET,
        "INGEST_ENCRYPTION_KEYS": os.environ["INGEST_ENCRYPTION_KEYS"],
        "ENQUEUE_TIMEOUT_MS": "200",
    }
    sent = [transcript(n) for n in range(60)]
    try:
        with TestClient(create_app(env=env), headers=JSON) as client:
            headers = {"x-vapi-secret": SECRET}
            for body in sent[:20]:
                assert client.post("/webhooks/vapi", content=body, headers=headers).status_code == 200
            server.stop()  # SIGTERM: Redis writes its append-only file and exits
            for body in sent[20:]:
                assert client.post("/webhooks/vapi", content=body, headers=headers).status_code == 200
            assert client.get("/readyz").status_code == 503
            assert unqueued(db_url) == 40

            server.start(port=port)  # same data directory: the 20 queued before the outage come back
            deadline = time.monotonic() + 20
            while unqueued(db_url) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert unqueued(db_url) == 0
            assert client.get("/readyz").status_code == 200

        bodies = queued_bodies(redis_url, redis_namespace)
        got = sorted(body["message"]["timestamp"] for body in bodies)
        assert got == [orjson.loads(body)["message"]["timestamp"] for body in sent]  # every one, once
    finally:
        server.stop()
