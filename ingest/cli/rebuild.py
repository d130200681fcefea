"""``ingest rebuild``: re-derive ``user_sessions`` rows from ``call_events`` (``ingest.ops.rebuild``)."""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from ingest import audit
from ingest.cli.output import to_json
from ingest.db import connect
from ingest.ops.rebuild import NO_KEY, RebuildResult, RowKey, every_key, rebuild_row
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditTargetKind

# The sweeper builds a missing transcript once a call has been over for this many sweep
# grace periods (``worker.sweeper.Sweeper``); a rebuild does the same.
TRANSCRIPT_GRACES = 5
SHOWN_CHANGES = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--call", action="append", default=[], metavar="ID", help="the call (or session) id to rebuild; repeatable"
    )
    parser.add_argument("--all", action="store_true", help="every row of user_sessions")
    parser.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")


def _value(value: Any) -> str:
    """A value as it reads best: text quoted, numbers and times plain, the rest as JSON; shortened."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = to_json(value, indent=False)
    return text if len(text) <= 80 else text[:79] + "…"


def _report(result: RebuildResult, *, quiet: bool) -> list[str]:
    if result.outcome == "unchanged":
        return [] if quiet else [f"{result.key}: unchanged"]
    if result.outcome in {"skipped", "failed"}:
        return [f"{result.key}: {result.outcome}: {result.reason}"]
    if result.outcome == "created":
        return [f"{result.key}: created"]
    lines = [f"{result.key}: changed ({len(result.changes)} value{'s' if len(result.changes) != 1 else ''})"]
    lines += [f"    {c.column}: {_value(c.before)} → {_value(c.after)}" for c in result.changes[:SHOWN_CHANGES]]
    if len(result.changes) > SHOWN_CHANGES:
        lines.append(f"    … and {len(result.changes) - SHOWN_CHANGES} more")
    return lines


def _summary(counts: collections.Counter[str], dry_run: bool) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{counts[o]} {o}" for o in ("unchanged", "changed", "created", "skipped", "failed") if counts[o])
    verb = "would rebuild" if dry_run else "rebuilt"
    return f"{verb} {total} row{'s' if total != 1 else ''}: {parts or 'nothing to do'}" + (
        " (dry run: nothing written)" if dry_run else ""
    )


def _given(calls: list[str]) -> Iterator[RowKey]:
    """The rows named by ``--call``, as ``every_key`` lists rows."""
    for call in calls:
        yield RowKey(repr(call), call.strip() or None)


def _audit(conn: psycopg.Connection[Any], args: argparse.Namespace) -> None:
    """Record the rebuild before it starts: one entry per call given, or one for ``--all``."""
    flags = {"dry_run": args.dry_run}
    with conn.transaction():
        if args.all:
            audit.cli().record(conn, AuditAction.REBUILD, AuditTargetKind.BULK, details={**flags, "all": True})
        for call in dict.fromkeys(args.call):
            audit.cli().record(conn, AuditAction.REBUILD, *audit.call_target(call), target_count=1, details=flags)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.call) == args.all:
        print("ingest rebuild: give --call ID (one or more) or --all", file=sys.stderr)
        return 2
    counts: collections.Counter[str] = collections.Counter()
    grace = settings.sweep_grace * TRANSCRIPT_GRACES
    # --all pages through the keys on a second connection (a rebuilt row keeps its id, so
    # the pages neither skip nor repeat a row).
    with connect(settings) as conn, connect(settings) as lister:
        _audit(conn, args)
        rows = every_key(lister) if args.all else _given(args.call)
        for row in rows:
            if row.key is None:  # nothing names its events: there is nothing to rebuild it from
                result = RebuildResult(f"row {row.row_id}", "skipped", reason=NO_KEY)
            else:
                result = rebuild_row(
                    conn,
                    row.key,
                    privacy=settings.privacy,
                    retention=(settings.retention_raw_events_days, settings.retention_transcript_days),
                    transcript_grace=grace,
                    dry_run=args.dry_run,
                )
            counts[result.outcome] += 1
            for line in _report(result, quiet=args.all):
                print(line, flush=True)
    print(_summary(counts, args.dry_run))
    if counts["failed"] or (args.call and counts["skipped"]):
        return 1
    return 1 if args.dry_run and (counts["changed"] or counts["created"]) else 0
