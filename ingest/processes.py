"""``ingest web`` and ``ingest worker``: the two long-running processes of the Procfile."""

from __future__ import annotations

import argparse
import os
import sys

from ingest.answers import AnswerSettings
from ingest.auth_settings import AuthSettings
from ingest.db import require
from ingest.settings import Settings


def web(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    require(settings.database_url, "DATABASE_URL")
    require(settings.redis_url, "REDIS_URL")
    AuthSettings.from_env(os.environ)  # refuse to start on a bad or missing credential setting
    AnswerSettings.from_env(os.environ)
    uvicorn.run(
        "ingest.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        workers=settings.web_concurrency,
        access_log=False,
        log_config=None,
    )
    return 0


def worker_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "dramatiq", "worker.actors",
        "--processes", str(settings.worker_processes),
        "--threads", str(settings.worker_threads),
        "--queues", settings.queue_name,
    ]  # fmt: skip


def worker(args: argparse.Namespace, settings: Settings) -> int:
    require(settings.database_url, "DATABASE_URL")
    require(settings.redis_url, "REDIS_URL")
    command = worker_command(settings)
    os.execv(command[0], command)  # replace this process: signals reach Dramatiq directly
