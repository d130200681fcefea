"""Every error the service answers has the one documented shape, and the README lists every code."""

from __future__ import annotations

import os
import re
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from support.live import JSON, web_server
from support.raw_http import RawResponse, connect, head, read_response

from ingest.web.app import create_app
from ingest.web.auth import Reason, sign
from ingest.web.auth_settings import AuthSettings
from ingest.web.errors import UNAUTHORIZED_DETAIL

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "s3cret-current"
HMAC_SECRET = "hmac-key-1"
STATUS = b'{"message":{"type":"status-update","status":"in-progress"}}'
# What a 401 must not give away: how authentication is set up here.
SETUP_WORDS = ("x-vapi-secret", "x-signature", "x-timestamp", "authorization", "VAPI_", "{body}", "tolerance", "skew")


def _env(db_url: str, redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    keys = os.environ["INGEST_ENCRYPTION_KEYS"]
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "INGEST_ENCRYPTION_KEYS": keys,
        **extra,
    }


def _documented() -> tuple[set[tuple[int, str]], set[str]]:
    """The (status, error) pairs and the 401 reasons in the README's Errors table."""
    section = README.read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    codes: set[tuple[int, str]] = set()
    reasons: set[str] = set()
    for status, errors, when in re.findall(r"^\| (\d{3}) \| ([^|]+) \| ([^|]+) \|$", section, re.MULTILINE):
        codes |= {(int(status), code) for code in re.findall(r"`([a-z_]+)`", errors)}
        if status == "401":
            reasons |= set(re.findall(r"`([a-z_]+)`", when.split("`reason`:")[1].split("(")[0]))
    return codes, reasons


def _check(response: httpx.Response) -> tuple[int, str, str | None]:
    """Assert the shape of one error answer; return its status, error code and reason."""
    assert response.status_code >= 400
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = orjson.loads(response.content)
    expected = {"error", "detail", "reason"} if response.status_code == 401 else {"error", "detail"}
    assert set(body) == expected, body
    assert all(isinstance(value, str) and value for value in body.values()), body
    if response.status_code == 401:
        assert body["detail"] == UNAUTHORIZED_DETAIL
        assert not any(word.lower() in response.text.lower() for word in SETUP_WORDS), response.text
    return response.status_code, body["error"], body.get("reason")


def test_every_error_has_the_one_shape(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """Every 4xx and 5xx the webhook (and the probes, metrics and router) can give is {error, detail[, reason]}."""
    seen: list[tuple[int, str, str | None]] = []
    shared = _env(db_url, redis_server_url, redis_namespace, VAPI_SECRET=SECRET, MAX_BODY_BYTES="4096")
    shared["INGEST_METRICS_TOKEN"] = "t0ken"

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = create_app(env=shared)
    app.router.routes.append(Route("/boom", boom))
    with TestClient(app, raise_server_exceptions=False, headers=JSON) as client:

        def post(body: bytes, **headers: str) -> httpx.Response:
            return client.post("/webhooks/vapi", content=body, headers=headers)

        ok = {"x-vapi-secret": SECRET}
        responses = [
            post(STATUS),
            post(STATUS, **{"x-vapi-secret": "wrong"}),
            post(STATUS, authorization="Token x"),
            post(b"", **ok),
            post(b"{not json", **ok),
            post(b"[1, 2]", **ok),
            post(b'{"message": {"status": "ended"}}', **ok),
            post(b'{"message": {"type": "api.call", "call": {"id": "x"}}}', **ok),
            post(b"not gzip", **ok, **{"content-encoding": "gzip"}),
            post(zlib.compress(STATUS)[:-6], **ok, **{"content-encoding": "deflate"}),
            post(STATUS, **ok, **{"content-length": "many"}),
            post(STATUS, **ok, **{"content-encoding": "br"}),
            post(b"{" + b" " * 5000 + b"}", **ok),
            client.get("/webhooks/vapi"),
            client.get("/no/such/path"),
            client.get("/metrics"),
            client.get("/boom"),
        ]
        seen += [_check(response) for response in responses]

    hmac_env = _env(db_url, redis_server_url, redis_namespace, VAPI_HMAC_SECRET=HMAC_SECRET)
    auth = AuthSettings.from_env(hmac_env)
    with TestClient(create_app(env=hmac_env), headers=JSON) as client:
        signed = sign(auth, STATUS, now=time.time())
        for headers in (
            {},
            {**signed, "x-signature": "zz"},
            {**signed, "x-signature": signed["x-signature"][::-1]},
            {"x-signature": signed["x-signature"]},
            {**signed, "x-timestamp": "yesterday"},
            sign(auth, STATUS, now=time.time() - 3600),
        ):
            seen.append(_check(client.post("/webhooks/vapi", content=STATUS, headers=headers)))
        # A replayed request whose first answer was too large to keep (ingest.web.replays): 409.
        calls = [{"id": f"c{n}", "function": {"name": "n" * 4000}} for n in range(20)]
        large_answer = orjson.dumps({"message": {"type": "tool-calls", "toolCallList": calls}})
        signed = sign(auth, large_answer, now=time.time())
        assert client.post("/webhooks/vapi", content=large_answer, headers=signed).status_code == 200
        seen.append(_check(client.post("/webhooks/vapi", content=large_answer, headers=signed)))

    # Too many failed /ops logins from one address: 429.
    ops_env = _env(db_url, redis_server_url, redis_namespace, VAPI_SECRET=SECRET, INGEST_OPS_TOKEN="ops-t0ken")
    with TestClient(create_app(env={**ops_env, "INGEST_OPS_LOGIN_LIMIT": "1/minute"})) as client:
        wrong = {"authorization": "Bearer not-the-token"}
        assert client.get("/ops/stats.json", headers=wrong).status_code == 401
        seen.append(_check(client.get("/ops/stats.json", headers=wrong)))

    # Too many failed webhook authentications from one address: 429 (earlier failures above count too).
    flood_env = _env(db_url, redis_server_url, redis_namespace, VAPI_SECRET=SECRET)
    with TestClient(create_app(env={**flood_env, "INGEST_WEBHOOK_AUTH_FAILURE_LIMIT": "1/minute"})) as client:
        wrong = {**JSON, "x-vapi-secret": "wrong"}
        client.post("/webhooks/vapi", content=STATUS, headers=wrong)
        seen.append(_check(client.post("/webhooks/vapi", content=STATUS, headers=wrong)))

    dead_db = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"
    down = _env(dead_db, "redis://127.0.0.1:1/0", redis_namespace, VAPI_SECRET=SECRET)
    with TestClient(create_app(env=down), headers=JSON) as client:
        seen.append(_check(client.post("/webhooks/vapi", content=STATUS, headers={"x-vapi-secret": SECRET})))
        seen.append(_check(client.get("/readyz")))

    seen += _limit_errors(_env(db_url, redis_server_url, redis_namespace, VAPI_HMAC_SECRET=HMAC_SECRET))

    documented_codes, documented_reasons = _documented()
    assert {(status, code) for status, code, _ in seen} == documented_codes
    walked_reasons = {reason for _, _, reason in seen if reason is not None}
    assert walked_reasons == documented_reasons == {reason.value for reason in Reason}


def _limit_errors(env: dict[str, str]) -> list[tuple[int, str, str | None]]:
    """The refusals of a real ``ingest web`` for what is too slow, too large or too many, and of a non-JSON type."""
    limits = {"MAX_UNVERIFIED_BODIES": "1", "BODY_TIMEOUT_SECONDS": "1", "HEADER_TIMEOUT_SECONDS": "1"}
    signed = {**JSON, "x-signature": "00" * 32, "x-timestamp": str(int(time.time())), "content-length": "100"}
    with web_server({**env, **limits, "MAX_HEADER_BYTES": "1024"}) as base:
        socks = [connect(base) for _ in range(4)]
        slow, busy, half_headers, large_headers = socks
        slow.sendall(head("/webhooks/vapi", signed) + b"{")
        time.sleep(0.2)
        busy.sendall(head("/webhooks/vapi", signed))
        half_headers.sendall(b"POST /webhooks/vapi HTTP/1.1\r\n")
        large_headers.sendall(b"POST /webhooks/vapi HTTP/1.1\r\nx-padding: " + b"a" * 2000)
        answers = [read_response(sock, timeout=4) for sock in socks]
        for sock in socks:
            sock.close()
        plain_headers = {"content-type": "text/plain", "x-signature": "00" * 32}
        plain = httpx.post(f"{base}/webhooks/vapi", content=STATUS, headers=plain_headers)
    assert all(isinstance(answer, RawResponse) for answer in answers), answers
    raw = [httpx.Response(a.status, headers=a.headers, content=a.body) for a in answers if a is not None]
    return [_check(response) for response in [*raw, plain]]
