"""Against a real ``ingest web``: what an unauthenticated or slow client can hold, and for how long."""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from support.live import JSON, web_server
from support.raw_http import closed_within, connect, head, read_response

from ingest.web.auth import sign
from ingest.web.auth_settings import AuthSettings
from ingest.web.errors import UNAUTHORIZED_DETAIL

SECRET = "limits-secret"
HMAC_SECRET = "limits-hmac-key"
PATH = "/webhooks/vapi"
STATUS = (
    b'{"message":{"type":"status-update","status":"in-progress","timestamp":1780000000000,'
    b'"call":{"id":"0d5c3f8e-2b8e-4f0a-9a57-6a3b1d2f4c10"}}}'
)


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "REDIS_URL": redis_server_url, "INGEST_REDIS_NAMESPACE": redis_namespace}


@contextlib.contextmanager
def sockets(base: str, count: int) -> Iterator[list[socket.socket]]:
    opened = [connect(base) for _ in range(count)]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_shared_secret_is_checked_before_the_body_is_read(env: dict[str, str]) -> None:
    """Without the right secret, a 16 MB body announced but never sent is answered 401 at once, then closed."""
    with web_server({**env, "VAPI_SECRET": SECRET}) as base, sockets(base, 2) as (missing, wrong):
        big = {**JSON, "content-length": str(16_000_000)}
        missing.sendall(head(PATH, big))
        wrong.sendall(head(PATH, {**big, "authorization": "Bearer not-it"}))
        for sock, reason in ((missing, "missing_credentials"), (wrong, "secret_mismatch")):
            response = read_response(sock, timeout=3)
            assert response is not None, "no answer before the body was sent"
            assert response.status == 401
            assert response.json() == {"error": "unauthorized", "detail": UNAUTHORIZED_DETAIL, "reason": reason}
            assert response.headers["connection"] == "close"
            assert closed_within(sock, 2)


def test_unverified_signed_bodies_in_flight_are_bounded(env: dict[str, str]) -> None:
    """With HMAC, past MAX_UNVERIFIED_BODIES bodies being read, another signed request gets 503 at once."""
    hmac_env = {**env, "VAPI_HMAC_SECRET": HMAC_SECRET, "MAX_UNVERIFIED_BODIES": "2"}
    with web_server(hmac_env) as base:
        signed = {**JSON, "x-signature": "00" * 32, "x-timestamp": str(int(time.time())), "content-length": "1000"}
        with sockets(base, 3) as (first, second, third):
            for sock in (first, second):
                sock.sendall(head(PATH, signed) + b'{"message":')  # and never the rest
            time.sleep(0.3)
            started = time.monotonic()
            third.sendall(head(PATH, signed))
            response = read_response(third, timeout=3)
            assert response is not None, "a third unverified body was waited for"
            assert time.monotonic() - started < 5  # at once: waiting would take the 20 s body timeout
            assert response.status == 503
            assert response.json()["error"] == "busy"
        # Once those connections are gone, signed deliveries are read again.
        headers = {**JSON, **sign(AuthSettings.from_env(hmac_env), STATUS, now=time.time())}
        assert httpx.post(f"{base}{PATH}", content=STATUS, headers=headers).status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_a_408(env: dict[str, str]) -> None:
    """An authenticated sender that stops halfway through its body is answered 408 after BODY_TIMEOUT_SECONDS."""
    with web_server({**env, "VAPI_SECRET": SECRET, "BODY_TIMEOUT_SECONDS": "1"}) as base, sockets(base, 1) as [sock]:
        started = time.monotonic()
        sock.sendall(head(PATH, {**JSON, "x-vapi-secret": SECRET, "content-length": "1000"}) + b'{"message":')
        response = read_response(sock, timeout=5)
        assert response is not None, "the half-sent body was waited for"
        assert 0.9 < time.monotonic() - started < 3
        assert response.status == 408
        assert response.json()["error"] == "body_timeout"
        assert closed_within(sock, 2)


def test_headers_over_the_limit_are_a_431(env: dict[str, str]) -> None:
    """Headers still incomplete after MAX_HEADER_BYTES are answered 431 and the connection closed."""
    with web_server({**env, "VAPI_SECRET": SECRET, "MAX_HEADER_BYTES": "8192"}) as base, sockets(base, 1) as [sock]:
        sock.sendall(b"POST /webhooks/vapi HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: " + b"a" * 12_000)
        response = read_response(sock, timeout=3)
        assert response is not None, "the headers were read on past the limit"
        assert response.status == 431
        assert response.json()["error"] == "headers_too_large"
        assert closed_within(sock, 2)


def test_idle_and_half_sent_connections_are_closed(env: dict[str, str]) -> None:
    """A connection that sends nothing, or stops inside its headers, is closed after HEADER_TIMEOUT_SECONDS."""
    settings = {"VAPI_SECRET": SECRET, "HEADER_TIMEOUT_SECONDS": "1", "KEEP_ALIVE_TIMEOUT_SECONDS": "1"}
    with web_server({**env, **settings}) as base, sockets(base, 3) as (idle, partial, kept_alive):
        started = time.monotonic()
        partial.sendall(b"POST /webhooks/vapi HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        kept_alive.sendall(head("/healthz", {}, method="GET"))
        answered = read_response(kept_alive, timeout=3)
        assert answered is not None
        assert answered.status == 200
        response = read_response(partial, timeout=4)
        assert response is not None, "the half-sent headers were waited for"
        assert response.status == 408
        assert response.json()["error"] == "header_timeout"
        assert closed_within(idle, 4)
        assert closed_within(kept_alive, 4)
        assert time.monotonic() - started < 4


def test_connections_past_the_limit_are_refused(env: dict[str, str]) -> None:
    """Past WEB_LIMIT_CONCURRENCY connections, a request is answered 503 at once; below it, served again."""
    with web_server({**env, "VAPI_SECRET": SECRET, "WEB_LIMIT_CONCURRENCY": "4"}) as base:
        with sockets(base, 4):
            time.sleep(0.2)
            assert httpx.get(f"{base}/healthz", timeout=3).status_code == 503
        time.sleep(0.2)
        assert httpx.get(f"{base}/healthz", timeout=3).status_code == 200


def test_one_slow_authenticated_sender_does_not_slow_the_others(env: dict[str, str]) -> None:
    """While one authenticated sender trickles its body, twenty ordinary deliveries are answered promptly."""
    with web_server({**env, "VAPI_SECRET": SECRET}) as base, sockets(base, 1) as [slow]:
        slow.sendall(head(PATH, {**JSON, "x-vapi-secret": SECRET, "content-length": str(len(STATUS))}) + STATUS[:10])
        headers = {**JSON, "x-vapi-secret": SECRET}
        started = time.monotonic()
        with httpx.Client(base_url=base, headers=headers) as client, concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: client.post(PATH, content=STATUS).status_code, range(20)))
        assert codes == [200] * 20
        assert time.monotonic() - started < 3
        slow.sendall(STATUS[10:])
        response = read_response(slow, timeout=3)
        assert response is not None
        assert response.status == 200
