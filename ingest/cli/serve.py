"""``ingest web`` and ``ingest worker``: the two long-running processes of the Procfile."""

from __future__ import annotations

import argparse
import os
import sys

from ingest.db import require
from ingest.metrics import multiprocess
from ingest.settings import Settings


def web(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    require(settings.database_url, "DATABASE_URL")
    require(settings.redis_url, "REDIS_URL")
    # Refuse to start on a bad or missing setting of any concern the web process serves.
    settings.auth  # noqa: B018
    settings.answers  # noqa: B018
    settings.ops_auth  # noqa: B018
    settings.trusted_proxies  # noqa: B018
    settings.webhook_auth_failure_limit  # noqa: B018
    settings.require_keys()
    multiprocess.prepare(multiprocess.WEB, settings.data_dir)  # before the app imports prometheus_client
    uvicorn.run(
        "ingest.web.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools, plus a header-size bound and a header-read timeout (docs/security.md).
        http="ingest.web.http_protocol:GuardedHttpToolsProtocol",
        workers=settings.web_concurrency,
        access_log=False,
        log_config=None,
        # Past this many connections or requests in flight, uvicorn answers 503 at once.
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.keep_alive_timeout,
        # On SIGTERM, requests in flight get this long to finish (Vapi itself waits at most
        # 20 s), then the process exits rather than hanging on a client that never finishes.
        timeout_graceful_shutdown=10,
    )
    return 0


def worker_command(settings: Settings) -> list[str]:
    """Dramatiq's command line, through ``worker.dramatiq_cli`` so that its processes log JSON lines."""
    return [
        sys.executable, "-m", "worker.dramatiq_cli", "worker.actors",
        "--processes", str(settings.worker_processes),
        "--threads", str(settings.worker_threads),
        "--queues", settings.queue_name,
    ]  # fmt: skip


def worker(args: argparse.Namespace, settings: Settings) -> int:
    require(settings.database_url, "DATABASE_URL")
    require(settings.redis_url, "REDIS_URL")
    settings.require_keys()
    multiprocess.prepare(multiprocess.WORKER, settings.data_dir)  # inherited by every worker process
    # How long an idle consumer sleeps before asking Redis again (Dramatiq's default, 1 s,
    # would add up to a second to an event arriving at a quiet worker).
    os.environ["dramatiq_worker_timeout"] = str(settings.worker_idle_poll_ms)  # noqa: SIM112 (Dramatiq reads this name)
    # How many messages a worker process holds fetched and unacknowledged: the events in
    # flight, being mapped or waiting for their commit (worker.acks).
    os.environ["dramatiq_queue_prefetch"] = str(settings.worker_prefetch)  # noqa: SIM112 (Dramatiq reads this name)
    command = worker_command(settings)
    os.execv(command[0], command)  # replace this process: signals reach Dramatiq directly
