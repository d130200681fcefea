"""``ingest reconcile``: the calls Vapi's API has, applied, and what the webhooks missed (``ingest.ops.reconcile``)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.cli.output import since, table, to_json, when
from ingest.db import connect
from ingest.errors import ConfigError
from ingest.mapping.identity import as_uuid
from ingest.ops import reconcile
from ingest.settings import Settings
from ingest.vapi_api import VapiApiError

HINT = (
    "missing: none of the call's webhooks arrived; filled: some did, not the end-of-call report. Both point at"
    " the Server URL (or its credential) of the assistant or phone number listed: check it, and set"
    " server.backoffPlan so Vapi retries a failed delivery."
)
FAILED_HINT = (
    "ingest reconcile: {count} call(s) could not be mapped or applied; each is kept as a failed api.call event"
    " with its error: see `ingest events list --failed --type api.call`, fix the cause, then"
    " `ingest events reapply --failed --type api.call`"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "List the calls Vapi's API has (GET /call, by updatedAt) and apply each as an api.call event through the"
        " same path as webhooks; print how many rows were complete, filled (lacked the end, cost, analysis or"
        " transcript) or missing, and the calls that were not complete with the assistant and phone number they"
        " came through. Default window: the trailing RECONCILE_WINDOW_HOURS (48). A call that cannot be mapped or"
        " applied is kept as a failed api.call event with its error (the other calls go on) and counted failed."
        " Exit status 1 when the API could not be read (no row is touched then) or any call failed."
        " Needs VAPI_API_KEY."
    )
    window = parser.add_argument_group("window (calls updated in it)")
    window.add_argument("--since", type=since, metavar="TIME", help="from TIME: ISO 8601, or 10m, 24h, 2d ago")
    window.add_argument("--from", dest="start", type=since, metavar="TIME", help="the same as --since")
    window.add_argument("--until", type=since, metavar="TIME", help="up to TIME (default: now)")
    parser.add_argument("--call", metavar="ID", help="only this call (GET /call/{id})")
    parser.add_argument("--dry-run", action="store_true", help="classify only: apply nothing, record nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _window(args: argparse.Namespace, settings: Settings) -> tuple[datetime, datetime]:
    if args.since is not None and args.start is not None:
        raise ConfigError("give --since or --from, not both")
    end: datetime = args.until or datetime.now(UTC)
    start: datetime = args.since or args.start or end - timedelta(hours=settings.reconcile_window_hours)
    if start >= end:
        raise ConfigError("the window is empty: its start must come before --until")
    return start, end


def _print(result: reconcile.Result) -> None:
    counts = ", ".join(f"{result.counts[name]} {name}" for name in reconcile.RESULTS)
    scope = "" if result.start is None else f" updated {when(result.start)} to {when(result.end)}"
    verb = "would reconcile" if result.dry_run else "reconciled"
    print(f"{verb} {sum(result.counts.values())} call(s){scope}: {counts}")
    if result.failed:
        _print_failed(result)
    gaps = result.gaps
    if not gaps:
        return
    rows: list[tuple[Any, ...]] = [
        (
            item.result,
            item.call_id,
            item.assistant_id or "-",
            item.phone_number_id or "-",
            item.number or "-",
            ", ".join(item.lacked) or "-",
        )
        for item in gaps
    ]
    print(table(("RESULT", "CALL", "ASSISTANT", "PHONE NUMBER", "NUMBER", "LACKED"), rows))
    print(HINT)


def _print_failed(result: reconcile.Result) -> None:
    """The calls that failed: their id when it is a UUID, the event's state and the error (class and reason)."""
    failed = result.failed
    rows = [(item.call_id or "(not a UUID)", item.state or "-", item.error or "-") for item in failed]
    print(table(("FAILED CALL", "EVENT", "ERROR"), rows))


def _warn_failed(result: reconcile.Result) -> None:
    failed = result.failed
    if result.dry_run:
        print(
            f"ingest reconcile: {len(failed)} call(s) could not be mapped (dry run: nothing recorded)", file=sys.stderr
        )
    else:
        print(FAILED_HINT.format(count=len(failed)), file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.call and as_uuid(args.call) is None:
        raise ConfigError(f"--call takes a call id (a UUID), got {args.call[:60]!r}")
    window = None if args.call else _window(args, settings)
    api = reconcile.make_api(settings)
    if api is None:
        raise ConfigError("VAPI_API_KEY is not set: reconciliation reads Vapi's API with the org's private key")
    try:
        with connect(settings) as conn:
            if window is None:
                result: reconcile.Result | None = reconcile.run_call(
                    conn, api, settings.privacy, str(as_uuid(args.call)), dry_run=args.dry_run
                )
            else:
                start, end = window
                result = reconcile.run_locked(
                    conn, api, settings.privacy, start=start, end=end, dry_run=args.dry_run, runner="cli"
                )
    except VapiApiError as exc:
        print(f"ingest reconcile: Vapi's API could not be read, nothing was applied: {exc}", file=sys.stderr)
        return 1
    finally:
        api.close()
    if result is None:
        print("another reconciliation is under way (a worker's): try again when it is done")
        return 1
    if args.json:
        print(to_json(result.as_dict()))
    else:
        _print(result)
    if result.failed:
        _warn_failed(result)
        return 1
    if args.call and not result.calls:
        print(f"ingest reconcile: Vapi's API has no call {args.call}", file=sys.stderr)
        return 1
    return 0
