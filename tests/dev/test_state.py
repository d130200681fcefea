"""ingest.dev.state: a running local stack is found by the commands run in other shells."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import orjson

from ingest.dev import state
from ingest.dev.embedded import EmbeddedRedis, _free_port
from ingest.settings import Settings

STACK_ENV = {
    "DATABASE_URL": "postgresql://postgres@/vapi_ingest?host=/tmp/x",
    "REDIS_URL": "redis://127.0.0.1:6390/0",
    "HOST": "127.0.0.1",
    "PORT": "8123",
    "INGEST_INSECURE": "true",
    "VAPI_HMAC_SECRET": "never-written",
    "INGEST_OPS_PASSWORD": "never-written-either",
}


def test_unset_urls_are_taken_from_the_running_stack(tmp_path: Path) -> None:
    """With the URLs unset, settings take the stack's servers, address and insecure mode; never its secrets."""
    path = state.write(tmp_path, STACK_ENV)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"never-written" not in path.read_bytes()
    found = state.discovered(Settings.from_env({"INGEST_DATA_DIR": str(tmp_path)}))
    assert (found.database_url, found.redis_url, found.port) == (
        STACK_ENV["DATABASE_URL"],
        STACK_ENV["REDIS_URL"],
        8123,
    )
    assert found.auth.insecure


def test_the_shell_s_own_settings_win(tmp_path: Path) -> None:
    """A URL set in the shell is kept; with both set, the state file is not even read."""
    state.write(tmp_path, STACK_ENV)
    mine = "redis://127.0.0.1:7000/3"
    found = state.discovered(Settings.from_env({"INGEST_DATA_DIR": str(tmp_path), "REDIS_URL": mine}))
    assert (found.database_url, found.redis_url) == (STACK_ENV["DATABASE_URL"], mine)
    given = Settings.from_env({"INGEST_DATA_DIR": str(tmp_path), "REDIS_URL": mine, "DATABASE_URL": "postgresql:///a"})
    assert state.discovered(given) is given


def test_a_stack_that_died_is_ignored(tmp_path: Path) -> None:
    """A state file left by a process that no longer runs (or an unreadable one) finds nothing."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / state.STATE_FILE).write_bytes(orjson.dumps({"pid": int(dead.stdout), "environment": STACK_ENV}))
    settings = Settings.from_env({"INGEST_DATA_DIR": str(tmp_path)})
    assert state.discovered(settings) is settings
    (tmp_path / state.STATE_FILE).write_text("{not json")
    assert state.read(tmp_path) is None
    state.remove(tmp_path)
    state.remove(tmp_path)  # removing twice is fine
    assert state.read(tmp_path) is None


def test_embedded_redis_keeps_its_port_across_restarts(tmp_path: Path) -> None:
    """A restart listens where the last run did when that port is free, and elsewhere when it is taken."""
    first = EmbeddedRedis(tmp_path / "redis")
    url = first.start(port=_free_port())
    first.stop()
    again = EmbeddedRedis(tmp_path / "redis")
    try:
        assert again.start() == url
        taken = EmbeddedRedis(tmp_path / "redis")  # same data dir, port in use by `again`
        other = taken.start()
        taken.stop()
        assert other != url
    finally:
        again.stop()
