"""`ingest dev` with nothing configured: embedded servers, migrations, web and worker, clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from support.live import wait_for

from ingest.embedded import _free_port
from ingest.migrate import discover


def start(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "VAPI_SECRET", "VAPI_HMAC_SECRET"}
    }
    env.update(INGEST_DATA_DIR=str(data_dir), PORT=str(port), WORKER_PROCESSES="1", WORKER_THREADS="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest", "dev"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    banner: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.match(r"\s+(webhook URL|database|redis)\s+(\S+)", line):
            banner[match.group(1)] = match.group(2)
        if line.startswith("Ctrl-C"):
            break
    wait_for(f"http://127.0.0.1:{port}/readyz", process)
    return process, banner


def interrupt(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    code = process.wait(60)
    if process.stdout:
        process.stdout.close()
    return code


@pytest.mark.slow
def test_dev_stack_starts_serves_stops_and_keeps_data(tmp_path: Path) -> None:
    """Two runs on one data directory: everything comes up, Ctrl-C stops all of it, data survives."""
    port = _free_port()
    process, banner = start(tmp_path, port)
    try:
        assert banner["webhook URL"] == f"http://127.0.0.1:{port}/webhooks/vapi"
        with psycopg.connect(banner["database"], autocommit=True) as conn:
            applied = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
            assert applied == (len(discover()),)
            conn.execute("INSERT INTO client_subscriptions (client_id, plan) VALUES ('kept-across-restarts', 'pro')")
        body = b'{"message":{"type":"hang","call":{"id":"0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"}}}'
        assert httpx.post(banner["webhook URL"], content=body).status_code == 200  # insecure: dev only
        client = redis.Redis.from_url(banner["redis"])
        deadline = time.monotonic() + 20
        while not client.zcard("dramatiq:__heartbeats__") and time.monotonic() < deadline:
            time.sleep(0.2)  # a worker that fetches from the queue leaves a heartbeat
        assert client.zcard("dramatiq:__heartbeats__") >= 1
        client.close()
    finally:
        assert interrupt(process) == 0
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    stopped = redis.Redis.from_url(banner["redis"])
    with pytest.raises(redis.ConnectionError):
        stopped.ping()
    stopped.close()

    process, banner = start(tmp_path, port)
    try:
        with psycopg.connect(banner["database"]) as conn:
            kept = conn.execute("SELECT plan FROM client_subscriptions WHERE client_id = 'kept-across-restarts'")
            assert kept.fetchone() == ("pro",)
    finally:
        assert interrupt(process) == 0
