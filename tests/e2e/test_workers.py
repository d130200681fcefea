"""Real worker processes on real Redis and Postgres: the rows, concurrency, and a SIGKILL."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from support.apply import ANSWER_ENV
from support.fixtures import all_calls, fixture_path, iter_bodies, load_event
from support.live import kill_group, web_server, worker_process
from support.queue import dead_letters, enqueue
from support.rows import event_states, session_rows, usage

from ingest.cli.replay import load

EXPECTED = orjson.loads(fixture_path("expected_rows.json").read_bytes())
RECEIVED_AT_MS = 1_796_083_200_000  # 2026-12-01: after every recorded call (a later time is implausible)
pytestmark = pytest.mark.slow


def all_bodies() -> list[bytes]:
    return [body for path in all_calls() for body in iter_bodies(path)]


def settled(db_url: str, total: int, timeout: float = 90.0) -> dict[str, int]:
    """Wait until ``total`` events are recorded and none is pending or waiting; return the states."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            states = event_states(conn)
            if sum(states.values()) >= total and not states.get("pending") and not states.get("waiting"):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"events did not settle: {states} of {total}")
            time.sleep(0.25)


def worker_env(db_url: str, redis_url: str, namespace: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "SWEEP_INTERVAL_SECONDS": "1",
        "SWEEP_GRACE_SECONDS": "5",
        "WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
        **ANSWER_ENV,
    }


def check_rows(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        assert session_rows(conn) == EXPECTED["rows"]
        assert [list(u) for u in usage(conn)] == EXPECTED["usage"]


def test_fixture_calls_through_endpoint_and_workers(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """Every recorded call, replayed through a live endpoint into live workers, gives its expected row."""
    env = {**worker_env(db_url, redis_server_url, redis_namespace), "VAPI_SECRET": "e2e-secret"}
    bodies = load(list(all_calls()))
    with web_server(env) as base, worker_process(env, processes=1, threads=4):
        import asyncio

        from ingest.cli.replay import send_all
        from ingest.web.auth_settings import AuthSettings

        summary = asyncio.run(send_all(f"{base}/webhooks/vapi", bodies, AuthSettings.from_env(env), progress=False))
        assert summary.ok, summary.render()
        assert settled(db_url, len(bodies)) == {"applied": len(bodies)}
    check_rows(db_url)


def test_two_worker_processes_on_shuffled_duplicates(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """Two worker processes with four threads each, fed every event twice in random order, agree with the spec."""
    bodies = all_bodies()
    stream = bodies * 2
    random.Random(7).shuffle(stream)
    enqueue(redis_server_url, redis_namespace, stream, RECEIVED_AT_MS)
    env = worker_env(db_url, redis_server_url, redis_namespace)
    with worker_process(env, threads=4), worker_process(env, threads=4):
        assert settled(db_url, len(bodies)) == {"applied": len(bodies)}
    check_rows(db_url)


def test_sigkill_mid_stream_then_restart(db_url: str, redis_server_url: str, redis_namespace: str) -> None:
    """A worker killed with SIGKILL mid-stream loses nothing: after a restart every event is applied once."""
    bodies = all_bodies()
    enqueue(redis_server_url, redis_namespace, bodies, RECEIVED_AT_MS)
    env = worker_env(db_url, redis_server_url, redis_namespace)
    with worker_process(env, threads=2) as victim:
        deadline = time.monotonic() + 60
        with psycopg.connect(db_url, autocommit=True) as conn:
            while sum(event_states(conn).values()) < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
        kill_group(victim, signal.SIGKILL)
        with psycopg.connect(db_url) as conn:
            done = sum(event_states(conn).values())
    assert 20 <= done < len(bodies), "the kill should land mid-stream"
    with worker_process(env, threads=2):
        assert settled(db_url, len(bodies)) == {"applied": len(bodies)}
    check_rows(db_url)  # usage included: counted exactly once


def test_unmappable_event_is_failed_and_dead_lettered(
    db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    """An event that can never map is failed with its error and dead-lettered, not retried, not logged whole."""
    body = load_event("status_update_bad_call_id.json")
    enqueue(redis_server_url, redis_namespace, [body], RECEIVED_AT_MS)
    log_path = tmp_path / "worker.log"
    env = {**worker_env(db_url, redis_server_url, redis_namespace), "LOG_LEVEL": "INFO"}
    with worker_process(env, log_path=str(log_path)):
        assert settled(db_url, 1) == {"failed": 1}
        deadline = time.monotonic() + 20
        while not dead_letters(redis_server_url, redis_namespace) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert dead_letters(redis_server_url, redis_namespace) == 1
    with psycopg.connect(db_url) as conn:
        row: Any = conn.execute("SELECT state, attempts, last_error FROM call_events").fetchone()
    assert row[0] == "failed"
    assert row[1] == 1
    assert "not a UUID" in row[2]
    logged = log_path.read_text()
    assert "apply_event(message " in logged  # Dramatiq's own line names the message by id only
    assert '"msg":"event failed"' in logged
    customer = orjson.loads(body)["message"]["customer"]["number"]
    assert customer not in logged
    logged = log_path.read_text()
    assert "apply_event(message " in logged  # Dramatiq's own line names the message by id only
    assert '"msg":"event failed"' in logged
    customer = orjson.loads(body)["message"]["customer"]["number"]
    assert customer not in logged
