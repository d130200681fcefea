"""``ingest anomalies [scan | ack ID --reason TEXT]``: unusual call patterns (``ingest.ops.anomalies``).

Without an action it lists what the detectors found (``--since``, default the last 24 h;
``--open`` for the unacknowledged only). ``scan`` runs every detector now, over windows
ending now, as the workers do every ``ANOMALY_INTERVAL_MINUTES``, and refreshes the set of
flagged callers. ``ack`` acknowledges one anomaly, with a reason, in the access log; a
flagged caller stops being refused at once.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from ingest import audit
from ingest.cli.output import positive_int, since, table, to_json, when
from ingest.db import connect
from ingest.ops import anomalies, flagged_callers
from ingest.settings import Settings

DEFAULT_SINCE = timedelta(hours=24)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=since, metavar="TIME", help="detected at or after TIME: ISO 8601, or 10m, 2h, 7d ago (24h)"
    )
    parser.add_argument("--open", action="store_true", help="only those not yet acknowledged")
    parser.add_argument("--limit", type=positive_int, default=200, help="at most this many (%(default)s)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    scan = actions.add_parser(
        "scan",
        help="run every detector now",
        description="Run every detector over the windows that end now, as the workers do every"
        " ANOMALY_INTERVAL_MINUTES; print what each found. One anomaly per pattern: a rescan updates it.",
    )
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    ack = actions.add_parser(
        "ack",
        help="acknowledge one anomaly, with a reason",
        description="Mark anomaly ID as seen, recorded with your reason in the access log (ingest audit list)."
        " A caller it flagged is no longer refused under BLOCK_FLAGGED_CALLERS.",
    )
    ack.add_argument("id", type=positive_int, metavar="ID")
    ack.add_argument("--reason", required=True, help="why: recorded in the access log")


def _row(item: anomalies.Anomaly) -> tuple[Any, ...]:
    baseline = "-" if item.baseline is None else f"{item.baseline:g}"
    score = "-" if item.score is None else f"{item.score:.1f}"
    window = f"{when(item.window_start)} – {item.window_end:%H:%M}"
    state = "open" if item.open else f"acked by {item.acknowledged_by}"
    subject = f"{item.subject_kind}:{item.subject}"
    return (item.id, item.kind, item.client_id or "-", subject, window, f"{item.observed:g}", baseline, score, state)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    start = args.since or datetime.now(UTC) - DEFAULT_SINCE
    with connect(settings) as conn:
        found = anomalies.list_anomalies(conn, since=start, open_only=args.open, limit=args.limit)
    if args.json:
        print(to_json([item.as_dict() for item in found]))
        return 0
    if not found:
        print(f"no {'open ' if args.open else ''}anomalies detected since {when(start)}")
        return 0
    headers = ("ID", "KIND", "CLIENT", "SUBJECT", "WINDOW", "OBSERVED", "BASELINE", "SCORE", "STATE")
    print(table(headers, [_row(item) for item in found], right=(0, 5, 6, 7)))
    return 0


def _scan(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn:
        result = anomalies.scan_locked(conn, settings, runner="cli")
        if result is None:
            print("another scan is under way (a worker's): try again when it is done")
            return 1
        flagged = flagged_callers.refresh(conn, settings)
    if args.json:
        fields = {"at": result.at.isoformat(), "found": result.found, "new": result.new, "updated": result.updated}
        print(to_json({**fields, "skipped": list(result.skipped), "flagged_callers": flagged}))
        return 0
    found = ", ".join(f"{kind} {count}" for kind, count in result.found.items() if count) or "nothing"
    print(f"scanned at {when(result.at)}: {found}; {result.new} new, {result.updated} updated")
    for kind in result.skipped:
        print(f"skipped {kind}: INGEST_PSEUDONYM_KEY is not set (callers are known by pseudonym only)")
    if settings.anomalies.block_flagged_callers:
        print(f"flagged callers refused (BLOCK_FLAGGED_CALLERS): {flagged}")
    return 0


def _ack(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn:
        try:
            item = anomalies.acknowledge(conn, args.id, reason=args.reason, auditor=audit.cli())
        except anomalies.AnomalyNotFound:
            print(f"ingest anomalies: no anomaly {args.id}")
            return 1
        except anomalies.AlreadyAcknowledged as exc:
            print(f"ingest anomalies: {exc}")
            return 1
        except ValueError as exc:
            print(f"ingest anomalies: {exc}")
            return 2
        print(f"acknowledged anomaly {item.id} ({item.kind}, {item.subject_kind} {item.subject})")
        try:
            flagged_callers.refresh(conn, settings)
        except redis.RedisError as exc:
            print(f"ingest anomalies: flagged callers not refreshed ({type(exc).__name__}): the next scan will")
            return 1
    return 0


ACTIONS = {None: _list, "scan": _scan, "ack": _ack}


def run(args: argparse.Namespace, settings: Settings) -> int:
    return ACTIONS[args.action](args, settings)
