"""``ingest worker``: the Dramatiq command it becomes, and the settings it hands Dramatiq by environment."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from ingest.cli import serve
from ingest.errors import ConfigError
from ingest.settings import Settings


class Execed(Exception):
    pass


def test_the_worker_gets_its_threads_prefetch_and_idle_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKER_PREFETCH bounds the messages a process holds unacknowledged (events in flight)."""
    environ = dict(os.environ)
    monkeypatch.setattr(os, "environ", environ)
    commands: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        commands.append(argv)
        raise Execed

    monkeypatch.setattr(os, "execv", execv)
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "INGEST_PLAINTEXT": "true",
            "INGEST_DATA_DIR": str(tmp_path),
            "WORKER_THREADS": "3",
            "WORKER_PREFETCH": "96",
            "WORKER_IDLE_POLL_MS": "40",
        }
    )
    with pytest.raises(Execed):
        serve.worker(argparse.Namespace(), settings)
    (command,) = commands
    assert command[command.index("--threads") + 1] == "3"
    assert environ["dramatiq_queue_prefetch"] == "96"
    assert environ["dramatiq_worker_timeout"] == "40"
    assert Settings.from_env({}).worker_prefetch == 64


def test_a_prefetch_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="WORKER_PREFETCH"):
        Settings.from_env({"WORKER_PREFETCH": "0"})
