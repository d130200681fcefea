"""``ingest audit list``: who read session data or acted on it, newest first (``ingest.audit``)."""

from __future__ import annotations

import argparse
from typing import Any

from ingest import audit
from ingest.cli.output import first_line, positive_int, since, table, to_json, when
from ingest.db import connect
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditTargetKind

DEFAULT_LIMIT = 50
ACTION_NAMES = [action.value for action in AuditAction]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="the access log, newest first",
        description="Reads of session data and administrative actions, newest first: who, when, through which"
        " surface, what.",
    )
    listing.add_argument("--call", metavar="ID", help="only entries about this call or session id (or its events)")
    listing.add_argument("--actor", metavar="NAME", help="only this actor (an OS user, the ops user, …)")
    listing.add_argument(
        "--action", dest="audit_action", choices=ACTION_NAMES, metavar="ACTION", help="|".join(ACTION_NAMES)
    )
    listing.add_argument("--since", type=since, metavar="TIME", help="at or after TIME: ISO 8601, or 10m, 2h, 7d ago")
    listing.add_argument(
        "--limit", type=positive_int, default=DEFAULT_LIMIT, help=f"at most this many, newest first ({DEFAULT_LIMIT})"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")


def _target(entry: audit.Entry) -> str:
    if entry.target_kind == AuditTargetKind.BULK:
        return "bulk"
    if entry.target_kind and entry.target:
        return f"{entry.target_kind} {entry.target}"
    return "-"


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn:
        entries = audit.list_entries(
            conn, call=args.call, actor=args.actor, action=args.audit_action, since=args.since, limit=args.limit
        )
    if args.json:
        print(to_json([entry.as_dict() for entry in entries]))
        return 0
    if not entries:
        filtered = args.call or args.actor or args.audit_action or args.since
        print("no entries matching the filters" if filtered else "no entries")
        return 0
    rows: list[tuple[Any, ...]] = [
        (
            e.id,
            when(e.at),
            e.actor,
            e.surface,
            e.action,
            _target(e),
            "-" if e.target_count is None else e.target_count,
            e.client_id or "-",
            first_line(e.reason, 60) or "-",
        )
        for e in entries
    ]
    print(table(("ID", "AT", "ACTOR", "SURFACE", "ACTION", "TARGET", "COUNT", "CLIENT", "REASON"), rows, right=(0, 6)))
    if len(entries) == args.limit:
        print(f"(the newest {args.limit}; --limit for more)")
    return 0


ACTIONS = {"list": _list}


def run(args: argparse.Namespace, settings: Settings) -> int:
    return ACTIONS[args.action](args, settings)
