"""Retention: raw events, transcripts and callers' numbers kept only as long as the policy says.

Three steps, each with a default window (``Settings.retention_*_days``, 0 = forever) that a
client's ``client_subscriptions.retention_*_days`` overrides (NULL = the default, 0 = forever):

- ``raw_events``: finished ``call_events`` (applied, ignored, failed) received more than the
  raw window ago are deleted, and so are those of a call whose transcript or anonymise window
  has passed (its transcript and its caller's number must be gone everywhere, sealed bodies
  included), with the call's envelopes no event refers to any more. Pending and waiting
  events are never removed: those any of these windows makes due are counted as ``overdue``
  instead.
- ``transcripts``: transcript, summary, their sealed originals, ``metadata.analysis`` and
  ``metadata.recordings``, and everything in ``server_messages`` but the timeline's known
  fields. Sentiment, outcome, keywords, durations and cost stay.
- ``anonymised``: ``customer_number`` becomes ``pseudonym(number, INGEST_PSEUDONYM_KEY)``, and
  ``metadata`` keeps only the keys ``ingest_retention_anonymous_keys()`` lists.

Windows run from a session's end, else its start, else when its row was made; for a raw
event, from when it was received. The SQL is ``sql/functions/85_retention.sql``; the steps
themselves are ``ingest.ops.retention_steps``.

- ``status(conn, settings)`` → ``Status``: what is due now, per category and client, and
  the last run.
- ``run(conn, settings, *, dry_run=False, runner=…, auditor=None)`` → ``Report``: every
  step in batches of ``batch`` rows, each its own short transaction that skips rows a worker
  holds (they go at the next run). Unless a dry run, one ``retention_runs`` row and one
  audit row (``retention_run``) record the counts, in one transaction at the end.
- ``run_locked(…)``: ``run`` under a session advisory lock, or None when another runner
  (on any host) holds it: what the workers call every ``RETENTION_INTERVAL_MINUTES``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from ingest import audit
from ingest.audit import Actor, Auditor
from ingest.db import session_lock
from ingest.ops import retention_steps as steps
from ingest.ops.retention_steps import client_label
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditActorKind, AuditSurface, AuditTargetKind

Connection = psycopg.Connection[Any]
log = logging.getLogger(__name__)

CATEGORIES = ("raw_events", "transcripts", "anonymised")
OVERDUE = "overdue"
BATCH = 1000
LOCK_KEY = 0x5641_5052  # "VAPR": one retention runner across every host


@dataclass(frozen=True)
class Policy:
    """The default windows in days, 0 = kept forever."""

    raw_events_days: int
    transcript_days: int
    anonymise_days: int

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.retention_raw_events_days, settings.retention_transcript_days, settings.retention_anonymise_days
        )


@dataclass(frozen=True)
class Due:
    category: str  # raw_events, transcripts, anonymised, overdue
    client_id: str | None
    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class LastRun:
    started_at: datetime
    finished_at: datetime
    runner: str
    counts: dict[str, dict[str, int]]
    overdue: int
    skipped: list[str]

    def total(self, category: str) -> int:
        return sum(self.counts.get(category, {}).values())


@dataclass(frozen=True)
class Status:
    policy: Policy
    due: list[Due]
    last_run: LastRun | None

    def total(self, category: str) -> int:
        return sum(item.count for item in self.due if item.category == category)


@dataclass
class Report:
    """What a run removed (or, dry, would remove), per category and client (``""``: no client)."""

    started_at: datetime
    dry_run: bool
    counts: dict[str, Counter[str]] = field(default_factory=lambda: {category: Counter() for category in CATEGORIES})
    overdue: list[Due] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)

    def total(self, category: str) -> int:
        return sum(self.counts[category].values())

    @property
    def overdue_total(self) -> int:
        return sum(item.count for item in self.overdue)

    def counts_dict(self) -> dict[str, dict[str, int]]:
        return {category: dict(sorted(self.counts[category].items())) for category in CATEGORIES}

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "dry_run": self.dry_run,
            "counts": self.counts_dict(),
            "totals": {category: self.total(category) for category in CATEGORIES},
            "overdue": [
                {"client_id": item.client_id, "count": item.count, "oldest": item.oldest and item.oldest.isoformat()}
                for item in self.overdue
            ],
            "skipped": self.skipped,
            "partitions_dropped": self.partitions_dropped,
        }


def due(conn: Connection, policy: Policy, now: datetime) -> list[Due]:
    rows = conn.execute(
        "SELECT category, client_id, due, oldest FROM ingest_retention_due_counts(%s, %s, %s, %s)"
        " ORDER BY category, client_id NULLS FIRST",
        (policy.raw_events_days, policy.transcript_days, policy.anonymise_days, now),
    ).fetchall()
    return [Due(category, client_id, int(count), oldest) for category, client_id, count, oldest in rows]


def last_run(conn: Connection) -> LastRun | None:
    row = conn.execute(
        "SELECT started_at, finished_at, runner, counts, overdue, skipped FROM retention_runs"
        " ORDER BY finished_at DESC, id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    started, finished, runner, counts, overdue, skipped = row
    return LastRun(started, finished, runner, counts, int(overdue), list(skipped))


@dataclass(frozen=True)
class Figures:
    """What /metrics and /ops show: the last run, and the unfinished events a due window would
    remove were they final (past their raw window, or their call past its transcript or
    anonymise window)."""

    last_run: LastRun | None
    overdue: int


def figures(
    conn: Connection,
    raw_events_days: int,
    transcript_days: int,
    anonymise_days: int,
    *,
    now: datetime | None = None,
) -> Figures:
    """Cheap enough for every scrape: reads ``retention_runs`` and only the unfinished events.

    The windows are the default ones, as in ``Policy`` (0 = forever); a client's own
    overrides apply on top."""
    row = conn.execute(
        "SELECT coalesce(sum(overdue), 0) FROM ingest_retention_overdue(%s, %s, %s, %s)",
        (raw_events_days, transcript_days, anonymise_days, now or datetime.now(UTC)),
    ).fetchone()
    return Figures(last_run(conn), int(row[0]) if row else 0)


def status(conn: Connection, settings: Settings, *, now: datetime | None = None) -> Status:
    policy = Policy.of(settings)
    return Status(policy, due(conn, policy, now or datetime.now(UTC)), last_run(conn))


def _record(conn: Connection, report: Report, runner: str, auditor: Auditor) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO retention_runs (started_at, runner, counts, overdue, skipped)"
            " VALUES (%s, %s, %s::jsonb, %s, %s)",
            (
                report.started_at,
                runner,
                orjson.dumps(report.counts_dict()).decode(),
                report.overdue_total,
                report.skipped,
            ),
        )
        auditor.record(
            conn,
            AuditAction.RETENTION_RUN,
            AuditTargetKind.BULK,
            target_count=sum(report.total(category) for category in CATEGORIES),
            details={
                "totals": {category: report.total(category) for category in CATEGORIES},
                "clients": report.counts_dict(),
                "overdue": report.overdue_total,
                "skipped": report.skipped,
            },
        )


def worker_auditor() -> Auditor:
    """The workers' auditor: surface ``worker``, this process by host and pid."""
    return Auditor(AuditSurface.WORKER, Actor(f"{socket.gethostname()[:150]}:{os.getpid()}", AuditActorKind.SERVICE))


def run(
    conn: Connection,
    settings: Settings,
    *,
    dry_run: bool = False,
    runner: str = "cli",
    auditor: Auditor | None = None,
    batch: int = BATCH,
    now: datetime | None = None,
) -> Report:
    """Every step of the policy (``conn`` in autocommit: each batch commits on its own).

    A dry run changes nothing and records nothing: its counts are what is due now.
    Anonymising needs ``INGEST_PSEUDONYM_KEY``; without it that step is skipped (and said so).
    """
    if not conn.autocommit:
        raise ValueError("retention runs in autocommit mode: each batch is a transaction of its own")
    now = now or datetime.now(UTC)
    policy = Policy.of(settings)
    report = Report(started_at=now, dry_run=dry_run)
    pending = due(conn, policy, now)
    report.overdue = [item for item in pending if item.category == OVERDUE]
    key = settings.pseudonym_key
    anonymise_due = any(item.category == "anonymised" for item in pending)
    if key is None and anonymise_due:
        report.skipped.append("anonymised")
    if dry_run:
        for item in pending:
            if item.category in CATEGORIES and item.category not in report.skipped:
                report.counts[item.category][client_label(item.client_id)] += item.count
        return report
    steps.remove_raw_events(conn, policy, now, report, batch)
    steps.remove_transcripts(conn, policy, now, report, batch)
    if key is not None:
        steps.anonymise(conn, policy, now, report, batch, key)
    _record(conn, report, runner, auditor or audit.cli())
    return report


def run_locked(
    conn: Connection, settings: Settings, *, interval_minutes: int | None = None, **kwargs: Any
) -> Report | None:
    """``run`` while holding the retention lock; None when another runner holds it, or (with
    ``interval_minutes``) when a run finished less than that long ago, checked under the lock."""
    with session_lock(conn, LOCK_KEY) as held:
        if not held or (interval_minutes is not None and not due_now(conn, interval_minutes)):
            return None
        return run(conn, settings, **kwargs)


def due_now(conn: Connection, interval_minutes: int) -> bool:
    """Whether the last run finished more than ``interval_minutes`` ago (or never happened)."""
    row = conn.execute(
        "SELECT coalesce(max(finished_at) < now() - make_interval(mins => %s), true) FROM retention_runs",
        (interval_minutes,),
    ).fetchone()
    return bool(row and row[0])


__all__ = [
    "CATEGORIES",
    "Due",
    "Figures",
    "LastRun",
    "Policy",
    "Report",
    "Status",
    "due",
    "due_now",
    "figures",
    "last_run",
    "run",
    "run_locked",
    "status",
    "worker_auditor",
]
