"""Replayed signed deliveries against the real web process and Redis: nothing runs twice."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from support.live import JSON, web_server

from ingest.dev.embedded import _free_port
from ingest.web.auth import sign
from ingest.web.auth_settings import AuthSettings

SECRET = "replay-hmac-secret"
CALL = "0b5c1c55-7a2e-4d59-9b8e-3d8a7f2c9e11"
TESTS = Path(__file__).resolve().parent.parent
SIGNING = AuthSettings.from_env({"VAPI_HMAC_SECRET": SECRET})

pytestmark = pytest.mark.slow


def tool_calls(order: str) -> bytes:
    call = {"id": f"tc-{order}", "function": {"name": "count", "arguments": {"orderId": order}}}
    return orjson.dumps({"message": {"type": "tool-calls", "call": {"id": CALL}, "toolCallList": [call]}})


def status_update() -> bytes:
    message = {"type": "status-update", "status": "in-progress", "timestamp": 1780000000000, "call": {"id": CALL}}
    return orjson.dumps({"message": message})


def post(base: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base}/webhooks/vapi", content=body, headers={**JSON, **headers}, timeout=15)


def replays(base: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        (sample.labels["type"], sample.labels["answer"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "vapi_ingest_replays_total"
    }


def log_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.startswith(b"{")]


@pytest.fixture
def env(db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "INGEST_DATA_DIR": str(tmp_path),
        "VAPI_HMAC_SECRET": SECRET,
        "INGEST_TOOLS": "count=support.tools:counted",
        "INGEST_TEST_TOOL_LOG": str(tmp_path / "tool-runs"),
        "PYTHONPATH": str(TESTS),
    }


def runs(env: dict[str, str]) -> list[str]:
    path = Path(env["INGEST_TEST_TOOL_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def test_a_replayed_tool_call_runs_once_and_gets_the_first_answer(env: dict[str, str]) -> None:
    """The same signed tool-calls twice runs the tool once; both answers are equal; the replay is counted."""
    body = tool_calls("A-1")
    headers = sign(SIGNING, body, now=time.time())
    with web_server(env) as base:
        first = post(base, body, headers)
        again = post(base, body, headers)
        respelled = post(base, body, {**headers, "x-signature": headers["x-signature"].upper()})
        fresh = post(base, body, sign(SIGNING, body, now=time.time() + 1))  # a new signature is a new request
        counted = replays(base)
    assert [first.status_code, again.status_code, respelled.status_code, fresh.status_code] == [200] * 4
    assert first.json()["results"][0]["result"] == "order A-1 counted"
    assert again.content == first.content
    assert respelled.content == first.content
    assert runs(env) == ["A-1", "A-1"]  # the first and the freshly signed one; no replay ran it
    assert counted == {("tool-calls", "first_answer"): 2.0}


def test_a_replay_after_the_window_is_refused_by_the_timestamp(env: dict[str, str]) -> None:
    """Once the tolerance has passed, the replay is a 401 stale_timestamp, as without replay memory."""
    body = tool_calls("B-2")
    # a tolerance a loaded machine answers well within, then long enough past it
    with web_server({**env, "VAPI_HMAC_TOLERANCE": "3"}) as base:
        headers = sign(SIGNING, body, now=time.time())
        assert post(base, body, headers).status_code == 200
        time.sleep(6.5)
        late = post(base, body, headers)
    assert (late.status_code, late.json()["reason"]) == (401, "stale_timestamp")
    assert runs(env) == ["B-2"]


def test_informational_messages_cost_no_replay_memory(
    env: dict[str, str], redis_server_url: str, redis_namespace: str
) -> None:
    """A resent signed status update is accepted and queued as any duplicate (the raw log dedupes it),
    without a replay-memory key or a replay counted: only requests Vapi waits on are remembered."""
    body = status_update()
    headers = sign(SIGNING, body, now=time.time())
    with web_server(env) as base:
        answers = [post(base, body, headers) for _ in range(3)]
        counted = replays(base)
    assert [a.status_code for a in answers] == [200, 200, 200]
    client = redis.Redis.from_url(redis_server_url)
    try:
        assert client.hlen(f"{redis_namespace}:vapi-events.msgs") == 3
        assert client.keys(f"{redis_namespace}:replay:*") == []
    finally:
        client.close()
    assert counted == {}


def test_redis_down_fails_open_for_information_and_says_so(env: dict[str, str], tmp_path: Path) -> None:
    """Without Redis a signed status update is still accepted (kept in Postgres) with a log line saying replay
    protection is off, and a replayed tool call still runs once (this process remembers it)."""
    log_path = tmp_path / "web.log"
    down = {**env, "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}
    update, tools = status_update(), tool_calls("C-3")
    tool_headers = sign(SIGNING, tools, now=time.time())
    with web_server(down, log_path=str(log_path)) as base:
        accepted = post(base, update, sign(SIGNING, update, now=time.time()))
        first, again = post(base, tools, tool_headers), post(base, tools, tool_headers)
    assert accepted.status_code == 200
    assert (first.status_code, again.status_code, again.content) == (200, 200, first.content)
    assert runs(env) == ["C-3"]
    assert any(line["msg"] == "replay protection off: redis unavailable" for line in log_lines(log_path))
