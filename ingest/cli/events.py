"""``ingest events list|show|reapply|discard``: the event log, for operators (``ingest.ops.events``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import psycopg
import redis
from psycopg_pool import ConnectionPool

from ingest import audit
from ingest.cli import revealing
from ingest.cli.output import event_id as event_id_arg
from ingest.cli.output import first_line, positive_int, since, table, to_json, when
from ingest.db import connect, connection_kwargs, require
from ingest.ops import events
from ingest.ops.reveal import hidden_json, hidden_text
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditTargetKind, EventState

DEFAULT_LIMIT = 50
STATES = [state.value for state in EventState]


def _states(text: str) -> list[EventState]:
    """``--state applied,failed``: one or more states, comma-separated."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STATES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: a state is one of {', '.join(STATES)}")
    return [EventState(name) for name in names]


def _add_filters(parser: argparse.ArgumentParser, *, every: bool = False) -> None:
    parser.add_argument("--failed", action="store_true", help="failed events (default: pending and waiting ones)")
    parser.add_argument("--type", dest="message_type", metavar="TYPE", help="only this message type")
    parser.add_argument("--call", metavar="ID", help="only this call id or session id")
    parser.add_argument(
        "--since", type=since, metavar="TIME", help="received at or after TIME: ISO 8601, or 10m, 2h, 1d ago"
    )
    if every:  # reapply: every matching event unless told otherwise
        parser.add_argument("--limit", type=positive_int, help="at most this many, newest first (default: all)")
    else:
        parser.add_argument(
            "--limit",
            type=positive_int,
            default=DEFAULT_LIMIT,
            help=f"at most this many, newest first ({DEFAULT_LIMIT})",
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="events by state (default: pending and waiting), newest first", description="List events."
    )
    _add_filters(listing)
    listing.add_argument(
        "--state",
        dest="states",
        action="extend",
        type=_states,
        default=[],
        metavar="STATE",
        help=f"events in this state ({'|'.join(STATES)}); repeatable or comma-separated (default: pending, waiting)",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser(
        "show",
        help="one event: its error and its message",
        description="Show one event: its message with personal data hidden (every string redacted, numbers"
        " masked). --reveal --reason TEXT prints the message exactly as received, and records the reveal with"
        " its reason.",
    )
    show.add_argument("id", type=event_id_arg, metavar="ID")
    show.add_argument("--json", action="store_true", help="machine-readable output (hidden the same way)")
    revealing.add_options(show, "the message exactly as received")
    reapply = actions.add_parser(
        "reapply",
        help="apply events again, through the worker's handlers and merge",
        description="Re-apply events chosen by id, or every event the filters of `list` match (all of them,"
        " not only the newest 50; --limit N for the newest N).",
    )
    reapply.add_argument("ids", nargs="*", type=event_id_arg, metavar="ID", help="event ids (or use the filters)")
    _add_filters(reapply, every=True)
    discard = actions.add_parser(
        "discard",
        help="give up on failed events (they become ignored; nothing is deleted)",
        description="Mark failed events ignored: they stop counting as failed; their error is kept.",
    )
    discard.add_argument("ids", nargs="+", type=event_id_arg, metavar="ID", help="ids of failed events")


def _select(conn: psycopg.Connection[Any], args: argparse.Namespace) -> list[events.EventSummary]:
    return events.list_events(
        conn,
        failed=args.failed,
        states=args.states,
        message_type=args.message_type,
        call=args.call,
        since=args.since,
        limit=args.limit,
    )


def _listed_states(args: argparse.Namespace) -> str:
    """``pending or waiting``: the states ``list`` shows, in ``EventState`` order."""
    chosen = {*args.states, *([EventState.FAILED] if args.failed else [])}
    names = [s.value for s in EventState if s in chosen] or [EventState.PENDING.value, EventState.WAITING.value]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filters of a list or a re-apply, for its access-log entry."""
    states = [state.value for state in getattr(args, "states", [])] + (["failed"] if args.failed else [])
    return {"states": states, "type": args.message_type, "since": args.since, "limit": args.limit}


def _audit_many(conn: psycopg.Connection[Any], action: AuditAction, args: argparse.Namespace, count: int) -> None:
    """One entry for events chosen by ``--call`` (the call is the target) or by other filters (bulk)."""
    kind, target = audit.call_target(args.call) if args.call else (AuditTargetKind.BULK, None)
    audit.cli().record(conn, action, kind, target, target_count=count, details=_filters(args))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn, conn.transaction():
        events = _select(conn, args)
        _audit_many(conn, AuditAction.LIST_EVENTS, args, len(events))
    if args.json:
        print(to_json([event.as_dict() for event in events]))
        return 0
    if not events:
        print(f"no {_listed_states(args)} events")
        return 0
    rows = [
        (e.id, when(e.received_at), e.message_type, e.key or "-", e.state, e.attempts, first_line(e.error, 100))
        for e in events
    ]
    print(table(("ID", "RECEIVED", "TYPE", "CALL/SESSION", "STATE", "ATTEMPTS", "ERROR"), rows, right=(0, 5)))
    if len(events) == args.limit:
        print(f"(the newest {args.limit}; --limit for more)")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        reason = revealing.reason(args, settings.phone_region)
    except revealing.Refused as exc:
        print(f"ingest events show: {exc}", file=sys.stderr)
        return 2
    with connect(settings) as conn, conn.transaction():  # the read and its record commit together
        event = events.get_event(conn, args.id, settings.privacy)
        about: dict[str, Any] = {"call": event.key} if event and event.key else {}
        if reason is None:
            shown = int(event is not None)
            audit.cli().record(
                conn, AuditAction.VIEW_EVENT, AuditTargetKind.EVENT, str(args.id), target_count=shown, details=about
            )
        else:
            shown = int(event is not None and event.unreadable is None)
            if event is not None and event.unreadable is not None:
                about["unopened_key"] = event.key_id
            audit.cli().record(
                conn,
                AuditAction.REVEAL,
                AuditTargetKind.EVENT,
                str(args.id),
                target_count=shown,
                reason=reason,
                details=about,
            )
    if event is None:
        print(f"ingest events show: no event {args.id}", file=sys.stderr)
        return 1
    if event.unreadable is not None:  # its message is sealed under a key not configured here
        print(f"ingest events show: cannot open the message of event {event.id}: {event.unreadable}", file=sys.stderr)
        return 1
    region = settings.phone_region
    if reason is None:
        event = dataclasses.replace(
            event,
            message=hidden_json(event.message, region),
            last_error=hidden_text(event.last_error, region) if event.last_error else None,
            error=hidden_text(event.error, region) if event.error else None,
        )
    if args.json:
        print(to_json({**event.as_dict(), "revealed": reason is not None}))
        return 0
    fields = [
        ("type", event.message_type),
        ("call", event.call_id or "-"),
        ("session", event.session_id or "-"),
        ("state", f"{event.state} ({event.attempts} attempt{'s' if event.attempts != 1 else ''})"),
        ("received", when(event.received_at)),
        ("queued", when(event.enqueued_at)),
        ("applied", when(event.applied_at)),
        ("updated", when(event.updated_at)),
        ("dedupe key", event.dedupe_key),
    ]
    print(f"event {event.id}")
    print("\n".join(f"  {name + ':':<12} {value}" for name, value in fields))
    if event.last_error:
        print("error:")
        print("\n".join(f"  {line}" for line in event.last_error.splitlines()))
    if reason is None:
        hint = f"`ingest events show {event.id} --reveal --reason TEXT` prints it as received"
        print(f"message (personal data hidden; {hint}):")
    else:
        print("message (as received; this reveal is recorded in the access log, with its reason):")
    print(to_json(event.message))
    return 0


def _reapply(args: argparse.Namespace, settings: Settings) -> int:
    filtered = args.failed or args.message_type or args.call or args.since
    if args.ids and filtered:
        print("ingest events reapply: give event ids or filters, not both", file=sys.stderr)
        return 2
    if not args.ids and not filtered:
        print("ingest events reapply: give event ids, or filters (--failed, --type, --call, --since)", file=sys.stderr)
        return 2
    with connect(settings) as conn:  # fails fast when the database is unreachable
        ids = args.ids or events.matching_event_ids(
            conn, failed=args.failed, message_type=args.message_type, call=args.call, since=args.since, limit=args.limit
        )
        if args.ids:
            audit.cli().record(conn, AuditAction.REAPPLY, **audit.by_ids(AuditTargetKind.EVENT, ids))
        else:
            _audit_many(conn, AuditAction.REAPPLY, args, len(ids))
    url = require(settings.database_url, "DATABASE_URL")
    pool = ConnectionPool(url, min_size=1, max_size=1, kwargs=connection_kwargs(settings), open=False, name="ops")
    try:
        pool.open(wait=True, timeout=10)
        result = events.reapply(pool, ids, privacy=settings.privacy)
    finally:
        pool.close()
    print(f"applied {result.applied} of {result.total}")
    for event_id, reason in result.failures:
        print(f"  event {event_id}: {first_line(reason, 300)}")
    return 0 if result.ok else 1


def _discard(args: argparse.Namespace, settings: Settings) -> int:
    """Mark failed events ignored and delete their dead letters (the page's discard does the same)."""
    client = redis.Redis.from_url(require(settings.redis_url, "REDIS_URL"), socket_timeout=10)
    try:
        with connect(settings) as conn, conn.transaction():
            audit.cli().record(conn, AuditAction.DISCARD, **audit.by_ids(AuditTargetKind.EVENT, args.ids))
            count = events.discard(conn, args.ids, events.Queue(client, settings.queue_namespace, settings.queue_name))
    finally:
        client.close()
    ids = list(dict.fromkeys(args.ids))
    print(f"discarded {count} of {len(ids)}")
    if count < len(ids):
        print("  (only failed events are discarded; the others were left as they are)")
    return 0 if count == len(ids) else 1


ACTIONS = {"list": _list, "show": _show, "reapply": _reapply, "discard": _discard}


def run(args: argparse.Namespace, settings: Settings) -> int:
    return ACTIONS[args.action](args, settings)
