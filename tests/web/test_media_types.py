"""Against a real ``ingest web``: only JSON is taken, and compressed bodies are decoded strictly."""

from __future__ import annotations

import gzip

import httpx
import pytest
from support.live import JSON, web_server
from support.queue import queued_bodies

SECRET = "media-secret"
PATH = "/webhooks/vapi"
STATUS = (
    b'{"message":{"type":"status-update","status":"in-progress","timestamp":1780000000000,'
    b'"call":{"id":"7c1d7a52-3f5e-4c36-8f0a-0d9e6a1b2c33"}}}'
)


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "REDIS_URL": redis_server_url, "INGEST_REDIS_NAMESPACE": redis_namespace}


def test_only_a_json_content_type_is_taken(env: dict[str, str]) -> None:
    """On a stack without authentication, what a web page can post across origins is refused 415 and not queued."""
    with web_server({**env, "INGEST_INSECURE": "true"}) as base, httpx.Client(base_url=base) as client:
        refused = [
            client.post(PATH, content=STATUS, headers={"content-type": "text/plain;charset=UTF-8"}),
            client.post(PATH, content=STATUS, headers={"content-type": "application/x-www-form-urlencoded"}),
            client.post(PATH, content=STATUS, headers={"content-type": "multipart/form-data; boundary=x"}),
            client.post(PATH, content=STATUS),  # a Blob without a type: no Content-Type at all
            client.post(PATH, content=STATUS, headers={"content-type": "application/jsonp"}),
        ]
        assert [r.status_code for r in refused] == [415] * len(refused)
        assert {r.json()["error"] for r in refused} == {"unsupported_media_type"}
        assert queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]) == []
        for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
            assert client.post(PATH, content=STATUS, headers={"content-type": content_type}).status_code == 200
    assert len(queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"])) == 3


def test_gzip_is_decoded_strictly(env: dict[str, str]) -> None:
    """Trailing bytes after a gzip stream, or a second gzip member, are a 400; nothing is silently dropped."""
    headers = {**JSON, "x-vapi-secret": SECRET, "content-encoding": "gzip"}
    with web_server({**env, "VAPI_SECRET": SECRET}) as base, httpx.Client(base_url=base, headers=headers) as client:
        trailing = client.post(PATH, content=gzip.compress(STATUS) + b"garbage")
        two_members = client.post(PATH, content=gzip.compress(STATUS) + gzip.compress(b"{}"))
        assert [trailing.status_code, two_members.status_code] == [400, 400]
        assert trailing.json()["error"] == two_members.json()["error"] == "bad_encoding"
        assert queued_bodies(env["REDIS_URL"], env["INGEST_REDIS_NAMESPACE"]) == []
        assert client.post(PATH, content=gzip.compress(STATUS)).status_code == 200
