"""``ingest queue``: what the queue and the event log hold right now, once or refreshed in place.

Per queue (``ingest.ops.backlog``): messages ready, in flight (fetched by a worker, not yet
acknowledged), delayed (retries waiting for their time), dead-lettered, and the age of
the oldest ready message. From ``call_events``: events pending, waiting and failed (the
failures grouped by their error) and events applied in the last minute. From
``reconcile_runs``: the last reconciliation with Vapi's API. A server that
cannot be reached is reported in place of its numbers (exit status 1), so ``--watch``
keeps running through an outage.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from ingest.cli.output import age, table, to_json, when
from ingest.db import connection_kwargs, require
from ingest.ops import backlog, reconcile, reconcile_runs
from ingest.ops.backlog import Backlog
from ingest.settings import Settings

DEFAULT_INTERVAL = 2.0
MAX_WATCH_INTERVAL = 86_400  # a day; larger values overflow time.sleep
CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
HOME = "\x1b[H"
ERASE_LINE = "\x1b[K"  # to the end of the line
ERASE_BELOW = "\x1b[J"  # from the cursor to the end of the screen

sleep = time.sleep  # the pause between refreshes (tests replace it)


class Probe:
    """Takes snapshots; keeps its connections between them and reopens a broken one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = backlog.redis_client(require(settings.redis_url, "REDIS_URL"))
        self.database_url = require(settings.database_url, "DATABASE_URL")
        self._conn: psycopg.Connection[Any] | None = None

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self.database_url, autocommit=True, **connection_kwargs(self.settings), **backlog.postgres_timeouts()
            )
        yield self._conn

    def snapshot(self) -> Backlog:
        return backlog.snapshot(self.redis, self._connection, self.settings.queue_namespace, [self.settings.queue_name])

    def close(self) -> None:
        self.redis.close()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()


def render(snapshot: Backlog) -> str:
    lines = [f"queues in Redis namespace {snapshot.namespace!r} at {when(snapshot.taken_at)}", ""]
    if snapshot.queues is None:
        lines.append(f"queues: unavailable ({snapshot.errors.get('redis', 'unknown error')})")
    else:
        rows = [(q.name, q.ready, q.in_flight, q.delayed, q.dead, age(q.oldest_age_s)) for q in snapshot.queues]
        lines.append(table(("QUEUE", "READY", "IN FLIGHT", "DELAYED", "DEAD", "OLDEST"), rows, right=(1, 2, 3, 4, 5)))
    lines.append("")
    events = snapshot.events
    if events is None:
        lines.append(f"events: unavailable ({snapshot.errors.get('postgres', 'unknown error')})")
        return "\n".join(lines)
    lines.append(
        f"events: {events.pending} pending, {events.waiting} waiting, {events.failed} failed; "
        f"{events.applied_last_minute} applied in the last minute"
    )
    if events.failed_by_error:
        lines += ["", table(("FAILED", "ERROR"), [(g.count, g.error) for g in events.failed_by_error], right=(0,))]
        shown = sum(g.count for g in events.failed_by_error)
        if shown < events.failed:
            lines.append(f"{events.failed - shown:>6}  (other errors)")
    if snapshot.reconciliation is not None:
        lines += ["", *reconciliation_lines(snapshot.reconciliation)]
    return "\n".join(lines)


def reconciliation_lines(figures: reconcile_runs.Figures) -> list[str]:
    """The last reconciliation with Vapi's API, and the calls that reached us only through it."""
    last = figures.last_run
    if last is None:
        return ["reconciliation: never run (needs VAPI_API_KEY; `ingest reconcile` on demand)"]
    counts = ", ".join(f"{last.total(name)} {name}" for name in reconcile.RESULTS)
    if last.error is None:
        lines = [f"reconciliation: last run {when(last.finished_at)} by {last.runner}: {counts}"]
    else:
        lines = [f"reconciliation: last run {when(last.finished_at)} by {last.runner} FAILED: {last.error}"]
        good = figures.last_success
        lines.append(f"  last successful run: {when(good.finished_at) if good else 'never'}")
    if last.failed:
        lines.append(
            f"  {last.failed} call(s) of the last run could not be mapped or applied: kept as failed api.call events"
            " (`ingest events list --failed --type api.call`; `ingest events reapply` once fixed)"
        )
    if figures.only_reconciled_total:
        lines.append(
            f"  {figures.only_reconciled_total} call(s) in the last {reconcile_runs.ONLY_RECONCILED_HOURS} h"
            " reached us only"
            " through reconciliation: check the Server URL and credential of their assistant or phone number"
        )
    return lines


def watch(probe: Probe, interval: float, *, as_json: bool) -> int:
    """Redraw every ``interval`` seconds until Ctrl-C (exit status 0)."""
    out = sys.stdout
    try:
        if not as_json:
            out.write(CLEAR)
        while True:
            snapshot = probe.snapshot()
            if as_json:  # one JSON document per line, for piping
                out.write(to_json(snapshot.as_dict(), indent=False) + "\n")
            else:
                frame = render(snapshot) + f"\n\nevery {interval:g}s, Ctrl-C to stop"
                out.write(HOME + "".join(line + ERASE_LINE + "\n" for line in frame.split("\n")) + ERASE_BELOW)
            out.flush()
            sleep(interval)
    except KeyboardInterrupt:
        if not as_json:
            out.write("\n")
        return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"refresh in place every SECONDS (default {DEFAULT_INTERVAL:g}) until Ctrl-C",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.watch is not None and not 0 < args.watch <= MAX_WATCH_INTERVAL:  # also refuses nan and inf
        print(
            f"ingest queue: --watch needs a positive number of seconds, at most {MAX_WATCH_INTERVAL}", file=sys.stderr
        )
        return 2
    probe = Probe(settings)
    try:
        if args.watch is not None:
            return watch(probe, args.watch, as_json=args.json)
        snapshot = probe.snapshot()
    finally:
        probe.close()
    print(to_json(snapshot.as_dict()) if args.json else render(snapshot))
    return 1 if snapshot.errors else 0
