"""Bodies an attacker would send, through a live endpoint and live workers: refused clearly or recorded."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from support.apply import ANSWER_ENV
from support.live import JSON, web_server, worker_process
from support.queue import queued_bodies
from support.rows import stored_messages

from ingest.body import MAX_DEPTH
from ingest.dev.embedded import _free_port

pytestmark = pytest.mark.slow

SECRET = "hostile-secret"
HEADERS = {**JSON, "x-vapi-secret": SECRET}
CALL_ID = "6f1c2b9e-8d4a-4e3b-9a7c-1d2e3f4a5b6c"


def nested(depth: int) -> bytes:
    """A status update carrying one value nested ``depth`` levels deep in all."""
    inner = b"[" * (depth - 2) + b"]" * (depth - 2)
    return b'{"message":{"type":"status-update","status":"ringing","deep":' + inner + b"}}"


def env_for(db_url: str, redis_url: str, namespace: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "VAPI_SECRET": SECRET,
        "ENQUEUE_TIMEOUT_MS": "200",
        "SWEEP_INTERVAL_SECONDS": "1",
        "SWEEP_GRACE_SECONDS": "5",
        **ANSWER_ENV,
    }


def event_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM call_events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("redis_up", [True, False], ids=["redis-up", "redis-down"])
def test_body_nested_300_deep_is_refused_and_not_kept(
    db_url: str, redis_server_url: str, redis_namespace: str, redis_up: bool
) -> None:
    """A body nested 300 levels deep gets 400 too_deep, with Redis up or down, and nothing is queued or kept."""
    redis_url = redis_server_url if redis_up else f"redis://127.0.0.1:{_free_port()}/0"
    with web_server(env_for(db_url, redis_url, redis_namespace)) as base:
        answer = httpx.post(f"{base}/webhooks/vapi", content=nested(300), headers=HEADERS, timeout=10)
        assert answer.status_code == 400
        assert answer.json()["error"] == "too_deep"
        # The bound itself is accepted.
        assert httpx.post(f"{base}/webhooks/vapi", content=nested(MAX_DEPTH), headers=HEADERS).status_code == 200
    bodies = queued_bodies(redis_server_url, redis_namespace) if redis_up else []
    kept = len(bodies) + event_count(db_url)
    assert kept == 1  # the one at the bound, queued or kept in Postgres; never the deep one
    for body in bodies:
        assert "deep" in body["message"]


def hostile_bodies() -> dict[str, bytes]:
    call = {"id": CALL_ID, "assistantId": "0b5e3c1a-2d4f-4a6b-8c9d-1e2f3a4b5c6d"}
    status = {"type": "status-update", "status": "in-progress", "call": call}
    return {
        "long timestamp": orjson.dumps({"message": {**status, "timestamp": "7" * 3000}}),
        "long session id": orjson.dumps(
            {"message": {"type": "session.created", "session": {"id": "s" * 3000, "assistantId": CALL_ID}}}
        ),
        "long call id": orjson.dumps({"message": {**status, "call": {"id": "c" * 3000}}}),
        "4 MB type": orjson.dumps({"message": {**status, "type": "t" * (4 * 1024 * 1024)}}),
    }


def settled_rows(db_url: str, total: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT left(message_type, 40) AS type, state, last_error, length(message::text) AS size"
                " FROM call_events ORDER BY id"
            ).fetchall()
            if len(rows) >= total and all(row[1] in {"applied", "ignored", "failed"} for row in rows):
                return [{"type": r[0], "state": r[1], "error": r[2], "size": r[3]} for r in rows]
            if time.monotonic() > deadline:
                raise TimeoutError(f"events did not settle: {rows}")
            time.sleep(0.25)


def test_issue_bodies_all_end_in_call_events(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """A 3,000-character timestamp, session id or call id, and a 4 MB type: each answered 200 and recorded."""
    env = env_for(db_url, redis_server_url, redis_namespace)
    bodies = hostile_bodies()
    with web_server(env) as base, worker_process(env, processes=1, threads=2):
        for name, body in bodies.items():
            answer = httpx.post(f"{base}/webhooks/vapi", content=body, headers=HEADERS, timeout=30)
            assert answer.status_code == 200, (name, answer.text)
        rows = settled_rows(db_url, len(bodies))
    assert len(rows) == len(bodies)
    by_type = {(row["type"][:20], row["state"]): row["error"] for row in rows}
    assert ("status-update", "applied") in by_type  # the long timestamp: a fixed-length key
    assert "is not a UUID" in by_type["status-update", "failed"]  # the long call id
    assert "session id is 3000 characters long" in by_type["session.created", "failed"]
    assert ("t" * 20, "ignored") in by_type  # an unknown type: kept, mapped to nothing


def test_worker_keeps_a_body_it_cannot_store_in_a_reduced_row(
    db_url: str, redis_server_url: str, redis_namespace: str
) -> None:
    """A queued body nested 300 deep (queued before the bound existed) ends in call_events, failed, as JSON text."""
    import redis

    from ingest.event import UNSTORABLE_KEY
    from ingest.queue_keys import QueueKeys
    from ingest.web.enqueue import encode_message

    env = env_for(db_url, redis_server_url, redis_namespace)
    keys = QueueKeys(redis_namespace, "vapi-events")
    client = redis.Redis.from_url(redis_server_url)
    try:
        redis_id, data = encode_message("vapi-events", nested(300), 1_790_000_000_000)
        client.hset(keys.messages, redis_id, data)
        client.rpush(keys.ready, redis_id)
    finally:
        client.close()
    with worker_process(env, processes=1, threads=1):
        rows = settled_rows(db_url, 1)
    assert [(row["type"], row["state"]) for row in rows] == [("status-update", "failed")]
    assert "row refused" in rows[0]["error"]
    with psycopg.connect(db_url) as conn:
        [message] = stored_messages(conn)  # sealed, like every body
    assert orjson.loads(message[UNSTORABLE_KEY]) == orjson.loads(nested(300))["message"]
