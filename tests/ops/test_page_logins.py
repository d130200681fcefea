"""Failed /ops logins against real web processes and Redis: limited per address, logged, counted."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.live import web_server

USER, PASSWORD, TOKEN = "oncall", "correct horse battery", "ops-token-123"
GUESS = "hunter2-guess"

pytestmark = pytest.mark.slow


def basic(password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()}


def client_from(address: str, base: str) -> httpx.Client:
    """A client whose requests come from ``address`` (any 127.x.y.z reaches the loopback server)."""
    return httpx.Client(base_url=base, transport=httpx.HTTPTransport(local_address=address), timeout=10)


def failures(base: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        (sample.labels["scheme"], sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "vapi_ingest_ops_login_failures_total"
    }


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "INGEST_DATA_DIR": str(tmp_path),
        "VAPI_SECRET": "webhook-secret",
        "INGEST_ENCRYPTION_KEYS": os.environ["INGEST_ENCRYPTION_KEYS"],
        "INGEST_OPS_USER": USER,
        "INGEST_OPS_PASSWORD": PASSWORD,
        "INGEST_OPS_TOKEN": TOKEN,
        "INGEST_OPS_LOGIN_LIMIT": "5/minute",
        "INGEST_TRUSTED_PROXIES": "127.0.0.9",
    }


def test_wrong_passwords_are_limited_per_address_across_processes(env: dict[str, str], tmp_path: Path) -> None:
    """Past the limit an address gets 429 with Retry-After (right password or not), in a second web process too;
    another address still signs in; each failure is logged without the password and counted."""
    log_path = tmp_path / "web.log"
    with web_server(env, log_path=str(log_path)) as base, client_from("127.0.0.2", base) as guesser:
        guesses = [guesser.get("/ops/stats.json", headers=basic(f"{GUESS}{n}")).status_code for n in range(5)]
        limited = guesser.get("/ops/stats.json", headers=basic(GUESS))
        right_but_limited = guesser.get("/ops/stats.json", headers=basic(PASSWORD))
        with client_from("127.0.0.3", base) as colleague:
            colleague_in = colleague.get("/ops/stats.json", headers=basic(PASSWORD))
            colleague_token = colleague.get("/ops/stats.json", headers={"authorization": f"Bearer {TOKEN}"})
            first_visit = guesser.get("/ops/stats.json")  # no credentials: the browser's first request
        counted = failures(base)
    assert guesses == [401] * 5
    assert limited.status_code == 429
    assert limited.json()["error"] == "too_many_attempts"
    assert set(limited.json()) == {"error", "detail"}
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert right_but_limited.status_code == 429
    assert (colleague_in.status_code, colleague_token.status_code, first_visit.status_code) == (200, 200, 401)
    assert counted == {("basic", "wrong_credentials"): 5.0, ("basic", "rate_limited"): 2.0}

    refused = [
        line for line in map(orjson.loads, log_path.read_bytes().splitlines()) if line["msg"] == "ops login refused"
    ]
    assert [(line["address"], line["scheme"], line["reason"]) for line in refused] == [
        *[("127.0.0.2", "basic", "wrong_credentials")] * 5,
        *[("127.0.0.2", "basic", "rate_limited")] * 2,
    ]
    text = log_path.read_text()
    assert GUESS not in text
    assert PASSWORD not in text
    assert base64.b64encode(f"{USER}:{GUESS}0".encode()).decode() not in text

    with web_server(env) as other, client_from("127.0.0.2", other) as guesser:  # another web process, same Redis
        assert guesser.get("/ops/stats.json", headers=basic(PASSWORD)).status_code == 429


def test_forwarded_address_counts_only_behind_a_trusted_proxy(env: dict[str, str], tmp_path: Path) -> None:
    """From a trusted proxy the right-most forwarded hop is the address; from anyone else X-Forwarded-For is ignored."""
    log_path = tmp_path / "web.log"
    forged = {"x-forwarded-for": "198.51.100.7, 203.0.113.5"}
    with web_server(env, log_path=str(log_path)) as base:
        with client_from("127.0.0.9", base) as proxy:
            assert proxy.get("/ops", headers={**basic(GUESS), **forged}).status_code == 401
        with client_from("127.0.0.4", base) as stranger:
            assert stranger.get("/ops", headers={**basic(GUESS), **forged}).status_code == 401
    refused = [
        line for line in map(orjson.loads, log_path.read_bytes().splitlines()) if line["msg"] == "ops login refused"
    ]
    assert [line["address"] for line in refused] == ["203.0.113.5", "127.0.0.4"]
