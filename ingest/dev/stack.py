"""``ingest dev``: the whole service on one machine, in one command.

Starts an embedded Postgres and Redis when ``DATABASE_URL`` / ``REDIS_URL`` are unset
(data kept under ``INGEST_DATA_DIR``), applies the migrations, runs the web and worker
processes, prints where everything is once ``/readyz`` answers (and with ``--demo`` sends
sample calls through the endpoint), then runs until Ctrl-C and stops everything it started.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx

from ingest.dev import demo, processes, state
from ingest.dev.embedded import EmbeddedPostgres, EmbeddedRedis, data_dir_lock
from ingest.migrate import migrate
from ingest.sealing import generate_key
from ingest.settings import Settings

log = logging.getLogger(__name__)

OPS_USER = "ops"
OPS_PASSWORD_FILE = "ops-password"  # noqa: S105 - a file name
READY_TIMEOUT = 120.0
Children = dict[str, subprocess.Popen[bytes]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-worker", action="store_true", help="run the web process only")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="once ready, send a few sample calls (and one event that fails on purpose) and summarise the result",
    )


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


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in ``path`` (mode 0600), made by ``make`` on first use and reused after."""
    if path.exists():
        path.chmod(0o600)
        if kept := path.read_text().strip():
            return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    path.chmod(0o600)  # the mode above only applies to a new file, and through the umask
    return secret


def ops_password(data_dir: Path) -> str:
    """The generated ``/ops`` password kept in ``data_dir``."""
    return kept_secret(data_dir / OPS_PASSWORD_FILE, lambda: secrets.token_urlsafe(18))


def encryption_key(data_dir: Path) -> str:
    """The local stack's sealing key (``INGEST_ENCRYPTION_KEYS``) kept in ``data_dir``."""
    return kept_secret(data_dir / state.KEY_FILE, generate_key)


def pseudonym_key(data_dir: Path) -> str:
    """The local stack's ``INGEST_PSEUDONYM_KEY`` kept in ``data_dir``."""
    return kept_secret(data_dir / state.PSEUDONYM_KEY_FILE, lambda: base64.b64encode(secrets.token_bytes(32)).decode())


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
    if not any(env.get(name) for name in ("INGEST_OPS_USER", "INGEST_OPS_PASSWORD", "INGEST_OPS_TOKEN")):
        env["INGEST_OPS_USER"] = OPS_USER
        env["INGEST_OPS_PASSWORD"] = ops_password(settings.data_dir)
    if not env.get("INGEST_ENCRYPTION_KEYS") and not env.get("INGEST_PLAINTEXT"):
        # sealed like production; losing the file loses what it sealed (docs/local-stack.md)
        env["INGEST_ENCRYPTION_KEYS"] = encryption_key(settings.data_dir)
    if not env.get("INGEST_PSEUDONYM_KEY"):
        env["INGEST_PSEUDONYM_KEY"] = pseudonym_key(settings.data_dir)
    return env


def base_url(settings: Settings) -> str:
    """``http://HOST:PORT`` as a browser on this machine reaches it (a wildcard bind is loopback)."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)  # noqa: S104
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies under it, quoted for a shell."""
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)


def replay_command(settings: Settings, env: dict[str, str]) -> str:
    """An ``ingest replay`` of recorded calls that works as printed, from a fresh shell."""
    script = Path(sys.executable).with_name("ingest")
    program = _shown(script) if script.is_file() else f"{_shown(Path(sys.executable))} -m ingest"
    calls = Path("tests/fixtures/calls")
    source = _shown(calls) if calls.is_dir() else _shown(demo.DEMO_DIR)
    # Without a secret the service runs insecure; replay, like the service, then needs INGEST_INSECURE to run.
    prefix = "INGEST_INSECURE=true " if env.get("INGEST_INSECURE") else ""
    return f"{prefix}{program} replay {source} --url {base_url(settings)}/webhooks/vapi"


def generated_ops_password(env: dict[str, str]) -> bool:
    """Whether ``child_env`` made up the ``/ops`` password (none was configured)."""
    return bool(env.get("INGEST_OPS_PASSWORD")) and not os.environ.get("INGEST_OPS_PASSWORD")


def _ops_login(env: dict[str, str]) -> str:
    if generated_ops_password(env):
        return f"{env['INGEST_OPS_USER']} / {env['INGEST_OPS_PASSWORD']}"
    if env.get("INGEST_OPS_USER"):
        return f"{env['INGEST_OPS_USER']} / the password in INGEST_OPS_PASSWORD"
    return "Authorization: Bearer <INGEST_OPS_TOKEN>"


def banner(settings: Settings, env: dict[str, str]) -> str:
    base = base_url(settings)
    lines = [
        "",
        "vapi-ingest is running (local development stack)",
        f"  webhook URL  {base}/webhooks/vapi",
        f"  ops page     {base}/ops",
        f"  ops login    {_ops_login(env)}",
        f"  metrics      {base}/metrics",
        f"  health       {base}/readyz",
        f"  database     {redact(settings.database_url)}",
        f"  redis        {redact(settings.redis_url)}",
        f"  data         {settings.data_dir.resolve()}",
    ]
    if generated_ops_password(env):
        path = settings.data_dir.resolve() / OPS_PASSWORD_FILE
        lines.append(f"The ops password was generated for this local stack and is kept in {path}.")
    if env.get("INGEST_INSECURE"):
        lines.append("Webhooks are accepted WITHOUT authentication (no VAPI_SECRET or VAPI_HMAC_SECRET): local only.")
    else:
        lines.append("Replay signs with VAPI_SECRET / VAPI_HMAC_*: export the same settings in the replaying shell.")
    lines += ["Replay the recorded calls:", f"  {replay_command(settings, env)}", "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


class _Failed(Exception):
    """A child exited on its own, or the web process never became ready."""


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM stops everything as Ctrl-C does (asyncio and psycopg let KeyboardInterrupt through)."""
    raise KeyboardInterrupt


def check_alive(children: Children) -> None:
    for name, child in children.items():
        if child.poll() is not None:
            log.error("process exited", extra={"child": name, "code": child.returncode})
            raise _Failed(f"{name} exited with {child.returncode}")


def wait_until_ready(url: str, check: Callable[[], None], timeout: float = READY_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200; ``check`` raises if a child died meanwhile."""
    deadline = time.monotonic() + timeout
    answer = "no answer"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            check()
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                answer = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                answer = type(exc).__name__
            if time.monotonic() > deadline:
                raise _Failed(f"{url} not ready after {timeout:g}s (last answer: {answer})")
            time.sleep(0.2)


@contextmanager
def supervised(commands: dict[str, list[str]], env: dict[str, str]) -> Iterator[Children]:
    """Start ``commands``; on the way out stop them, deaf to further Ctrl-C until all are gone."""
    children: Children = {}
    try:
        for name, command in commands.items():
            children[name] = processes.start(command, env=env)
        yield children
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not strand anything
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        processes.stop(children)


def _serve(args: argparse.Namespace, settings: Settings, env: dict[str, str], children: Children) -> NoReturn:
    def check() -> None:
        check_alive(children)

    base = base_url(settings)
    wait_until_ready(f"{base}/readyz", check)
    state.write(settings.data_dir, {**env, "HOST": settings.host, "PORT": str(settings.port)})
    print(banner(settings, env), flush=True)
    if args.demo:
        assert settings.database_url is not None
        demo.run(f"{base}/webhooks/vapi", env, settings.database_url, check=check)
    while True:
        check()
        time.sleep(0.2)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.demo and args.no_worker:
        print("ingest dev: --demo needs the worker (drop --no-worker)", file=sys.stderr)
        return 2
    # SIGINT explicitly too: a stack started in the background of a non-interactive shell
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler of its own.
    previous = signal.signal(signal.SIGINT, _interrupt), signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ExitStack() as stack:
            settings = stack.enter_context(embedded_services(settings))
            stack.callback(state.remove, settings.data_dir)
            assert settings.database_url is not None
            applied = migrate(
                settings.database_url, local_timezone=settings.local_timezone, create_clients=settings.create_clients
            )
            log.info("schema ready", extra={"applied": applied})
            env = child_env(settings)
            python = sys.executable
            commands = {"web": [python, "-m", "ingest", "web"]}
            if not args.no_worker:
                commands["worker"] = [python, "-m", "ingest", "worker"]
            children = stack.enter_context(supervised(commands, env))
            _serve(args, settings, env, children)
    except KeyboardInterrupt:
        return 0
    except _Failed as exc:
        print(f"ingest dev: {exc}; stopped everything", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
