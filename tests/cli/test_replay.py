"""`ingest replay`: recorded bodies sent to a live `ingest web`, signed like Vapi."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from support.fixtures import all_calls, all_events, fixture_path
from support.live import web_server
from support.queue import queued_bodies

from ingest.cli.replay import ReplayError, iter_bodies, load
from ingest.vocabulary import INTERNAL_TYPES

HMAC = {"VAPI_HMAC_SECRET": "replay-hmac-key", "VAPI_HMAC_PREFIX": "sha256="}


def replay(args: list[str], env: dict[str, str], *, progress: bool = False) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    command = [sys.executable, "-m", "ingest", "replay", *([] if progress else ["--no-progress"]), *args]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=300)


def test_iter_bodies_reads_json_jsonl_and_directories(tmp_path: Path) -> None:
    """A .json is one body, a .jsonl one per non-blank line, a directory its files in name order."""
    (tmp_path / "b.jsonl").write_bytes(b'{"message":{"type":"hang"}}\n\n{"message":{"type":"hang","n":2}}\n')
    (tmp_path / "a.json").write_bytes(b'{"message":{"type":"voice-input"}}')
    (tmp_path / "notes.txt").write_text("ignored")
    labels = [label for label, _ in iter_bodies(tmp_path)]
    assert labels == [f"{tmp_path}/a.json", f"{tmp_path}/b.jsonl:1", f"{tmp_path}/b.jsonl:3"]
    with pytest.raises(ReplayError):
        load([tmp_path / "missing.json"])


@pytest.mark.slow
def test_replaying_every_fixture_end_to_end(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """Every recorded call and event is accepted by a live service and lands on the queue, in order per file."""
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_server_url, "INGEST_REDIS_NAMESPACE": redis_namespace, **HMAC}
    # api.call (ingest reconcile's own message) is refused from webhooks: tests/web/test_webhook.py
    delivered = [
        path for path in all_events() if json.loads(path.read_bytes())["message"]["type"] not in INTERNAL_TYPES
    ]
    paths = [*all_calls(), *delivered]
    expected = [body for path in paths for _, body in iter_bodies(path)]
    with web_server(env) as base:
        result = replay([*map(str, paths), "--url", f"{base}/webhooks/vapi", "--concurrency", "1"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sent {len(expected)} deliveries — 200: {len(expected)}" in result.stdout
    got = queued_bodies(redis_server_url, redis_namespace)
    assert len(got) == len(expected)
    # One at a time, so the queue holds them in the order sent (json: one body has a lone surrogate).
    assert [body["message"]["type"] for body in got] == [json.loads(body)["message"]["type"] for body in expected]
    assert got[0] == orjson.loads(expected[0])


@pytest.mark.slow
def test_replay_with_wrong_secret_fails_and_says_so(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """A replayer configured with another secret gets 401s, reports them and exits non-zero."""
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_server_url, "INGEST_REDIS_NAMESPACE": redis_namespace, **HMAC}
    with web_server(env) as base:
        wrong = {**env, "VAPI_HMAC_SECRET": "not-the-key"}
        result = replay(
            [str(fixture_path("calls/voicemail.jsonl")), "--url", f"{base}/webhooks/vapi", "--rate", "50"], wrong
        )
    assert result.returncode == 1
    assert "401" in result.stdout
    assert "not accepted" in result.stdout
    assert queued_bodies(redis_server_url, redis_namespace) == []


def test_replay_off_a_terminal_prints_no_bar_only_the_summary(
    db_url: str, redis_server_url: str, redis_namespace: str
) -> None:
    """With output captured (no terminal) and no --no-progress, no bar frame is written: just the summary."""
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_server_url, "INGEST_REDIS_NAMESPACE": redis_namespace, **HMAC}
    path = fixture_path("calls/inbound_booking.jsonl")
    count = len(list(iter_bodies(path)))
    with web_server(env) as base:
        result = replay([str(path), "--url", f"{base}/webhooks/vapi"], env, progress=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert result.stdout == f"sent {count} deliveries — 200: {count}\n"
