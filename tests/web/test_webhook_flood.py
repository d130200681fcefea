"""Failed authentication on POST /webhooks/vapi, limited per client address in real Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient
from support.app_env import app_env
from support.live import JSON
from support.queue import queued_bodies

from ingest.errors import ConfigError
from ingest.web.app import create_app
from ingest.web.auth import sign
from ingest.web.auth_settings import AuthSettings

SECRET = "s3cret-current"
HMAC_SECRET = "hmac-key-1"
PROXY = "127.0.0.9"


def status(n: int) -> bytes:
    call = f"6b1f6a36-6f0a-4c89-9a51-{n:012d}"
    return orjson.dumps({"message": {"type": "status-update", "status": "in-progress", "call": {"id": call}}})


def make_env(db_url: str, redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    return app_env(
        db_url, redis_url, namespace, secret=SECRET, **{"INGEST_WEBHOOK_AUTH_FAILURE_LIMIT": "20/minute", **extra}
    )


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("vapi_ingest_webhook_auth_failures_total", {"reason": reason}) or 0.0


@pytest.fixture
def hmac_env(db_url: str, redis_server_url: str, redis_namespace: str) -> dict[str, str]:
    return make_env(db_url, redis_server_url, redis_namespace, VAPI_HMAC_SECRET=HMAC_SECRET, VAPI_SECRET="")


@pytest.fixture
def hmac_client(hmac_env: dict[str, str]) -> Iterator[tuple[TestClient, AuthSettings]]:
    with TestClient(create_app(env=hmac_env), headers=JSON) as client:
        yield client, AuthSettings.from_env(hmac_env)


def test_bad_signatures_get_429_while_signed_deliveries_from_the_same_address_are_all_taken(
    hmac_client: tuple[TestClient, AuthSettings], hmac_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """500 bad-signature requests from one address get 401 up to the limit and 429 past it, while every
    signed delivery from that address is answered 200 and queued."""
    client, auth = hmac_client
    limited_before, mismatches_before = failures("rate_limited"), failures("signature_mismatch")
    bad_codes: list[int] = []
    sent: list[bytes] = []
    with caplog.at_level(logging.WARNING, logger="ingest.web.webhook"):
        for n in range(500):
            headers = sign(auth, status(n), now=time.time())
            headers["x-signature"] = "0" * 64
            response = client.post("/webhooks/vapi", content=status(n), headers=headers)
            bad_codes.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["error"] == "too_many_failures"
                assert 1 <= int(response.headers["retry-after"]) <= 60
            if n % 10 == 9:
                body = status(1000 + n)
                good = client.post("/webhooks/vapi", content=body, headers=sign(auth, body, now=time.time()))
                assert good.status_code == 200, good.text
                sent.append(body)
    assert bad_codes == [401] * 20 + [429] * 480
    queued = queued_bodies(hmac_env["REDIS_URL"], hmac_env["INGEST_REDIS_NAMESPACE"])
    assert queued == [orjson.loads(body) for body in sent]
    assert len(queued) == 50
    assert failures("rate_limited") - limited_before == 480
    assert failures("signature_mismatch") - mismatches_before == 20
    limited = [r for r in caplog.records if getattr(r, "outcome", None) == "rate_limited"]
    assert len(limited) == 480
    assert {r.address for r in limited} == {"testclient"}  # type: ignore[attr-defined]
    assert all(r.reason == "signature_mismatch" for r in limited)  # type: ignore[attr-defined]


def test_a_wrong_secret_is_refused_from_the_headers_and_the_right_one_still_passes(
    db_url: str, redis_server_url: str, redis_namespace: str
) -> None:
    """Past the limit a wrong shared secret gets 429 before its body is read (connection closed), the right
    secret from the same address 200, and the limit holds for a second app on the same Redis."""
    env = make_env(db_url, redis_server_url, redis_namespace, INGEST_WEBHOOK_AUTH_FAILURE_LIMIT="3/minute")
    wrong = {"x-vapi-secret": "wrong"}
    with TestClient(create_app(env=env), headers=JSON) as client:
        codes = [client.post("/webhooks/vapi", content=status(n), headers=wrong).status_code for n in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        refused = client.post("/webhooks/vapi", content=status(5), headers=wrong)
        assert refused.headers["connection"] == "close"
        assert "retry-after" in refused.headers
        assert client.post("/webhooks/vapi", content=status(6), headers={"x-vapi-secret": SECRET}).status_code == 200
    with TestClient(create_app(env=env), headers=JSON) as other_process:
        assert other_process.post("/webhooks/vapi", content=status(7), headers=wrong).status_code == 429
    assert queued_bodies(redis_server_url, redis_namespace) == [orjson.loads(status(6))]


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(
    db_url: str, redis_server_url: str, redis_namespace: str
) -> None:
    """Through a trusted proxy the forwarded client is counted, so one client past the limit leaves another's
    failures answered 401; an untrusted peer's X-Forwarded-For is ignored."""
    extra = {"INGEST_WEBHOOK_AUTH_FAILURE_LIMIT": "2/minute", "INGEST_TRUSTED_PROXIES": PROXY}
    env = make_env(db_url, redis_server_url, redis_namespace, **extra)

    def wrong(forwarded: str) -> dict[str, str]:
        return {"x-vapi-secret": "wrong", "x-forwarded-for": forwarded}

    with TestClient(create_app(env=env), headers=JSON, client=(PROXY, 50000)) as proxy:
        codes = [proxy.post("/webhooks/vapi", content=b"{}", headers=wrong("203.0.113.7")).status_code for _ in "abc"]
        assert codes == [401, 401, 429]
        assert proxy.post("/webhooks/vapi", content=b"{}", headers=wrong("203.0.113.8")).status_code == 401
    with TestClient(create_app(env=env), headers=JSON, client=("127.0.0.10", 50000)) as direct:
        spoofed = [direct.post("/webhooks/vapi", content=b"{}", headers=wrong(f"198.51.100.{n}")) for n in range(3)]
        assert [response.status_code for response in spoofed] == [401, 401, 429]


@pytest.mark.parametrize("text", ["lots", "0/minute"])
def test_a_bad_limit_stops_the_app(db_url: str, redis_server_url: str, redis_namespace: str, text: str) -> None:
    """A limit that is not in the limits notation, or allows nothing, is a ConfigError naming the variable."""
    env = make_env(db_url, redis_server_url, redis_namespace, INGEST_WEBHOOK_AUTH_FAILURE_LIMIT=text)
    with pytest.raises(ConfigError, match="INGEST_WEBHOOK_AUTH_FAILURE_LIMIT"):
        create_app(env=env)
