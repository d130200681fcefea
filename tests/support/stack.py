"""Running ``ingest dev`` in tests: a stack in its own session, its output read line by line."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
# Settings a developer's shell may hold that would change what the stack does.
CONFIG = ("DATABASE_URL", "REDIS_URL", "VAPI_SECRET", "VAPI_HMAC_SECRET", "INGEST_INSECURE")
OPS = ("INGEST_OPS_USER", "INGEST_OPS_PASSWORD", "INGEST_OPS_TOKEN")


def stack_env(data_dir: Path, port: int) -> dict[str, str]:
    """The environment of a stack (and of commands run against it) with nothing configured."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG + OPS}
    env.update(INGEST_DATA_DIR=str(data_dir), PORT=str(port), WORKER_PROCESSES="1", WORKER_THREADS="2")
    return env


class Stack:
    """``ingest dev`` in its own session (like a terminal's foreground job), stdout read line by line."""

    def __init__(
        self, data_dir: Path, port: int, *args: str, command: list[str] | None = None, sigint_ignored: bool = False
    ) -> None:
        """``command`` replaces ``python -m ingest dev ARGS``; ``sigint_ignored`` starts it as a
        background job of a non-interactive shell would be (SIGINT ignored, inherited)."""
        self.env = stack_env(data_dir, port)
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"dev-{uuid.uuid4().hex[:8]}.log"
        self.stderr = self.log_path.open("wb")

        def ignore_sigint() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.process = subprocess.Popen(
            command or [sys.executable, "-m", "ingest", "dev", *args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            start_new_session=True,
            preexec_fn=ignore_sigint if sigint_ignored else None,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read_until(self, done: Callable[[str], bool], timeout: float = 180.0) -> list[str]:
        """Lines up to and including the first one for which ``done`` is true."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out; stdout: {''.join(self.output)}{self.log_tail()}") from None
            if line is None:
                code = self.process.wait()
                raise AssertionError(f"ingest dev exited with {code}: {''.join(self.output)}{self.log_tail()}")
            seen.append(line)
            self.output.append(line)
            if done(line):
                return seen

    def log_tail(self) -> str:
        return "\nstderr: " + self.log_path.read_text(errors="replace")[-3000:]

    def banner(self) -> dict[str, str]:
        lines = self.read_until(lambda line: line.startswith("Ctrl-C"))
        fields = {m.group(1): m.group(2) for line in lines if (m := re.match(r"  (\S.*?) {2,}(\S.*)$", line))}
        fields["replay"] = lines[lines.index("Replay the recorded calls:\n") + 1].strip()
        return fields

    def stop(self, sig: int = signal.SIGINT, *, whole_group: bool = False) -> int:
        if self.process.poll() is None:
            if whole_group:
                os.killpg(self.process.pid, sig)  # what Ctrl-C in a terminal does
            else:
                self.process.send_signal(sig)
        stragglers: list[str] = []
        try:
            return self.process.wait(90)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.reader.join(10)
            if self.reader.is_alive():
                # A process the stack started outlived it and holds its stdout: the reader
                # would block for ever (and closing the pipe under it with it). Kill it, and
                # fail saying which it was, instead of hanging the run.
                stragglers = leftovers(self.data_dir)
                for entry in stragglers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(entry.split(":", 1)[0]), signal.SIGKILL)
                self.reader.join(10)
            while not self.lines.empty():  # what was printed after the last read_until
                if (line := self.lines.get_nowait()) is not None:
                    self.output.append(line)
            if self.process.stdout and not self.reader.is_alive():
                self.process.stdout.close()
            self.stderr.close()
            if stragglers:
                raise AssertionError(f"processes outlived ingest dev and held its output: {stragglers}")


def leftovers(data_dir: Path) -> list[str]:
    """Processes still running with ``data_dir`` in their environment or command line."""
    marks = (f"INGEST_DATA_DIR={data_dir}".encode(), str(data_dir).encode())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ, cmdline = (proc / "environ").read_bytes(), (proc / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marks[0] in environ.split(b"\0") or marks[1] in cmdline:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command}")
    return found


def assert_all_stopped(data_dir: Path, port: int, redis_url: str) -> None:
    deadline = time.monotonic() + 10
    while (left := leftovers(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    stopped = redis.Redis.from_url(redis_url)
    with pytest.raises(redis.ConnectionError):
        stopped.ping()
    stopped.close()
