"""``ingest retention status|run``: what the retention policy has due, and running it now (``ingest.ops.retention``)."""

from __future__ import annotations

import argparse
from typing import Any

from ingest.cli.output import positive_int, table, to_json, when
from ingest.db import connect
from ingest.ops import retention
from ingest.settings import Settings

LABELS = {
    "raw_events": "raw events",
    "transcripts": "transcripts",
    "anonymised": "anonymised",
    retention.OVERDUE: "overdue (pending/waiting)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status",
        help="what is due per category and client, and the last run",
        description="Per category (raw events, transcripts, anonymisation) and client: how many items are past"
        " their window now, the oldest, and the last run with its counts. Raw events go when their raw window or"
        " their call's transcript or anonymise window passes; pending and waiting events any of these makes due"
        " are shown as overdue: they are never removed.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    run = actions.add_parser(
        "run",
        help="run the policy now (--dry-run: only count)",
        description="Remove what is due, in batches, and print the counts per category and client. Every run that"
        " changes data writes one retention_runs row and one audit row. The workers run the same every"
        " RETENTION_INTERVAL_MINUTES.",
    )
    run.add_argument("--dry-run", action="store_true", help="count what would go, change nothing, record nothing")
    run.add_argument("--batch", type=positive_int, default=retention.BATCH, help="rows per transaction (%(default)s)")
    run.add_argument("--json", action="store_true", help="machine-readable output")


def _days(value: int) -> str:
    return "off" if value == 0 else f"{value}d"


def _status(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn:
        found = retention.status(conn, settings)
    if args.json:
        print(
            to_json(
                {
                    "policy": vars(found.policy),
                    "due": [{**vars(item), "oldest": item.oldest and item.oldest.isoformat()} for item in found.due],
                    "last_run": None
                    if found.last_run is None
                    else {
                        **vars(found.last_run),
                        "started_at": found.last_run.started_at.isoformat(),
                        "finished_at": found.last_run.finished_at.isoformat(),
                    },
                }
            )
        )
        return 0
    policy = found.policy
    print(
        f"defaults: raw events {_days(policy.raw_events_days)}, transcripts {_days(policy.transcript_days)},"
        f" anonymise {_days(policy.anonymise_days)} (per-client overrides in client_subscriptions)"
    )
    last = found.last_run
    if last is None:
        print("last run: never")
    else:
        totals = ", ".join(f"{LABELS[c]} {last.total(c)}" for c in retention.CATEGORIES)
        print(f"last run: {when(last.finished_at)} by {last.runner}: {totals}; overdue {last.overdue}")
    if not found.due:
        print("nothing due")
        return 0
    rows: list[tuple[Any, ...]] = [
        (LABELS[item.category], item.client_id or "-", item.count, when(item.oldest)) for item in found.due
    ]
    print(table(("CATEGORY", "CLIENT", "DUE", "OLDEST"), rows, right=(2,)))
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn:
        report = retention.run_locked(conn, settings, dry_run=args.dry_run, batch=args.batch)
    if report is None:
        print("another retention run is under way (a worker's): try again when it is done")
        return 1
    if args.json:
        print(to_json(report.as_dict()))
        return 1 if report.skipped else 0
    verb = "would remove" if report.dry_run else "removed"
    rows: list[tuple[Any, ...]] = [
        (LABELS[category], client or "-", count)
        for category in retention.CATEGORIES
        for client, count in sorted(report.counts[category].items())
    ]
    totals = ", ".join(f"{LABELS[c]} {report.total(c)}" for c in retention.CATEGORIES)
    print(f"{verb}: {totals}")
    if rows:
        print(table(("CATEGORY", "CLIENT", "COUNT"), rows, right=(2,)))
    for item in report.overdue:
        print(
            f"overdue: {item.count} pending/waiting event(s) of client {item.client_id or '-'} past a retention"
            f" window (oldest {when(item.oldest)}), kept: see `ingest events list`"
        )
    for category in report.skipped:
        print(f"skipped {LABELS[category]}: INGEST_PSEUDONYM_KEY is not set")
    return 1 if report.skipped else 0


ACTIONS = {"status": _status, "run": _run}


def run(args: argparse.Namespace, settings: Settings) -> int:
    return ACTIONS[args.action](args, settings)
