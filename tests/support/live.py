"""Real service processes for end-to-end tests: started as a user would, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping

import httpx

from ingest.dev.embedded import _free_port

JSON = {"content-type": "application/json"}  # what Vapi sends: the webhook refuses other types (415)


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def web_server(env: Mapping[str, str], *, log_path: str = os.devnull) -> Iterator[str]:
    """``ingest web`` on a free port with ``env``, its log lines appended to ``log_path``; yields its base URL."""
    port = _free_port()
    full_env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1"}
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "ingest", "web"], env=full_env, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", process)
        yield base
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def worker_process(
    env: Mapping[str, str], *, processes: int = 1, threads: int = 4, log_path: str = os.devnull
) -> Iterator[subprocess.Popen[bytes]]:
    """``ingest worker`` in a session of its own (so a test can SIGKILL the whole group)."""
    full_env = {
        **os.environ,
        "LOG_LEVEL": "WARNING",
        **env,
        "WORKER_PROCESSES": str(processes),
        "WORKER_THREADS": str(threads),
    }
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest", "worker"], env=full_env, start_new_session=True, stderr=log
    )
    try:
        yield process
    finally:
        kill_group(process, signal.SIGTERM)
        log.close()


def kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process and every child it started, then reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
