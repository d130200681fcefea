"""``ingest dev``: the whole service on one machine, in one command.

Starts an embedded Postgres and Redis when ``DATABASE_URL`` / ``REDIS_URL`` are unset
(data kept under ``INGEST_DATA_DIR``), applies the migrations, then runs the web and
worker processes until Ctrl-C, and stops everything it started.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from ingest.embedded import EmbeddedPostgres, EmbeddedRedis, data_dir_lock
from ingest.migrate import migrate
from ingest.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-worker", action="store_true", help="run the web process only")


@contextmanager
def embedded_services(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose URLs point at real or embedded servers; stop what was started."""
    with ExitStack() as stack:
        if not (settings.database_url and settings.redis_url):
            stack.enter_context(data_dir_lock(settings.data_dir))
        if not settings.database_url:
            postgres = EmbeddedPostgres(settings.data_dir / "postgres")
            settings = replace(settings, database_url=postgres.start())
            stack.callback(postgres.stop)
        if not settings.redis_url:
            redis = EmbeddedRedis(settings.data_dir / "redis")
            settings = replace(settings, redis_url=redis.start())
            stack.callback(redis.stop)
        yield settings


def redact(url: str | None) -> str:
    """The URL with any password replaced, for printing."""
    parts = urlsplit(url or "")
    if not parts.password:
        return url or ""
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = settings.database_url or ""
    env["REDIS_URL"] = settings.redis_url or ""
    if not (env.get("VAPI_SECRET") or env.get("VAPI_HMAC_SECRET") or env.get("INGEST_INSECURE")):
        env["INGEST_INSECURE"] = "true"
        log.warning(
            "no VAPI_SECRET or VAPI_HMAC_SECRET set: `ingest dev` accepts webhooks WITHOUT authentication. "
            "Never expose this to the internet."
        )
    return env


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def supervise(children: dict[str, subprocess.Popen[bytes]]) -> int:
    """Wait until a signal arrives or a child exits; then stop every child."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    code = 0
    try:
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    log.error("process exited", extra={"process": name, "code": child.returncode})
                    code = 1
                    raise _Stop
            time.sleep(0.2)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in children.items():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                log.warning("process did not stop in time; killing it", extra={"process": name})
                child.kill()
                child.wait()
    return code


def run(args: argparse.Namespace, settings: Settings) -> int:
    with embedded_services(settings) as settings:
        assert settings.database_url is not None
        applied = migrate(settings.database_url, local_timezone=settings.local_timezone)
        log.info("schema ready", extra={"applied": applied})
        env = child_env(settings)
        python = sys.executable
        children = {"web": subprocess.Popen([python, "-m", "ingest", "web"], env=env)}
        if not args.no_worker:
            children["worker"] = subprocess.Popen([python, "-m", "ingest", "worker"], env=env)
        print(
            f"\nvapi-ingest is running\n"
            f"  webhook URL  http://{settings.host}:{settings.port}/webhooks/vapi\n"
            f"  health       http://{settings.host}:{settings.port}/healthz\n"
            f"  database     {redact(settings.database_url)}\n"
            f"  redis        {redact(settings.redis_url)}\n"
            f"  data         {settings.data_dir.resolve()}\n"
            f"Ctrl-C stops everything.\n",
            flush=True,
        )
        return supervise(children)
