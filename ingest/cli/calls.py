"""``ingest calls list|show|export``: the rows in ``user_sessions``, for operators (``ingest.ops.calls``)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from ingest import audit
from ingest.cli import revealing
from ingest.cli.output import age, first_line, positive_int, since, table, to_json, wallclock, when
from ingest.db import connect
from ingest.mapping.identity import as_uuid
from ingest.ops import calls, erase
from ingest.ops.reveal import ReasonRefused, reveal_reason, unopened
from ingest.patch import ORIGINALS, Source
from ingest.sealing import KeyUnavailable, SealError
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditTargetKind, EventState

DEFAULT_LIMIT = 50
TEXT_BLOCKS = ("call_summary", "call_transcript")  # printed whole, below the columns
SEALED = {original: column for column, original in ORIGINALS.items()}
LOCAL = {"started_at_nz": "started_at_local", "ended_at_nz": "ended_at_local"}


def _uuid(what: str) -> Any:
    def parse(text: str) -> str:
        value = as_uuid(text)
        if value is None:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {what}: a UUID such as 44447e38-9fd3-4025-bc93-2132b1b437d0"
            )
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="recent calls, newest started first",
        description="Recent calls in user_sessions: key fields only, the customer's number masked.",
    )
    listing.add_argument(
        "--since", type=since, metavar="TIME", help="started at or after TIME: ISO 8601, or 10m, 2h, 1d, 1w ago"
    )
    listing.add_argument("--client", metavar="ID", help="only this client id")
    listing.add_argument("--assistant", type=_uuid("an assistant id"), metavar="ID", help="only this assistant id")
    listing.add_argument("--outcome", metavar="OUTCOME", help="only this call outcome (e.g. appointment_booked)")
    listing.add_argument(
        "--limit", type=positive_int, default=DEFAULT_LIMIT, help=f"at most this many ({DEFAULT_LIMIT})"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser(
        "show",
        help="one call: every column, where each value came from, its events",
        description="One call's row with personal data hidden (numbers masked, transcript and summary redacted,"
        " sealed originals named by their key), its provenance and its events. --reveal --reason TEXT shows the"
        " original transcript and summary and whole numbers, and records the reveal with its reason.",
    )
    show.add_argument("call_id", type=_uuid("a call id"), metavar="CALL_ID")
    show.add_argument("--json", action="store_true", help="machine-readable output (hidden the same way)")
    revealing.add_options(show, "the original transcript and summary and whole numbers")
    export = actions.add_parser(
        "export",
        help="everything kept about one caller, revealed (an access request), as JSON",
        description="Every session of a caller (the number in any notation) with its originals opened and its"
        " events' messages, as one JSON document on stdout: the answer to an access request. Recorded in the"
        " access log with the reason and the number of sessions.",
    )
    export.add_argument("--customer-number", required=True, metavar="NUMBER", help="the caller's number")
    export.add_argument("--client", metavar="ID", help="only this client's sessions")
    export.add_argument(
        "--reason", required=True, metavar="TEXT", help="the request or ticket (no phone number): recorded"
    )
    export.add_argument("--json", action="store_true", default=True, help="JSON output (the default and only form)")


def _money(value: Any) -> str:
    return "-" if value is None else str(value)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn, conn.transaction():
        found = calls.list_calls(
            conn, since=args.since, client=args.client, assistant=args.assistant, outcome=args.outcome, limit=args.limit
        )
        filters = {"since": args.since, "assistant": args.assistant, "outcome": args.outcome, "limit": args.limit}
        audit.cli().record(
            conn,
            AuditAction.LIST_CALLS,
            AuditTargetKind.BULK,
            target_count=len(found),
            client_id=args.client,
            details=filters,
        )
    if args.json:
        print(to_json([call.as_dict() for call in found]))
        return 0
    if not found:
        since_text = f" started since {when(args.since)}" if args.since else ""
        print(f"no calls{since_text}" + (" matching the filters" if _filtered(args) else ""))
        return 0
    zone = found[0].local_timezone
    rows = [
        (
            c.key,
            when(c.started_at),
            wallclock(c.started_at_local),
            age(float(c.duration_seconds)) if c.duration_seconds is not None else "-",
            _money(c.cost_total),
            c.client_id or "-",
            c.assistant_id,
            c.type or "-",
            c.outcome or "-",
            c.ended_reason or "-",
            c.customer or "-",
        )
        for c in found
    ]
    headers = ("CALL/SESSION", "STARTED (UTC)", f"STARTED ({zone})", "DURATION", "COST", "CLIENT", "ASSISTANT")
    print(table((*headers, "TYPE", "OUTCOME", "ENDED REASON", "CUSTOMER"), rows, right=(3, 4)))
    if len(found) == args.limit:
        print(f"(the newest {args.limit}; --limit for more)")
    return 0


def _filtered(args: argparse.Namespace) -> bool:
    return bool(args.client or args.assistant or args.outcome)


def _value(column: str, value: Any, detail: calls.CallDetail) -> str:
    """One column as ``show`` prints it (hidden or revealed already): summarised or labelled with its zone."""
    if value is None:
        return "-"
    if column in SEALED:
        if detail.revealed:
            return f"(opened: below, as {SEALED[column]} (original))"
        return f"{value} — use --reveal --reason TEXT"
    if column in LOCAL:
        local = detail.started_at_local if column == "started_at_nz" else detail.ended_at_local
        stored = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
        return (
            f"{wallclock(local)} {detail.local_timezone}  (stored as {stored}: the local wall-clock time, read as UTC)"
        )
    if isinstance(value, datetime):
        return when(value)
    if column in TEXT_BLOCKS:
        lines = len(value.splitlines())
        return f"(below, {lines} line{'s' if lines != 1 else ''})"
    if isinstance(value, dict):
        keys = ", ".join(sorted(value))
        return f"{{{keys}}}  (--json for the values)" if keys else "{}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _in_reading_order(row: dict[str, Any]) -> list[str]:
    """The table's columns in its order, but each ``*_nz`` right after its ``*_utc``."""
    order: list[str] = []
    for column in row:
        if column not in LOCAL:
            order.append(column)
        partner = column.removesuffix("_utc") + "_nz"
        if column.endswith("_utc") and partner in row:
            order.append(partner)
    return order


def _show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        reason = revealing.reason(args, settings.phone_region)
    except revealing.Refused as exc:
        print(f"ingest calls show: {exc}", file=sys.stderr)
        return 2
    failed: KeyUnavailable | SealError | None = None
    detail: calls.CallDetail | None = None
    with connect(settings) as conn, conn.transaction():  # the read and its record commit together
        stored = calls.get_call(conn, args.call_id)
        if stored is not None and reason is None:
            detail = stored.hidden(settings.phone_region)
        elif stored is not None:
            try:
                detail = stored.revealed_with(settings.privacy)
            except (KeyUnavailable, SealError) as exc:
                failed = exc
        client, shown = (stored.row["client_id"] if stored else None), int(detail is not None)
        if reason is None:
            audit.cli().record(
                conn, AuditAction.VIEW_CALL, AuditTargetKind.CALL, args.call_id, target_count=shown, client_id=client
            )
        else:
            about = {"unopened_key": failed.key_id} if failed else {}
            audit.cli().record(
                conn,
                AuditAction.REVEAL,
                AuditTargetKind.CALL,
                args.call_id,
                target_count=shown,
                client_id=client,
                reason=reason,
                details=about,
            )
    if stored is None:
        print(f"ingest calls show: no call {args.call_id} in user_sessions", file=sys.stderr)
        print(
            f"  events recorded for it that made no row: ingest events list --call {args.call_id}"
            " --state pending,waiting,failed",
            file=sys.stderr,
        )
        return 1
    if detail is None:
        assert failed is not None
        print(f"ingest calls show: cannot reveal call {args.call_id}: {unopened(failed)}", file=sys.stderr)
        return 1
    if args.json:
        print(to_json(detail.as_dict()))
        return 0
    _print(args.call_id, detail)
    return 0


def _print(call_id: str, detail: calls.CallDetail) -> None:
    width = max(len(column) for column in detail.row)
    revealed = "  (revealed: the originals and whole numbers)" if detail.revealed else ""
    print(f"call {call_id}{revealed}")
    for column in _in_reading_order(detail.row):
        print(f"  {column:<{width}}  {_value(column, detail.row[column], detail)}")
    for column in TEXT_BLOCKS:
        text = detail.original(column) if detail.revealed else detail.row.get(column)
        if text:
            print(f"{column} (original):" if detail.revealed else f"{column}:")
            print("\n".join(f"  {line}" for line in str(text).splitlines()))
    print(f"provenance (the source of each value; sources, best first: {', '.join(Source)}):")
    if detail.provenance:
        lines = table(("COLUMN", "SOURCE"), sorted(detail.provenance.items()))
        print("\n".join(f"  {line}" for line in lines.splitlines()))
    else:
        print("  none (a row written by hand, or before provenance was kept)")
    print(f"events ({len(detail.events)}, in arrival order):")
    if detail.events:
        rows = [(e.id, when(e.received_at), e.message_type, e.state, first_line(e.error, 100)) for e in detail.events]
        lines = table(("ID", "RECEIVED", "TYPE", "STATE", "ERROR"), rows, right=(0,))
        print("\n".join(f"  {line}" for line in lines.splitlines()))
    else:
        print("  none recorded (a row written by hand, or before call_events existed)")
    if len(detail.events) == calls.EVENTS_SHOWN:
        print(
            f"  (the newest {calls.EVENTS_SHOWN}; ingest events list --call {call_id}"
            f" --state {','.join(EventState)} --limit N for more)"
        )
    if detail.revealed:
        print("shown with the originals: this reveal is recorded in the access log, with its reason.")
    else:
        print(
            "personal data is hidden (numbers masked, transcript and summary redacted);"
            f" `ingest calls show {call_id} --reveal --reason TEXT` shows the originals (recorded in the access log),"
            " `ingest events show ID` an event's message."
        )


def _export(args: argparse.Namespace, settings: Settings) -> int:
    try:
        reason = reveal_reason(args.reason, settings.phone_region)
        numbers = erase.customer_numbers(args.customer_number, settings.phone_region, settings.require_pseudonym_key())
    except ReasonRefused as exc:
        print(f"ingest calls export: --reason: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"ingest calls export: --customer-number: {exc}", file=sys.stderr)
        return 2
    failed: KeyUnavailable | SealError | None = None
    exported: list[dict[str, Any]] = []
    with connect(settings) as conn, conn.transaction():  # the read and its record commit together
        try:
            exported = calls.export_customer(conn, numbers, settings.privacy, client=args.client)
        except (KeyUnavailable, SealError) as exc:
            failed = exc
        audit.cli().record(
            conn,
            AuditAction.EXPORT,
            AuditTargetKind.BULK,
            target_count=len(exported),
            reason=reason,
            client_id=args.client,
            details={"customer": numbers[1], **({"unopened_key": failed.key_id} if failed else {})},
        )
    if failed is not None:
        print(f"ingest calls export: cannot reveal the caller's sessions: {unopened(failed)}", file=sys.stderr)
        return 1
    print(to_json({"customer_number": numbers[0], "sessions": exported}))
    return 0


ACTIONS = {"list": _list, "show": _show, "export": _export}


def run(args: argparse.Namespace, settings: Settings) -> int:
    return ACTIONS[args.action](args, settings)
