"""The record of reconciliation runs (``reconcile_runs``, migration 0025), and what ops sees of it.

- ``record(conn, …)``: one run's row (window, counts or error); it moves the watermark when
  the run succeeded and leaves no gap.
- ``watermark(conn)``, ``trailing_window(conn, hours)``, ``due_now(conn, minutes)``: where the
  next scheduled run starts, and whether one is due.
- ``figures(conn)``: the last run, the last successful one and the calls that reached us only
  through reconciliation in the last 24 hours (``only_reconciled``), for ``ingest queue``,
  ``/ops`` and ``/metrics``.

Running a reconciliation is ``ingest.ops.reconcile``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from ingest.ops.masking import mask_phone
from ingest.settings import RECONCILE_WINDOW_MAX_HOURS
from ingest.vocabulary import ReconcileResult

Connection = psycopg.Connection[Any]

# However long ago the watermark is, a window never starts further back than this: inside the
# 14 days Vapi keeps calls on pay-as-you-go, so a full answer is never cut short by retention.
MAX_LOOKBACK = timedelta(hours=RECONCILE_WINDOW_MAX_HOURS)
ONLY_RECONCILED_HOURS = 24
ONLY_RECONCILED_SHOWN = 50


def record(
    conn: Connection,
    *,
    started: datetime,
    runner: str,
    start: datetime,
    end: datetime,
    counts: dict[str, int],
    error: str | None,
) -> None:
    """One ``reconcile_runs`` row; the watermark moves to ``end`` when the run succeeded and
    its window leaves no gap after the previous watermark."""
    conn.execute(
        """
        INSERT INTO reconcile_runs (started_at, runner, window_start, window_end, counts, error, watermark)
        SELECT %(started)s, %(runner)s, %(start)s, %(end)s, %(counts)s::jsonb, %(error)s::text,
               CASE WHEN %(error)s::text IS NULL AND (mark IS NULL OR %(start)s <= mark)
                    THEN greatest(mark, %(end)s) ELSE mark END
        FROM (SELECT max(watermark) AS mark FROM reconcile_runs) AS previous
        """,
        {
            "started": started,
            "runner": runner,
            "start": start,
            "end": end,
            "counts": orjson.dumps(counts).decode(),
            "error": error,
        },
    )


def watermark(conn: Connection) -> datetime | None:
    """The end of the time every call has been reconciled up to, without a gap."""
    row = conn.execute("SELECT max(watermark) FROM reconcile_runs").fetchone()
    return row[0] if row else None


def trailing_window(conn: Connection, hours: int, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last ``hours`` up to now, started earlier when the watermark lags behind (workers
    stopped for a while), but never more than ``MAX_LOOKBACK`` ago."""
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=hours)
    mark = watermark(conn)
    if mark is not None and mark < start:
        start = max(mark, end - MAX_LOOKBACK)
    return start, end


def due_now(conn: Connection, interval_minutes: int) -> bool:
    """Whether the last run (failed ones too: a dead API is not asked again at every sweep)
    finished more than ``interval_minutes`` ago, or never happened."""
    row = conn.execute(
        "SELECT coalesce(max(finished_at) < now() - make_interval(mins => %s), true) FROM reconcile_runs",
        (interval_minutes,),
    ).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class LastRun:
    started_at: datetime
    finished_at: datetime
    runner: str
    window_start: datetime
    window_end: datetime
    counts: dict[str, int]
    error: str | None

    def total(self, result: str) -> int:
        return int(self.counts.get(str(result), 0))

    @property
    def gaps(self) -> int:
        return self.total(ReconcileResult.MISSING) + self.total(ReconcileResult.FILLED)

    @property
    def failed(self) -> int:
        """Calls of the run that could not be mapped or applied (kept as failed api.call events)."""
        return self.total(ReconcileResult.FAILED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "runner": self.runner,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "counts": {result.value: self.total(result) for result in ReconcileResult},
            "error": self.error,
        }


def _last(conn: Connection, *, succeeded: bool) -> LastRun | None:
    where = " WHERE error IS NULL" if succeeded else ""
    row = conn.execute(
        "SELECT started_at, finished_at, runner, window_start, window_end, counts, error FROM reconcile_runs"
        f"{where} ORDER BY finished_at DESC, id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    started, finished, runner, window_start, window_end, counts, error = row
    return LastRun(started, finished, runner, window_start, window_end, dict(counts), error)


def last_run(conn: Connection) -> LastRun | None:
    return _last(conn, succeeded=False)


def last_success(conn: Connection) -> LastRun | None:
    return _last(conn, succeeded=True)


@dataclass(frozen=True)
class OnlyReconciled:
    """A call whose events in ``call_events`` are all ``api.call``: no webhook of it arrived."""

    call_id: str
    assistant_id: str | None
    phone_number_id: str | None
    number: str  # the number it came through, masked
    started_at: datetime | None
    reconciled_at: datetime


# Calls first reconciled in the last hours whose every event is an api.call (a uuid-shaped
# call_id only: other events may carry anything there).
ONLY_RECONCILED = """
SELECT s.call_id::text, s.assistant_id::text, s.phone_number_id::text, s.business_number, s.started_at_utc,
       first.received_at, count(*) OVER () AS total
FROM (
    SELECT e.call_id, min(e.received_at) AS received_at
    FROM call_events AS e
    WHERE e.message_type = 'api.call' AND e.received_at > now() - make_interval(hours => %(hours)s)
      AND e.call_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
    GROUP BY e.call_id
) AS first
JOIN user_sessions AS s ON s.call_id = first.call_id::uuid
WHERE NOT EXISTS (
    SELECT 1 FROM call_events AS o WHERE o.call_id = first.call_id AND o.message_type <> 'api.call'
)
ORDER BY first.received_at DESC
LIMIT %(limit)s
"""


def only_reconciled(
    conn: Connection, *, hours: int = ONLY_RECONCILED_HOURS, limit: int = ONLY_RECONCILED_SHOWN
) -> tuple[list[OnlyReconciled], int]:
    """The newest ``limit`` calls first reconciled in the last ``hours`` with no other event, and how many there are."""
    rows = conn.execute(ONLY_RECONCILED, {"hours": hours, "limit": limit}).fetchall()
    calls = [
        OnlyReconciled(call_id, assistant, phone, mask_phone(number), started, reconciled)
        for call_id, assistant, phone, number, started, reconciled, _ in rows
    ]
    return calls, int(rows[0][-1]) if rows else 0


@dataclass(frozen=True)
class Figures:
    """What ``ingest queue``, /metrics and /ops show: the last run, the last good one, and the
    calls that reached us only through reconciliation lately (the newest, and how many)."""

    last_run: LastRun | None
    last_success: LastRun | None
    only_reconciled: list[OnlyReconciled]
    only_reconciled_total: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_run": self.last_run and self.last_run.as_dict(),
            "last_success": self.last_success and self.last_success.as_dict(),
            "only_reconciled": self.only_reconciled_total,
        }


def figures(conn: Connection, *, limit: int = ONLY_RECONCILED_SHOWN) -> Figures:
    """Cheap enough for every scrape: the last two runs and an indexed look at recent api.call events."""
    calls, total = only_reconciled(conn, limit=limit)
    return Figures(last_run(conn), last_success(conn), calls, total)
