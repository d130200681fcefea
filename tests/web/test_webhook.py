"""POST /webhooks/vapi against real Redis and Postgres: auth, bounds, queueing, answers."""

from __future__ import annotations

import gzip
import os
import time
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
import redis
from dramatiq import Message
from starlette.testclient import TestClient
from support.app_env import app_env
from support.fixtures import load_event
from support.live import JSON
from support.queue import queued, queued_bodies

from ingest.errors import ConfigError
from ingest.web.app import create_app
from ingest.web.auth import sign
from ingest.web.auth_settings import AuthSettings
from ingest.web.enqueue import ACTOR_NAME
from worker.encoder import OrjsonEncoder

SECRET = "s3cret-current"
HMAC_SECRET = "hmac-key-1"
STATUS = (
    b'{"message":{"type":"status-update","status":"in-progress","timestamp":1780000000000,'
    b'"call":{"id":"6b1f6a36-6f0a-4c89-9a51-6f3b0b8f8c11"}}}'
)


def make_env(db_url: str, redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    return app_env(db_url, redis_url, namespace, secret=SECRET, **extra)


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return make_env(db_url, redis_server_url, redis_namespace)


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(env=env), headers=JSON) as test_client:
        yield test_client


def post(client: TestClient, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post("/webhooks/vapi", content=body, headers={"x-vapi-secret": SECRET, **(headers or {})})


def test_accepted_delivery_is_a_dramatiq_message(client: TestClient, env: dict[str, str]) -> None:
    """A delivery becomes one Dramatiq message for apply_event carrying the body and received time."""
    before = int(time.time() * 1000)
    response = post(client, STATUS)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    [message] = queued(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])
    assert isinstance(message, Message)
    assert message.actor_name == ACTOR_NAME
    assert message.queue_name == "vapi-events"
    body, received_at_ms = message.args
    assert body == orjson.loads(STATUS)
    assert before <= received_at_ms <= int(time.time() * 1000)


def test_unknown_type_is_accepted_and_queued(client: TestClient, env: dict[str, str]) -> None:
    """A message type we do not know is answered 200 and queued like any other."""
    body = load_event("unknown_type.json")
    assert post(client, body).status_code == 200
    [queued_body] = queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])
    assert queued_body == orjson.loads(body)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_credentials"),
        ({"x-vapi-secret": "wrong"}, "secret_mismatch"),
        ({"authorization": "Bearer wrong"}, "secret_mismatch"),
    ],
)
def test_shared_secret_rejections(
    client: TestClient, env: dict[str, str], headers: dict[str, str], reason: str
) -> None:
    """Missing or wrong credentials get a 401 saying which, and nothing is queued."""
    response = client.post("/webhooks/vapi", content=STATUS, headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == reason
    assert SECRET not in response.text
    assert queued(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]) == []


def test_bearer_and_rotated_secrets(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """During rotation both secrets work, in X-Vapi-Secret and as a bearer token; a retired one does not."""
    env = make_env(db_url, redis_server_url, redis_namespace, VAPI_SECRET="new-one,old-one")
    with TestClient(create_app(env=env), headers=JSON) as client:
        assert client.post("/webhooks/vapi", content=STATUS, headers={"x-vapi-secret": "old-one"}).status_code == 200
        assert (
            client.post("/webhooks/vapi", content=STATUS, headers={"authorization": "Bearer new-one"}).status_code
            == 200
        )
        retired = client.post("/webhooks/vapi", content=STATUS, headers={"x-vapi-secret": "older-one"})
        assert retired.status_code == 401


@pytest.fixture
def hmac_client(db_url: str, redis_server_url: str, redis_namespace: str) -> Iterator[tuple[TestClient, AuthSettings]]:
    extra = {"VAPI_HMAC_SECRET": HMAC_SECRET, "VAPI_SECRET": ""}
    env = make_env(db_url, redis_server_url, redis_namespace, **extra)
    with TestClient(create_app(env=env), headers=JSON) as client:
        yield client, AuthSettings.from_env(env)


def test_hmac_signed_delivery_is_accepted(hmac_client: tuple[TestClient, AuthSettings]) -> None:
    """A body signed over its exact bytes with a fresh timestamp is accepted."""
    client, auth = hmac_client
    headers = sign(auth, STATUS, now=time.time())
    assert set(headers) == {"x-signature", "x-timestamp"}
    assert client.post("/webhooks/vapi", content=STATUS, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("body", "signature_mismatch"),
        ("stale", "stale_timestamp"),
        ("no-signature", "missing_signature"),
        ("bad-timestamp", "malformed_timestamp"),
    ],
)
def test_hmac_rejections(hmac_client: tuple[TestClient, AuthSettings], tamper: str, reason: str) -> None:
    """One changed body byte, an old timestamp, a missing signature or a bad timestamp are each a precise 401."""
    client, auth = hmac_client
    now = time.time() - (3600 if tamper == "stale" else 0)
    headers = sign(auth, STATUS, now=now)
    body = STATUS
    if tamper == "body":
        body = STATUS.replace(b"in-progress", b"in-progresS")
    elif tamper == "no-signature":
        del headers["x-signature"]
    elif tamper == "bad-timestamp":
        headers["x-timestamp"] = "yesterday"
    response = client.post("/webhooks/vapi", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == reason


def test_oversized_body_is_refused_by_content_length(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """A declared length over MAX_BODY_BYTES is a 413 before the body is read."""
    env = make_env(db_url, redis_server_url, redis_namespace, MAX_BODY_BYTES="2048")
    with TestClient(create_app(env=env), headers=JSON) as client:
        response = post(client, b"{" + b" " * 5000 + b"}")
        assert response.status_code == 413
        assert response.json()["error"] == "body_too_large"


def test_oversized_streamed_body_is_refused(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """A chunked body with no Content-Length is cut off with 413 as soon as it passes the limit."""
    env = make_env(db_url, redis_server_url, redis_namespace, MAX_BODY_BYTES="2048")

    def chunks() -> Iterator[bytes]:
        yield b'{"message":{"type":"transcript","transcript":"'
        for _ in range(100):
            yield b"x" * 1000

    with TestClient(create_app(env=env), headers=JSON) as client:
        response = client.post("/webhooks/vapi", content=chunks(), headers={"x-vapi-secret": SECRET})
        assert response.status_code == 413


def test_gzip_body_is_decoded_within_the_limit(client: TestClient, env: dict[str, str]) -> None:
    """A gzip-encoded delivery is decoded and queued as the JSON it holds."""
    response = post(client, gzip.compress(STATUS), {"content-encoding": "gzip"})
    assert response.status_code == 200
    assert queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]) == [orjson.loads(STATUS)]


def test_gzip_bomb_is_refused(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """A small gzip body that inflates past the limit is a 413, not a memory spike."""
    env = make_env(db_url, redis_server_url, redis_namespace, MAX_BODY_BYTES="65536")
    bomb = gzip.compress(b'{"message":{"type":"hang","pad":"' + b"0" * 10_000_000 + b'"}}')
    assert len(bomb) < 65536
    with TestClient(create_app(env=env), headers=JSON) as client:
        response = post(client, bomb, {"content-encoding": "gzip"})
        assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"", {}, 400, "empty_body"),
        (b"{not json", {}, 400, "invalid_json"),
        (b"[1, 2]", {}, 400, "missing_message"),
        (b'{"message": "status-update"}', {}, 400, "missing_message"),
        (b'{"message": {"status": "ended"}}', {}, 400, "missing_type"),
        (b'{"message": {"type": 42}}', {}, 400, "missing_type"),
        (b'{"message": {"type": "api.call", "call": {"id": "x"}}}', {}, 400, "internal_type"),
        (b"\xff\xfe not utf-8", {}, 400, "invalid_json"),
        (b"not gzip at all", {"content-encoding": "gzip"}, 400, "bad_encoding"),
        (zlib.compress(STATUS)[:-6], {"content-encoding": "deflate"}, 400, "bad_encoding"),
        (STATUS, {"content-encoding": "br"}, 415, "unsupported_encoding"),
        (STATUS, {"content-length": "many"}, 400, "bad_content_length"),
    ],
)
def test_bad_bodies_get_a_precise_4xx(
    client: TestClient, env: dict[str, str], body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    """Each kind of malformed delivery gets its own status and error code, and nothing is queued."""
    response = post(client, body, headers)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert queued(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]) == []


def test_huge_integers_are_read_as_orjson_reads_them(client: TestClient, env: dict[str, str]) -> None:
    """An integer beyond 64 bits is a float whichever parser reads it (here with a NaN: the fallback parser)."""
    raw = b'{"message": {"type": "hang", "n": 123456789012345678901234567890, "x": NaN}}'
    response = client.post("/webhooks/vapi", content=raw, headers={"x-vapi-secret": SECRET})
    assert response.status_code == 200
    [queued_body] = queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])
    assert queued_body["message"]["n"] == 1.2345678901234568e29
    assert queued_body["message"]["x"] is None


def test_nul_bytes_and_lone_surrogates_are_made_storable(client: TestClient, env: dict[str, str]) -> None:
    """A transcript with U+0000 and a body with a lone surrogate are accepted; what the worker reads has U+FFFD."""
    assert post(client, load_event("transcript_nul_byte.json")).status_code == 200
    assert post(client, load_event("invalid_lone_surrogate.json")).status_code == 200
    client_ = redis.Redis.from_url(env["REDIS_URL"])
    raw = client_.hvals(f"{env['INGEST_REDIS_NAMESPACE']}:vapi-events.msgs")
    client_.close()
    assert len(raw) == 2
    decoded = [OrjsonEncoder().decode(data) for data in raw]  # as the worker decodes them
    text = orjson.dumps(decoded).decode()
    assert "\\u0000" not in text
    assert "\ufffd" in text


def test_healthz_and_readyz(client: TestClient) -> None:
    """Both probes answer 200 when Redis and Postgres are up; readiness names the sealing key."""
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    current = os.environ["INGEST_ENCRYPTION_KEYS"].split(":")[0]
    assert ready.json() == {
        "status": "ready",
        "redis": "ok",
        "postgres": "ok",
        "encryption": f"sealing under {current}",
    }


def test_plaintext_is_refused_unless_chosen_and_then_shown(
    db_url: str, redis_server_url: str, redis_namespace: str
) -> None:
    """Without keys the app refuses to start; with INGEST_PLAINTEXT=true it starts and /readyz says it is off."""
    env = {**make_env(db_url, redis_server_url, redis_namespace), "INGEST_ENCRYPTION_KEYS": ""}
    with pytest.raises(ConfigError, match="INGEST_ENCRYPTION_KEYS"):
        create_app(env=env)
    with TestClient(create_app(env={**env, "INGEST_PLAINTEXT": "true"}), headers=JSON) as client:
        assert client.get("/readyz").json()["encryption"] == "OFF (INGEST_PLAINTEXT)"
    with pytest.raises(ConfigError, match="both set"):
        create_app(
            env={**env, "INGEST_PLAINTEXT": "true", "INGEST_ENCRYPTION_KEYS": os.environ["INGEST_ENCRYPTION_KEYS"]}
        )


def test_readyz_names_what_is_down(db_url: str, redis_namespace: str) -> None:
    """With Redis unreachable, readiness is a 503 error saying it is Redis."""
    env = make_env(db_url, "redis://127.0.0.1:1/0", redis_namespace)
    with TestClient(create_app(env=env), headers=JSON) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"error": "not_ready", "detail": "redis unreachable"}


def test_redis_down_delivery_is_kept_in_postgres(db_url: str, redis_namespace: str) -> None:
    """With Redis unreachable the delivery is still answered 200 and written to call_events as pending."""
    env = make_env(db_url, "redis://127.0.0.1:1/0", redis_namespace)
    with TestClient(create_app(env=env), headers=JSON) as client:
        assert post(client, STATUS).status_code == 200
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT message_type, state, call_id, enqueued_at FROM call_events").fetchone()
    assert row == ("status-update", "pending", "6b1f6a36-6f0a-4c89-9a51-6f3b0b8f8c11", None)


def test_neither_redis_nor_postgres_is_503(redis_namespace: str) -> None:
    """When nothing can keep an informational delivery it is refused with 503, so the sender knows."""
    dead_db = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"
    env = make_env(dead_db, "redis://127.0.0.1:1/0", redis_namespace)
    with TestClient(create_app(env=env), headers=JSON) as client:
        response = post(client, STATUS)
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
