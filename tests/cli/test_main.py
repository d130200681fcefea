"""The `ingest` command's refusals: what a newcomer sees when something is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SECRETS = ("VAPI_SECRET", "VAPI_HMAC_SECRET", "INGEST_INSECURE")


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    command = [sys.executable, "-m", "ingest", *args]
    # A process that wrongly starts would serve forever: the timeout turns that into a failure.
    return subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, timeout=30)


def test_web_refuses_to_start_without_authentication() -> None:
    """With no secret configured and no explicit INGEST_INSECURE, `ingest web` exits 2 and says why."""
    result = run(["web"], DATABASE_URL="postgresql://localhost/x", REDIS_URL="redis://localhost:1/0")
    assert result.returncode == 2
    assert "VAPI_SECRET" in result.stderr or "VAPI_HMAC_SECRET" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("VAPI_HMAC_TOLERANCE", "soon"), ("LOCAL_TIMEZONE", "Mars/Olympus"), ("DB_POOL_MAX", "none")],
)
def test_bad_settings_stop_the_web_process_naming_the_variable(variable: str, value: str) -> None:
    """A malformed setting is refused at start with a message naming it, not a traceback."""
    env = {"DATABASE_URL": "postgresql://localhost/x", "REDIS_URL": "redis://localhost:1/0", "VAPI_HMAC_SECRET": "k"}
    result = run(["web"], **{**env, variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_needs_its_urls() -> None:
    """`ingest worker` without DATABASE_URL says so and points at `ingest dev`."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run([sys.executable, "-m", "ingest", "worker"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


def test_an_error_is_printed_once_for_a_person() -> None:
    """A refusal is one line of text on stderr (not also a JSON log line), and the exit code stays 2."""
    result = run(["web"], DATABASE_URL="postgresql://localhost/x", REDIS_URL="redis://localhost:1/0")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("ingest web: ")
    assert result.stdout == ""
