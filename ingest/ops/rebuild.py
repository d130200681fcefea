"""Re-deriving ``user_sessions`` rows from ``call_events`` alone (``ingest rebuild``).

For one row, in one transaction: lock it (and the key ``ingest_apply_patch`` locks before
creating a row), delete it, and apply every recorded event of its call — or of its session,
for a session row — again, in the order they were recorded, through the worker's handlers,
merge and follow-ups (waiting events, a transcript rebuilt from final transcripts). Events
that could not join the row when first applied (it did not exist yet) are applied once
more at the end. A call that ended more than ``transcript_grace`` seconds ago with no
transcript gets one from its final transcripts, as the sweeper would have given it.

Events taken: ``applied``, ``pending`` and ``waiting`` — everything that is, or is about to
be, part of the row. Not ``failed`` ones (the live row does not hold them either:
re-apply them with ``ingest events reapply`` first) nor ``ignored`` ones (types we do not
map, and events an operator discarded).

The new row then takes back the old row's ``id`` and ``created_at``, so it is the same
row to everything that points at it. Usage stays counted once: deleting the row removes
its usage ledger entry (its contribution is subtracted), inserting it adds the rebuilt
contribution, and moving the id back changes nothing the ledger counts. An unchanged row
therefore leaves ``client_monthly_usage`` exactly as it was; a changed one moves it by the
difference, as any correction does. What comes from tables other than ``call_events`` is
derived as a write would derive it today: routing (``client_id`` from phone numbers and
assistants), the rate-plan price, the ``_nz`` columns in today's ``LOCAL_TIMEZONE``.

A row whose raw events retention may have removed (``retention``: the default raw-event and
transcript windows; the row is older than its client's) is left alone, reported as skipped:
rebuilt from what is left, it would lose values. A row with no recorded events (written by
hand, or before ``call_events`` existed) is left alone, and so is one with neither a call id
nor a session id (``every_key`` yields its ``key`` as None: nothing names its events). With
``dry_run`` the transaction is rolled back: the changes are reported, nothing is written.

A deadlock or serialization failure (SQLSTATE class 40, with a live worker writing the same
rows) rolls the rebuild back; it is tried again ``CONFLICT_ATTEMPTS`` times in all, with a
short backoff, then reported as ``failed`` with the error, so that ``--all`` carries on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from ingest import queries
from ingest.apply import apply_message, rebuild_transcript
from ingest.errors import describe, is_retryable
from ingest.mapping.identity import as_uuid
from ingest.privacy import Privacy
from ingest.vocabulary import EventState

Connection = psycopg.Connection[Any]
RebuildOutcome = Literal["unchanged", "changed", "created", "skipped", "failed"]
ABSENT = "(absent)"
FIRST_ID = "00000000-0000-0000-0000-000000000000"
NO_KEY = "no call or session id"
CONFLICT_ATTEMPTS = 3  # tries of one row when a deadlock or serialization failure rolls it back
CONFLICT_BACKOFF = 0.1  # seconds before the second try, doubled before each later one


@dataclass(frozen=True)
class Change:
    """One value that differs: a column, or a key inside a JSON column (``metadata.provenance.x``)."""

    column: str
    before: Any
    after: Any


@dataclass(frozen=True)
class RebuildResult:
    key: str  # the call id, else the session id
    outcome: RebuildOutcome
    changes: tuple[Change, ...] = ()
    reason: str | None = None  # why a row was skipped or failed


class _Abandon(Exception):
    """Leaves the transaction (rolled back) with the result to report."""

    def __init__(self, result: RebuildResult) -> None:
        super().__init__(result.outcome)
        self.result = result


def changes(before: Any, after: Any, path: str = "") -> list[Change]:
    """What differs between two rows (or two JSON values), key by key inside objects."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after), key=str):
            name = f"{path}.{key}" if path else str(key)
            found += changes(before.get(key, ABSENT), after.get(key, ABSENT), name)
        return found
    return [Change(path, before, after)]


def _row(conn: Connection, query: str, params: dict[str, Any]) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def _replay(conn: Connection, events: list[tuple[Any, ...]], privacy: Privacy) -> None:
    """Apply the events (id, message, body, envelope, received_at) in order; those that found no
    row yet, again once it exists. One that cannot be opened fails the row (``KeyUnavailable``)."""
    held = []
    for _, kept, body, envelope, received_at in events:
        message, context = privacy.open_message(kept, body, envelope), privacy.context(received_at)
        if apply_message(conn, message, context, privacy) == EventState.WAITING:
            held.append((message, context))
    for message, context in held:
        apply_message(conn, message, context, privacy)


def _derive(
    conn: Connection,
    old: dict[str, Any] | None,
    events: list[tuple[Any, ...]],
    where: dict[str, str | None],
    *,
    privacy: Privacy,
    transcript_grace: float,
) -> dict[str, Any] | None:
    """Replace ``old`` by the row its events make (keeping its identity); None if they make none."""
    if old is not None:
        conn.execute(queries.DELETE_SESSION_ROW, {"id": old["id"]})
    _replay(conn, events, privacy)
    new = _row(conn, queries.SESSION_ROW_BY_KEY, where)
    if new is None:
        return None
    ended, call_id = new["ended_at_utc"], where["call_id"]
    long_ago = datetime.now(UTC) - timedelta(seconds=transcript_grace)
    if call_id and new["call_transcript"] is None and ended is not None and ended < long_ago:
        rebuild_transcript(conn, call_id, privacy)  # what the sweeper does for a report that never came
    if old is not None:
        params = {"id": old["id"], "created_at": old["created_at"], "new_id": new["id"]}
        conn.execute(queries.RESTORE_SESSION_IDENTITY, params)
        return _row(conn, queries.SESSION_ROW_BY_ID, {"id": old["id"]})
    return _row(conn, queries.SESSION_ROW_BY_KEY, where)


@dataclass(frozen=True)
class RowKey:
    """A row of ``user_sessions`` as ``every_key`` lists it."""

    row_id: str
    key: str | None  # the call id, else the session id; None when the row has neither


def _conflict(exc: psycopg.Error) -> bool:
    """A deadlock or serialization failure: SQLSTATE class 40, whatever psycopg's class for it.

    (psycopg's ``SerializationFailure`` and ``DeadlockDetected`` do not derive from its
    ``TransactionRollback``: the class is told by the code.)
    """
    return (exc.sqlstate or "").startswith("40")


def rebuild_row(
    conn: Connection,
    key: str,
    *,
    privacy: Privacy,
    transcript_grace: float,
    dry_run: bool = False,
    retention: tuple[int, int] | None = None,
) -> RebuildResult:
    """Rebuild the row of call (or session) ``key`` from its events; see the module's docstring.

    ``conn`` should be in autocommit mode: the rebuild is its own transaction. With no row
    for ``key`` but recorded events, the row is created from them (``created``). An event
    that no longer maps fails the row (left as it was), and so do deadlocks and
    serialization failures that outlast ``CONFLICT_ATTEMPTS`` tries; any other retryable
    error (the database going away) is raised.
    """
    attempt = 1
    while True:
        try:
            return _rebuild_once(
                conn, key, privacy=privacy, transcript_grace=transcript_grace, dry_run=dry_run, retention=retention
            )
        except psycopg.Error as exc:
            if not _conflict(exc):
                raise
            if attempt >= CONFLICT_ATTEMPTS:  # each try was rolled back: nothing of them is left
                error = (str(exc).strip().splitlines() or [""])[0]
                reason = f"{type(exc).__name__} after {attempt} attempts: {error}"
                return RebuildResult(key, "failed", reason=reason)
            time.sleep(CONFLICT_BACKOFF * 2 ** (attempt - 1))
            attempt += 1


def _past_raw_retention(conn: Connection, row_id: Any, retention: tuple[int, int]) -> bool:
    raw_days, transcript_days = retention
    params = {"id": row_id, "raw_days": raw_days, "transcript_days": transcript_days}
    row = conn.execute(queries.SESSION_PAST_RAW_RETENTION, params).fetchone()
    return bool(row and row[0])


def _rebuild_once(
    conn: Connection,
    key: str,
    *,
    privacy: Privacy,
    transcript_grace: float,
    dry_run: bool,
    retention: tuple[int, int] | None,
) -> RebuildResult:
    call_id = as_uuid(key)
    try:
        with conn.transaction():
            old = _row(conn, queries.SESSION_ROW_FOR_REBUILD, {"call_id": call_id, "session_id": key})
            if old is None:  # no row: create it, if events name ``key``
                where = {"call_id": call_id, "session_id": key}
            else:
                where = {"call_id": str(old["call_id"]) if old["call_id"] else None, "session_id": old["session_id"]}
                if retention is not None and _past_raw_retention(conn, old["id"], retention):
                    reason = "older than its raw events are kept (retention may have removed some): left as it is"
                    raise _Abandon(RebuildResult(key, "skipped", reason=reason))
            row_key = where["call_id"] or where["session_id"] or key
            conn.execute(queries.LOCK_SESSION_KEY, {"key": row_key})
            events = conn.execute(queries.EVENTS_OF_SESSION_ROW, where).fetchall()
            if not events:
                raise _Abandon(RebuildResult(key, "skipped", reason="no recorded events: left as it is"))
            try:
                new = _derive(conn, old, events, where, privacy=privacy, transcript_grace=transcript_grace)
            except Exception as exc:
                if is_retryable(exc):
                    raise
                raise _Abandon(RebuildResult(key, "failed", reason=describe(exc))) from exc
            if new is None:
                reason = "its events create no row (none names an assistant)"
                raise _Abandon(RebuildResult(key, "failed" if old else "skipped", reason=reason))
            # sealed values differ on every sealing: compare what they hold
            found = tuple(changes(privacy.open_row(old), privacy.open_row(new))) if old is not None else ()
            outcome: RebuildOutcome = "created" if old is None else "changed" if found else "unchanged"
            result = RebuildResult(row_key, outcome, found)
            if dry_run:
                raise _Abandon(result)
    except _Abandon as abandoned:
        return abandoned.result
    return result


def every_key(conn: Connection, page: int = 500) -> Iterator[RowKey]:
    """Every row with its key (call id, else session id, else None), page by page."""
    after = FIRST_ID
    while True:
        rows = conn.execute(queries.SESSION_KEYS_PAGE, {"after": after, "limit": page}).fetchall()
        for row_id, row_call, row_session in rows:
            yield RowKey(str(row_id), row_call or row_session or None)
        if len(rows) < page:
            return
        after = rows[-1][0]
