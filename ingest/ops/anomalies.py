"""Abuse monitoring: unusual call patterns found, kept once per window, and acknowledged.

A scan runs every detector (``ingest.ops.detectors``) over the trailing window
[T − ``ANOMALY_WINDOW_MINUTES``, T) and records each detection with ``ingest_record_anomaly``
(``sql/functions/87_anomalies.sql``): a detection of the same kind, client and subject whose
window overlaps an existing row's extends that row, acknowledged or not; otherwise it is a new
``call_anomalies`` row. Rerunning a scan, or scanning every 15 minutes through one burst,
leaves one row. Each scan is recorded in ``anomaly_scans``.

- ``scan(conn, settings, *, now=None, runner="cli")`` → ``ScanResult``: every detector at
  ``now`` (None: the database's clock). The repeat-caller and outbound detectors need
  ``INGEST_PSEUDONYM_KEY``; without it they are skipped, and the result says so.
- ``scan_locked(conn, settings, *, runner)``: ``scan`` under a session advisory lock, or None
  when another runner (on any host) holds it; ``due_now(conn, minutes)``: the workers' schedule.
- ``list_anomalies``, ``get``, ``open_counts``, ``last_scan``: what the CLI, /ops and /metrics show.
- ``acknowledge(conn, id, reason=…, auditor=…)``: an operator has looked; audited, with the reason.
- ``flagged_callers(conn, block_hours)``: pseudonyms with an open repeat-caller anomaly, for
  ``BLOCK_FLAGGED_CALLERS``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from ingest import queries
from ingest.audit import Auditor
from ingest.db import session_lock
from ingest.ops import detectors
from ingest.ops.detectors import Detection, Window
from ingest.settings import Settings
from ingest.vocabulary import AnomalyKind, AuditAction, AuditTargetKind

Connection = psycopg.Connection[Any]
LOCK_KEY = 0x5641_5041  # "VAPA": one anomaly scanner across every host
KEYED = (AnomalyKind.REPEAT_CALLER.value, AnomalyKind.OUTBOUND_DESTINATION.value)  # need the pseudonym key


class AnomalyNotFound(LookupError):
    """No anomaly has that id."""


class AlreadyAcknowledged(ValueError):
    """The anomaly was acknowledged before: by whom and why stay as they were."""


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Anomaly:
    """One row of ``call_anomalies``."""

    id: int
    kind: str
    client_id: str | None
    subject_kind: str
    subject: str
    window_start: datetime
    window_end: datetime
    observed: float
    baseline: float | None
    score: float | None
    details: dict[str, Any]
    detected_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_reason: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Anomaly:
        """From a ``call_anomalies`` row read with ``dict_row`` (numerics as floats)."""
        numbers = {name: _number(row[name]) for name in ("observed", "baseline", "score")}
        return cls(**{**row, **numbers})

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: times as ISO 8601."""
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class ScanResult:
    """What one scan found: detections per kind (every kind, 0 included), rows it created and
    extended, detectors skipped; ``at`` is the moment scanned, where every window ends."""

    at: datetime
    found: dict[str, int]
    new: int
    updated: int
    skipped: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(self.found.values())


def _detect(conn: Connection, settings: Settings, window: Window) -> tuple[list[Detection], list[str]]:
    limits = settings.anomalies
    found = [
        *detectors.baselines(conn, window, limits),
        *detectors.short_calls(conn, window, limits),
        *detectors.vapi_signals(conn, window),
    ]
    key = settings.pseudonym_key
    if key is None:
        return found, list(KEYED)
    found += detectors.repeat_callers(conn, window, limits, key)
    found += detectors.outbound_destinations(conn, window, limits, key, settings.phone_region)
    return found, []


def _database_now(conn: Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    moment = row[0] if row else None
    if not isinstance(moment, datetime):
        raise TypeError(f"now() gave {moment!r}")
    return moment


def scan(conn: Connection, settings: Settings, *, now: datetime | None = None, runner: str = "cli") -> ScanResult:
    """Every detector over the window ending at ``now`` (None: the database's ``now()``), recorded
    with the scan's row in one transaction."""
    now = now or _database_now(conn)
    window = Window(now - timedelta(minutes=settings.anomalies.window_minutes), now, settings.local_timezone)
    found, skipped = _detect(conn, settings, window)
    counts = Counter({kind.value: 0 for kind in AnomalyKind})
    created = 0
    with conn.transaction():
        for detection in found:
            counts[detection.kind.value] += 1
            created += _record(conn, window, detection)
        conn.execute(
            queries.RECORD_ANOMALY_SCAN,
            {
                "started_at": now,
                "runner": runner,
                "found": orjson.dumps(dict(counts)).decode(),
                "new": created,
                "updated": len(found) - created,
                "skipped": skipped,
            },
        )
    return ScanResult(now, dict(counts), created, len(found) - created, tuple(skipped))


def _record(conn: Connection, window: Window, detection: Detection) -> bool:
    row = conn.execute(
        queries.RECORD_ANOMALY,
        {
            "kind": detection.kind.value,
            "client_id": detection.client_id,
            "subject_kind": detection.subject_kind.value,
            "subject": detection.subject,
            "window_start": window.start,
            "window_end": window.end,
            "observed": detection.observed,
            "baseline": detection.baseline,
            "score": detection.score,
            "details": orjson.dumps(detection.details).decode(),
        },
    ).fetchone()
    return bool(row and row[1])


def scan_locked(conn: Connection, settings: Settings, *, runner: str) -> ScanResult | None:
    """``scan`` while holding the anomaly lock; None when another runner holds it."""
    with session_lock(conn, LOCK_KEY) as held:
        return scan(conn, settings, runner=runner) if held else None


def due_now(conn: Connection, interval_minutes: int) -> bool:
    """Whether the last scan finished more than ``interval_minutes`` ago (or never happened)."""
    row = conn.execute(queries.ANOMALY_SCAN_DUE, {"minutes": interval_minutes}).fetchone()
    return bool(row and row[0])


def last_scan(conn: Connection) -> dict[str, Any] | None:
    """The last scan: started_at (the moment scanned), finished_at, runner, found, new, updated, skipped."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.LAST_ANOMALY_SCAN).fetchone()
    return None if row is None else {**row, "skipped": list(row["skipped"])}


def list_anomalies(
    conn: Connection, *, since: datetime | None = None, open_only: bool = False, limit: int = 200
) -> list[Anomaly]:
    """Newest first: those seen since ``since``, open ones only with ``open_only``."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(queries.LIST_ANOMALIES, {"since": since, "open_only": open_only, "limit": limit})
        return [Anomaly.of(row) for row in rows.fetchall()]


def get(conn: Connection, anomaly_id: int) -> Anomaly | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.GET_ANOMALY, {"id": anomaly_id}).fetchone()
    return None if row is None else Anomaly.of(row)


def acknowledge(conn: Connection, anomaly_id: int, *, reason: str, auditor: Auditor) -> Anomaly:
    """Mark it seen by the auditor's actor, with the reason, and write the audit row, in one transaction."""
    reason = reason.strip()
    if not reason:
        raise ValueError("an acknowledgement needs a reason")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.LOCK_ANOMALY, {"id": anomaly_id}).fetchone()
        if row is None:
            raise AnomalyNotFound(f"no anomaly {anomaly_id}")
        if row["acknowledged_at"] is not None:
            raise AlreadyAcknowledged(f"anomaly {anomaly_id} was acknowledged by {row['acknowledged_by']}")
        acked = cur.execute(
            queries.ACKNOWLEDGE_ANOMALY, {"id": anomaly_id, "by": auditor.actor.name, "reason": reason}
        ).fetchone()
        assert acked is not None  # locked and open above
        auditor.record(
            conn,
            AuditAction.ANOMALY_ACK,
            AuditTargetKind.ANOMALY,
            str(anomaly_id),
            reason=reason,
            client_id=acked["client_id"],
            details={"kind": acked["kind"], "subject_kind": acked["subject_kind"]},
        )
    return Anomaly.of(acked)


def open_counts(conn: Connection) -> dict[str, int]:
    """Open anomalies per kind, every kind present (0 when none)."""
    counts = dict.fromkeys((kind.value for kind in AnomalyKind), 0)
    counts.update({kind: int(n) for kind, n in conn.execute(queries.OPEN_ANOMALY_COUNTS).fetchall()})
    return counts


def flagged_callers(conn: Connection, block_hours: int) -> dict[str, int]:
    """Pseudonym → anomaly id of each caller with an open repeat-caller anomaly seen in the last ``block_hours``."""
    rows = conn.execute(queries.FLAGGED_CALLERS, {"hours": block_hours}).fetchall()
    return {subject: int(anomaly_id) for subject, anomaly_id in rows}


__all__ = [
    "LOCK_KEY",
    "AlreadyAcknowledged",
    "Anomaly",
    "AnomalyNotFound",
    "ScanResult",
    "acknowledge",
    "due_now",
    "flagged_callers",
    "get",
    "last_scan",
    "list_anomalies",
    "open_counts",
    "scan",
    "scan_locked",
]
