"""BLOCK_FLAGGED_CALLERS: a flagged caller's assistant-request is refused, audited; everyone else is answered."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
import redis
from starlette.testclient import TestClient
from support.app_env import app_env
from support.live import JSON
from support.queue import queued_bodies

from ingest.errors import ConfigError
from ingest.ops import flagged_callers
from ingest.pseudonym import parse_key, pseudonym
from ingest.web.app import create_app

SECRET = "blocking-secret"
ASSISTANT = "9a1f3c52-0b4e-4f6d-8a7e-2c5d1e0f9b8a"
REFUSAL = "This line cannot take your call."
FLAGGED, OTHER = "+64215550123", "+64215550124"


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return app_env(
        db_url,
        redis_server_url,
        redis_namespace,
        secret=SECRET,
        INGEST_PSEUDONYM_KEY=os.environ["INGEST_PSEUDONYM_KEY"],
        VAPI_DEFAULT_ASSISTANT_ID=ASSISTANT,
        VAPI_ASSISTANT_REQUEST_ERROR=REFUSAL,
        BLOCK_FLAGGED_CALLERS="true",
    )


def flag(env: dict[str, str], number: str, anomaly: int) -> None:
    key = parse_key(env["INGEST_PSEUDONYM_KEY"])
    assert key is not None
    client = redis.Redis.from_url(env["REDIS_URL"])
    flagged_callers.publish(client, env["INGEST_REDIS_NAMESPACE"], {pseudonym(number, key): anomaly})
    client.close()


def request(number: str, call_id: str) -> bytes:
    message: dict[str, Any] = {
        "type": "assistant-request",
        "call": {"id": call_id, "type": "inboundPhoneCall", "customer": {"number": number}},
        "customer": {"number": number},
        "phoneNumber": {"number": "+6495550100"},
    }
    return orjson.dumps({"message": message})


def ask(client: TestClient, number: str, call_id: str) -> Any:
    response = client.post("/webhooks/vapi", content=request(number, call_id), headers={"x-vapi-secret": SECRET})
    assert response.status_code == 200
    return response.json()


def audit_rows(db_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        query = "SELECT action, surface, actor, target_kind, target, details FROM data_access_log ORDER BY id"
        return conn.execute(query).fetchall()


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(env=env), headers=JSON) as test_client:
        yield test_client


def test_the_flagged_caller_is_refused_and_everyone_else_answered(client: TestClient, env: dict[str, str]) -> None:
    """The flagged number gets the error (in any notation), another number the assistant; the refusal is audited."""
    flag(env, FLAGGED, 41)
    assert ask(client, FLAGGED, "11111111-1111-4111-8111-111111111111") == {"error": REFUSAL}
    assert ask(client, "021 555 0123", "22222222-2222-4222-8222-222222222222") == {"error": REFUSAL}  # national form
    assert ask(client, OTHER, "33333333-3333-4333-8333-333333333333") == {"assistantId": ASSISTANT}

    deadline = time.monotonic() + 5
    while len(rows := audit_rows(env["DATABASE_URL"])) < 2:
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    assert [row[:5] for row in rows] == [
        ("caller_blocked", "webhook", "BLOCK_FLAGGED_CALLERS", "anomaly", "41"),
        ("caller_blocked", "webhook", "BLOCK_FLAGGED_CALLERS", "anomaly", "41"),
    ]
    assert rows[0][5] == {"call_id": "11111111-1111-4111-8111-111111111111"}
    assert FLAGGED not in repr(rows)
    # Every request is kept as it was received, the refused ones included.
    bodies = queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])
    assert [body["message"]["call"]["id"][:8] for body in bodies] == ["11111111", "22222222", "33333333"]


def test_a_forgotten_caller_is_answered_again(client: TestClient, env: dict[str, str]) -> None:
    """Once its anomaly is acknowledged (the flagged callers published again), the same number gets its assistant."""
    flag(env, FLAGGED, 7)
    assert ask(client, FLAGGED, "44444444-4444-4444-8444-444444444444") == {"error": REFUSAL}
    redis_client = redis.Redis.from_url(env["REDIS_URL"])
    flagged_callers.publish(redis_client, env["INGEST_REDIS_NAMESPACE"], {})  # as the table has it once acknowledged
    redis_client.close()
    assert ask(client, FLAGGED, "55555555-5555-4555-8555-555555555555") == {"assistantId": ASSISTANT}


def test_blocking_off_looks_nothing_up(env: dict[str, str]) -> None:
    """With BLOCK_FLAGGED_CALLERS unset a flagged caller is answered as usual and nothing is audited."""
    flag(env, FLAGGED, 9)
    with TestClient(create_app(env={**env, "BLOCK_FLAGGED_CALLERS": ""}), headers=JSON) as client:
        assert ask(client, FLAGGED, "66666666-6666-4666-8666-666666666666") == {"assistantId": ASSISTANT}
    assert audit_rows(env["DATABASE_URL"]) == []


def test_blocking_without_the_pseudonym_key_refuses_to_start(env: dict[str, str]) -> None:
    """Flagged callers are known by pseudonym only: blocking on and no INGEST_PSEUDONYM_KEY is a start-up error."""
    with pytest.raises(ConfigError, match="INGEST_PSEUDONYM_KEY"):
        create_app(env={**env, "INGEST_PSEUDONYM_KEY": ""})


def test_unreadable_flags_block_nobody(env: dict[str, str]) -> None:
    """A Redis that cannot be read for the flags answers the caller normally (the event still queues elsewhere)."""
    flag(env, FLAGGED, 3)
    with TestClient(create_app(env=env), headers=JSON) as client:
        webhook = client.app.state.webhook  # type: ignore[attr-defined]
        assert webhook.block is not None
        wrong = f"{env['INGEST_REDIS_NAMESPACE']}:not-a-hash"
        webhook.block.flagged._key = wrong  # a key of the wrong type: HGET fails
        redis.Redis.from_url(env["REDIS_URL"]).set(wrong, "x")
        assert ask(client, FLAGGED, "77777777-7777-4777-8777-777777777777") == {"assistantId": ASSISTANT}
