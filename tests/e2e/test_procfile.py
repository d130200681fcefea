"""The Procfile under honcho: migrate with `honcho run`, `honcho start`, one signed delivery applied, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import orjson
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from support.fixtures import load_call
from support.live import JSON, wait_for

from ingest.dev.embedded import _free_port
from ingest.migrate import discover
from ingest.web.auth import sign
from ingest.web.auth_settings import AuthSettings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "procfile-test-secret"
UNSET = ("DATABASE_URL", "REDIS_URL", "VAPI_SECRET", "VAPI_HMAC_SECRET", "INGEST_INSECURE", "PORT", "HOST")


def as_url(conninfo: str) -> str:
    """A libpq URL for any conninfo (a .env value must hold no spaces)."""
    params = conninfo_to_dict(conninfo)
    dbname = str(params.pop("dbname", ""))
    query = urlencode({key: str(value) for key, value in params.items()}, quote_via=quote)
    return f"postgresql:///{quote(dbname)}?{query}"


def honcho(*args: str) -> list[str]:
    script = BIN / "honcho"
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "honcho", *args]


def marked_processes(marker: str) -> list[str]:
    """Processes whose environment holds ``marker`` (honcho, its shells and everything they started)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(proc.name + ": " + (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.slow
def test_procfile_runs_under_honcho(
    empty_db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    """`honcho run ingest migrate`, then `honcho start` serves, applies a signed delivery, and SIGTERM stops it all."""
    port = _free_port()
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# as in .env.example\n"
        f"DATABASE_URL={as_url(empty_db_url)}\n"
        f"REDIS_URL={redis_server_url}\n"
        f"INGEST_REDIS_NAMESPACE={redis_namespace}\n"
        f"VAPI_SECRET={SECRET}\n"
        f"PORT={port}\n"
        "WORKER_PROCESSES=1\n"
        "WORKER_THREADS=2\n"
    )
    marker = f"INGEST_PROCFILE_TEST={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", INGEST_PROCFILE_TEST=marker.split("=", 1)[1])
    common = ["-e", str(env_file), "-d", str(ROOT)]

    migrated = subprocess.run(honcho("run", *common, "ingest", "migrate"), env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"applied {len(discover())} migration(s)" in migrated.stdout

    log_path = tmp_path / "honcho.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(honcho("start", *common), env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(f"{base}/readyz", process, timeout=60)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(log_path.read_text(errors="replace")) from exc
        body = load_call("outbound_no_answer")[-1]
        call_id = orjson.loads(body)["message"]["call"]["id"]
        assert httpx.post(f"{base}/webhooks/vapi", content=body).status_code == 401  # VAPI_SECRET from .env
        headers = sign(AuthSettings.from_env({"VAPI_SECRET": SECRET}), body, now=time.time())
        assert httpx.post(f"{base}/webhooks/vapi", content=body, headers={**headers, **JSON}).status_code == 200
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while not conn.execute("SELECT 1 FROM user_sessions WHERE call_id = %s", (call_id,)).fetchone():
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.2)
            state = conn.execute("SELECT state FROM call_events WHERE call_id = %s", (call_id,)).fetchone()
            assert state == ("applied",)
        running = marked_processes(marker)
        assert any("ingest web" in p for p in running), running
        assert any("dramatiq" in p for p in running), running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for leftover in left:  # started by this test: never leave them running, even on failure
        os.kill(int(leftover.split(":", 1)[0]), signal.SIGKILL)
    assert left == [], log_path.read_text(errors="replace")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/healthz", timeout=1)
