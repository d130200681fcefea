"""``ingest erase``: erase a caller's sessions, or one call, on request (``ingest.ops.erase``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from ingest import audit
from ingest.cli.output import table, to_json
from ingest.db import connect
from ingest.mapping.identity import as_uuid
from ingest.ops import erase
from ingest.ops.reveal import MAX_REASON, ReasonRefused, reveal_reason
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditTargetKind

IDS_KEPT = 100  # call ids an audit row lists at most


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--customer-number",
        metavar="NUMBER",
        help="every session of this caller, the number in any notation (+64 21 555 0123, 021 555 0123, 0215550123)",
    )
    which.add_argument("--call", metavar="ID", help="one call, by its id (also when it made no row)")
    parser.add_argument("--client", metavar="ID", help="only this client's sessions (with --customer-number)")
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        required=True,
        help=f"why (the request or ticket; at most {MAX_REASON} characters, no phone number or e-mail address):"
        " recorded in the access log",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be erased; change nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        reason = reveal_reason(args.reason, settings.phone_region)
    except ReasonRefused as exc:
        print(f"ingest erase: --reason: {exc}", file=sys.stderr)
        return 2
    if args.client and args.call:
        print("ingest erase: --client goes with --customer-number", file=sys.stderr)
        return 2
    key = settings.require_pseudonym_key()
    call = as_uuid(args.call) if args.call else None
    if args.call and call is None:
        print(f"ingest erase: --call {args.call!r} is not a call id (a UUID)", file=sys.stderr)
        return 2
    numbers: tuple[str, str] | None = None
    if args.customer_number is not None:
        try:
            numbers = erase.customer_numbers(args.customer_number, settings.phone_region, key)
        except ValueError as exc:
            print(f"ingest erase: --customer-number: {exc}", file=sys.stderr)
            return 2
    with connect(settings) as conn, conn.transaction():  # the lookup, its audit row and the erasure commit together
        plan = erase.find(conn, numbers=numbers, call=call, client=args.client)
        _record(conn, args, plan, reason, call, numbers)
        if not args.dry_run:
            erase.erase(conn, plan, key, audit_id=erase.recorded_audit_id(conn))
    _print(args, plan)
    return 0 if plan.targets else 1


def _record(
    conn: psycopg.Connection[Any],
    args: argparse.Namespace,
    plan: erase.Plan,
    reason: str,
    call: str | None,
    numbers: tuple[str, str] | None,
) -> None:
    """One ``erase`` row: the call, or the caller's sessions in bulk (their pseudonym, never the number)."""
    details: dict[str, Any] = {"dry_run": args.dry_run, "sessions": plan.sessions, "events": plan.events}
    if numbers is not None:
        details["customer"] = numbers[1]
        details["calls"] = [target.key for target in plan.targets][:IDS_KEPT]
    audit.cli().record(
        conn,
        AuditAction.ERASE,
        AuditTargetKind.CALL if call else AuditTargetKind.BULK,
        call,
        target_count=plan.sessions,
        reason=reason,
        client_id=args.client,
        details=details,
    )


def _print(args: argparse.Namespace, plan: erase.Plan) -> None:
    if args.json:
        print(to_json({"dry_run": args.dry_run, **plan.as_dict()}))
        return
    if not plan.targets:
        print("nothing to erase: no session or event matches")
        return
    verb = "would erase" if args.dry_run else "erased"
    print(f"{verb} {plan.sessions} session(s) and {plan.events} raw event(s):")
    rows = [(client, sessions, events) for client, (sessions, events) in plan.per_client().items()]
    print("\n".join(f"  {line}" for line in table(("CLIENT", "SESSIONS", "EVENTS"), rows, right=(1, 2)).splitlines()))
    if args.dry_run:
        print("dry run: nothing changed (the lookup is recorded in the access log)")
    else:
        print("kept: times, durations, cost, client, assistant, outcome, sentiment; the number as its pseudonym.")
        print("a later delivery of these calls is recorded as ignored ('call erased'), without its message.")
