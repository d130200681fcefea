"""``ingest dlq list|requeue|purge``: Dramatiq's dead letters for the main queue (``ingest.ops.dead_letters``)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import redis

from ingest import audit
from ingest.cli.output import NotInteractive, age, confirm, first_line, positive_int, table, to_json, when
from ingest.db import connect, require
from ingest.ops import dead_letters
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditTargetKind


def _select(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID", help=f"dead-lettered message ids to {verb}")
    parser.add_argument("--all", action="store_true", help=f"{verb} every dead letter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the dead letters, oldest first", description="List dead letters.")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--limit", type=positive_int, help="at most this many, oldest first")
    requeue = actions.add_parser(
        "requeue",
        help="put dead letters back on the queue (retries reset, enqueued now)",
        description="Move dead letters back to the end of the main queue, as fresh messages.",
    )
    _select(requeue, "requeue")
    purge = actions.add_parser(
        "purge", help="delete dead letters for good", description="Delete dead letters (asks first)."
    )
    _select(purge, "delete")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def _client(settings: Settings) -> redis.Redis:
    url = require(settings.redis_url, "REDIS_URL")
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def _ids(args: argparse.Namespace) -> list[str] | None:
    """The ids given, or None for ``--all``."""
    return None if args.all else list(args.ids)


def _audit(settings: Settings, action: AuditAction, ids: list[str] | None) -> None:
    """Record a requeue or purge before it runs (in Postgres: no access log, no action)."""
    with connect(settings) as conn:
        if ids is None:  # --all: as many as there are when it runs
            audit.cli().record(conn, action, AuditTargetKind.BULK, details={"all": True})
        else:
            audit.cli().record(conn, action, **audit.by_ids(AuditTargetKind.DEAD_LETTER, ids))


def _list(args: argparse.Namespace, settings: Settings, client: redis.Redis) -> int:
    letters = dead_letters.list_dead_letters(client, settings.queue_namespace, settings.queue_name, limit=args.limit)
    if args.json:
        print(to_json([letter.as_dict() for letter in letters]))
        return 0
    if not letters:
        print(f"no dead letters on {settings.queue_name}")
        return 0
    now = datetime.now(UTC)
    rows = [
        (
            d.id,
            f"{when(d.dead_at)} ({age((now - d.dead_at).total_seconds())} ago)",
            d.actor or "?",
            d.message_type or "?",
            d.call or "-",
            d.retries,
            first_line(d.error, 80),
        )
        for d in letters
    ]
    print(table(("ID", "DEAD-LETTERED", "ACTOR", "TYPE", "CALL/SESSION", "RETRIES", "ERROR"), rows, right=(5,)))
    return 0


def _requeue(args: argparse.Namespace, settings: Settings, client: redis.Redis) -> int:
    ids = _ids(args)
    _audit(settings, AuditAction.DLQ_REQUEUE, ids)
    result = dead_letters.requeue(client, settings.queue_namespace, settings.queue_name, ids)
    print(f"requeued {result.requeued} message(s) on {settings.queue_name}")
    for redis_id in result.not_found:
        print(f"  {redis_id}: not dead-lettered (any more)")
    for redis_id in result.unreadable:
        print(f"  {redis_id}: not a readable message; left in the dead letters (purge it)")
    return 0 if not result.not_found and not result.unreadable else 1


def _purge(args: argparse.Namespace, settings: Settings, client: redis.Redis) -> int:
    ids = _ids(args)
    if ids is None:
        ids = dead_letters.dead_letter_ids(client, settings.queue_namespace, settings.queue_name)
        if not ids:
            print(f"no dead letters on {settings.queue_name}")
            return 0
    question = f"Delete {len(ids)} dead-lettered message(s) from {settings.queue_name} for good?"
    try:
        if not confirm(question, assume_yes=args.yes):
            print("nothing deleted")
            return 1
    except NotInteractive as exc:
        print(f"ingest dlq purge: {exc}", file=sys.stderr)
        return 2
    _audit(settings, AuditAction.DLQ_PURGE, ids)
    deleted = dead_letters.purge(client, settings.queue_namespace, settings.queue_name, ids)
    print(f"deleted {deleted} dead-lettered message(s)")
    return 0 if deleted == len(set(ids)) else 1


ACTIONS = {"list": _list, "requeue": _requeue, "purge": _purge}


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action != "list" and bool(args.ids) == bool(args.all):
        print(f"ingest dlq {args.action}: give message ids or --all", file=sys.stderr)
        return 2
    client = _client(settings)
    try:
        return ACTIONS[args.action](args, settings, client)
    finally:
        client.close()
