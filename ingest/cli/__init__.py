"""The ``ingest`` command: one sub-command per module, listed in one table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import psycopg
import redis
from psycopg_pool import PoolTimeout

from ingest.cli import (
    anomalies,
    audit,
    calls,
    dlq,
    erase,
    events,
    keys,
    queue,
    rebuild,
    reconcile,
    replay,
    retention,
    serve,
)
from ingest.dev import stack, state
from ingest.dev.embedded import EmbeddedError
from ingest.errors import ConfigError
from ingest.logs import configure_logging
from ingest.migrate import MigrationError
from ingest.settings import Settings

Command = Callable[[argparse.Namespace, Settings], int]

# The commands that are (or start) the service: they take their servers from the environment
# only. Every other command also finds a running local stack by itself (ingest.dev.state).
SERVICE_COMMANDS = frozenset({"dev", "web", "worker"})


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.db import require
    from ingest.migrate import migrate

    applied = migrate(
        require(settings.database_url, "DATABASE_URL"),
        local_timezone=settings.local_timezone,
        create_clients=settings.create_clients,
    )
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(prog="ingest", description="Vapi webhook ingestion service.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, Command] = {}

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        commands[name] = func
        return sub.add_parser(name, help=help_text, description=help_text)

    add("migrate", _migrate, "Apply sql/migrations, then sql/functions, to DATABASE_URL (safe to re-run).")
    dev = add("dev", stack.run, "Run the whole stack locally: embedded Postgres/Redis, migrations, web, worker.")
    stack.add_arguments(dev)
    add("web", serve.web, "Serve the webhook endpoint (uvicorn) on HOST:PORT.")
    add("worker", serve.worker, "Run the Dramatiq workers that apply queued events.")
    replay_parser = add("replay", replay.run, "Send recorded Vapi bodies to a running service, signed like Vapi.")
    replay.add_arguments(replay_parser)
    queue_parser = add("queue", queue.run, "Queue depths and the event log's backlog, once or refreshed.")
    queue.add_arguments(queue_parser)
    events_parser = add("events", events.run, "List, show, re-apply or discard recorded events.")
    events.add_arguments(events_parser)
    calls_parser = add(
        "calls", calls.run, "List recent calls (user_sessions rows), show one whole, or export a caller's."
    )
    calls.add_arguments(calls_parser)
    dlq_parser = add("dlq", dlq.run, "List, requeue or purge Dramatiq's dead-lettered messages.")
    dlq.add_arguments(dlq_parser)
    rebuild_parser = add("rebuild", rebuild.run, "Re-derive user_sessions rows from call_events alone.")
    rebuild.add_arguments(rebuild_parser)
    keys_parser = add("keys", keys.run, "Make a sealing key, see what each key seals, re-seal under the first key.")
    keys.add_arguments(keys_parser)
    retention_parser = add("retention", retention.run, "What the retention policy has due; run it now (--dry-run).")
    retention.add_arguments(retention_parser)
    reconcile_parser = add(
        "reconcile", reconcile.run, "Read the calls from Vapi's API; apply and list what the webhooks missed."
    )
    reconcile.add_arguments(reconcile_parser)
    audit_parser = add("audit", audit.run, "List the access log: who read session data or acted on it, and when.")
    audit.add_arguments(audit_parser)
    anomalies_parser = add(
        "anomalies", anomalies.run, "Unusual call patterns: list them, scan now, or acknowledge one with a reason."
    )
    anomalies.add_arguments(anomalies_parser)
    erase_parser = add(
        "erase", erase.run, "Erase a caller's sessions (or one call) on request: personal data goes, billing stays."
    )
    erase.add_arguments(erase_parser)
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command not in SERVICE_COMMANDS:
            settings = state.discovered(settings)  # the servers of a running `ingest dev`
        configure_logging(settings.log_level)
        return commands[args.command](args, settings)
    except (ConfigError, MigrationError, EmbeddedError) as exc:
        print(f"ingest {args.command}: {exc}", file=sys.stderr)
        return 2
    except (psycopg.OperationalError, PoolTimeout, redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"ingest {args.command}: cannot reach a server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
