"""The steps of a retention run (``ingest.ops.retention.run``), each in bounded batches.

- ``remove_raw_events``: whole expired monthly partitions first (``call_events`` is
  partitioned, 0022), then batches by id; then the dedupe keys and the call envelopes no
  event refers to any more.
- ``remove_transcripts``: transcripts, summaries, analysis, recordings of due sessions.
- ``anonymise``: callers' numbers replaced by their pseudonyms, personal metadata removed.

Each batch is a transaction of its own under ``LOCK_TIMEOUT`` that skips rows a worker holds
(they go at the next run); each step counts what it did in the run's ``Report``, per client.
A dry run does none of them. The SQL is ``sql/functions/85_retention.sql``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from ingest import queries
from ingest.pseudonym import pseudonym

if TYPE_CHECKING:
    from ingest.ops.retention import Policy, Report

Connection = psycopg.Connection[Any]
log = logging.getLogger("ingest.ops.retention")

NO_UUID = uuid.UUID(int=0)
LOCK_TIMEOUT = "2s"  # a batch statement never waits longer than this on a lock


def client_label(client_id: str | None) -> str:
    """How a report counts a client: its id, or "" for events and rows without one."""
    return client_id or ""


def _batches(conn: Connection, query: str, params: dict[str, Any], after: Any, batch: int) -> Iterator[list[Any]]:
    """Rows of ``query`` page after page (``after``: the last id of the previous page), each
    page its own transaction under ``LOCK_TIMEOUT``; stops at a short page."""
    while True:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            rows = conn.execute(query, {**params, "after": after, "limit": batch}).fetchall()
        if rows:
            yield rows
            after = max(row[0] for row in rows)
        if len(rows) < batch:
            return


def _function_exists(conn: Connection, signature: str) -> bool:
    row = conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", (signature,)).fetchone()
    return bool(row and row[0])


def _drop_expired_partitions(conn: Connection, policy: Policy, now: datetime, report: Report) -> None:
    """Whole monthly partitions older than every client's raw cutoff, where ``call_events`` is
    partitioned (``ingest_drop_call_event_partition`` refuses one holding unfinished events)."""
    windows = conn.execute(
        "SELECT raw_days FROM ingest_retention_policies(%s, %s, %s)",
        (policy.raw_events_days, policy.transcript_days, policy.anonymise_days),
    ).fetchall()
    if not windows or any(days is None for (days,) in windows):
        return  # some client keeps its raw events: no partition is due as a whole
    cutoff = conn.execute("SELECT %s::timestamptz - make_interval(days => %s)", (now, max(d for (d,) in windows)))
    oldest_cutoff = cutoff.fetchone()[0]  # type: ignore[index]
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        partitions = cur.execute("SELECT * FROM ingest_call_event_partitions()").fetchall()
    for partition in partitions:
        name, upper = partition.get("name"), partition.get("month_end")
        if not isinstance(name, str) or not isinstance(upper, datetime) or upper > oldest_cutoff:
            continue
        if partition.get("unfinished"):  # pending or waiting events: batch-deleted around them
            continue
        counts = conn.execute(
            sql.SQL(
                "SELECT r.client_id, count(*) FROM {} AS e"
                " JOIN ingest_retention_events(%s, %s, %s, %s) AS r ON r.id = e.id GROUP BY 1"
            ).format(sql.Identifier(name)),
            (policy.raw_events_days, policy.transcript_days, policy.anonymise_days, now),
        ).fetchall()
        try:
            with conn.transaction():
                conn.execute("SELECT ingest_drop_call_event_partition(%s)", (name,))
        except psycopg.Error as exc:  # it holds pending or waiting events: batch-deleted below
            log.info("retention kept a partition", extra={"partition": name, "error": type(exc).__name__})
            continue
        report.partitions_dropped.append(name)
        for client_id, count in counts:
            report.counts["raw_events"][client_label(client_id)] += int(count)


def _forget_event_keys(conn: Connection, policy: Policy, now: datetime, batch: int) -> None:
    """The dedupe keys of removed events, where they live apart from ``call_events``."""
    if not _function_exists(conn, "ingest_forget_call_event_keys(timestamptz, integer)"):
        return
    days = [
        d
        for (d,) in conn.execute(
            "SELECT raw_days FROM ingest_retention_policies(%s, %s, %s)",
            (policy.raw_events_days, policy.transcript_days, policy.anonymise_days),
        ).fetchall()
        if d is not None
    ]
    if not days:
        return
    before = conn.execute("SELECT %s::timestamptz - make_interval(days => %s)", (now, max(days))).fetchone()[0]  # type: ignore[index]
    while True:
        row = conn.execute("SELECT ingest_forget_call_event_keys(%s, %s)", (before, batch)).fetchone()
        if not row or not isinstance(row[0], int) or row[0] < batch:
            return


def remove_raw_events(conn: Connection, policy: Policy, now: datetime, report: Report, batch: int) -> None:
    """Every raw event due: whole expired partitions first where ``call_events`` is partitioned,
    then batches by id; the one way retention deletes from ``call_events``."""
    if report.dry_run:
        return
    if _function_exists(conn, "ingest_drop_call_event_partition(text)") and _function_exists(
        conn, "ingest_call_event_partitions()"
    ):
        _drop_expired_partitions(conn, policy, now, report)
    query = (
        "SELECT id, client_id FROM ingest_retention_remove_raw_events("
        "%(raw)s, %(transcript)s, %(anonymise)s, %(now)s, %(after)s, %(limit)s)"
    )
    params = {
        "raw": policy.raw_events_days,
        "transcript": policy.transcript_days,
        "anonymise": policy.anonymise_days,
        "now": now,
    }
    for rows in _batches(conn, query, params, 0, batch):
        report.counts["raw_events"].update(client_label(client_id) for _, client_id in rows)
    _forget_event_keys(conn, policy, now, batch)
    _forget_call_envelopes(conn, now, batch)


def _forget_call_envelopes(conn: Connection, now: datetime, batch: int) -> None:
    """The per-call envelopes no event refers to any more (their events removed above)."""
    if not _function_exists(conn, "ingest_forget_call_envelopes(timestamptz, integer)"):
        return
    while True:
        row = conn.execute(queries.FORGET_CALL_ENVELOPES, {"before": now, "batch": batch}).fetchone()
        if not row or not isinstance(row[0], int) or row[0] < min(batch, 500):
            return


def remove_transcripts(conn: Connection, policy: Policy, now: datetime, report: Report, batch: int) -> None:
    if report.dry_run:
        return
    query = "SELECT id, client_id FROM ingest_retention_remove_transcripts(%(days)s, %(now)s, %(after)s, %(limit)s)"
    for rows in _batches(conn, query, {"days": policy.transcript_days, "now": now}, NO_UUID, batch):
        report.counts["transcripts"].update(client_label(client_id) for _, client_id in rows)


def anonymise(conn: Connection, policy: Policy, now: datetime, report: Report, batch: int, key: bytes) -> None:
    if report.dry_run:
        return
    after: uuid.UUID = NO_UUID
    while True:
        rows = conn.execute(
            "SELECT id, client_id, customer_number FROM ingest_retention_anonymise_due(%s, %s, %s, %s)",
            (policy.anonymise_days, now, after, batch),
        ).fetchall()
        if not rows:
            return
        ids = [row[0] for row in rows]
        numbers = [row[2] for row in rows]
        pseudonyms = [pseudonym(number, key) if number is not None else None for number in numbers]
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            changed = conn.execute(
                "SELECT id, client_id FROM ingest_retention_anonymise(%s, %s, %s, %s)", (ids, numbers, pseudonyms, now)
            ).fetchall()
        report.counts["anonymised"].update(client_label(client_id) for _, client_id in changed)
        if len(rows) < batch:
            return
        after = max(ids)
