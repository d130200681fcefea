"""Operating on recorded events: list, show, re-apply, discard.

The one API for every operator surface (``ingest events``, the ops page's buttons):

- ``list_events(conn, *, failed=False, states=(), message_type=None, call=None, since=None,
  limit=50)`` → ``list[EventSummary]``, newest first: the events in ``states`` (any of
  ``EventState``), plus the ``failed`` ones with ``failed=True``; with neither, the
  unfinished ones (``pending`` and ``waiting``). Narrowed to one message type, one call or
  session id, events received at or after ``since``.
- ``matching_event_ids(conn, *, failed=False, message_type=None, call=None, since=None,
  limit=None)`` → ``list[int]``: the ids of the events ``list_events`` would show for the
  same filters, newest first, read page by page: every one of them, or at most ``limit``.
- ``get_event(conn, event_id, privacy)`` → ``EventDetail`` (the summary plus the whole error, the
  timestamps, the dedupe key and the raw message), or None.
- ``reapply(pool, event_ids, *, privacy)`` → ``ReapplyResult(applied, total,
  failures)``: each event claimed and applied in its own transaction exactly as the sweeper
  does (``CLAIM_STORED_EVENT``, then the worker's ``apply_event``: same handlers, same
  merge, same follow-ups); a failure is recorded on the event as the worker records it
  (``failed``, or ``pending`` when a retry can fix it). An event that is already applied
  counts as applied. An event left ``waiting`` (its row cannot exist yet), an ``ignored``
  one, an unknown id, or one another process holds right now is a failure with its reason.
- ``why_not_applied(event)`` → why a stored event (an ``EventDetail``, or None for an
  unknown id) is not applied, from its state and its recorded error; None when it is.
- ``discard(conn, event_ids, queue=None)`` → how many events were discarded: ``failed``
  events become ``ignored`` (the error is kept), so they stop counting as failed and the
  sweeper leaves them; other states are left alone. Given the ``Queue`` (Redis client,
  namespace, queue name), the dead letters carrying a discarded event are deleted too
  (``dead_letters.purge_events``: a dead letter is the event's when the body it carries
  has the event's dedupe key, which is how the worker recorded it).

``conn`` is a psycopg connection; ``discard`` runs in a transaction of its own (a savepoint
inside the caller's, if one is open), and deletes the dead letters before it commits: when
Redis fails, nothing is discarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ingest import queries
from ingest.apply import apply_stored_event
from ingest.errors import describe
from ingest.mapping.identity import as_uuid
from ingest.ops import dead_letters
from ingest.privacy import Privacy
from ingest.sealing import KeyUnavailable, SealError, key_id_of
from ingest.vocabulary import EventState

Connection = psycopg.Connection[Any]

UNFINISHED = (EventState.PENDING.value, EventState.WAITING.value)
ID_PAGE = 1000  # ids read per round trip by ``matching_event_ids``
IGNORED = "ignored (a type that is not mapped, or discarded): not re-applied"
WAITING = "waiting: its row cannot exist yet (no event of the call names an assistant)"

# The ids of the events LIST_EVENTS shows, in its order, one page after (older than) the
# last one read. Kept here until it can join the other queries in ``ingest.queries``.


@dataclass(frozen=True)
class EventSummary:
    """One ``call_events`` row as a list shows it; ``error`` is the first line of the last error."""

    id: int
    received_at: datetime
    message_type: str
    call_id: str | None
    session_id: str | None
    state: EventState
    attempts: int
    error: str | None

    @property
    def key(self) -> str | None:
        """The call id, else the session id: the row the event belongs to."""
        return self.call_id or self.session_id

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (datetimes as ISO 8601 strings)."""
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class EventDetail(EventSummary):
    """The whole event: the summary's fields, the full error, timestamps and the raw message."""

    last_error: str | None = None
    applied_at: datetime | None = None
    updated_at: datetime | None = None
    enqueued_at: datetime | None = None
    dedupe_key: str = ""
    message: dict[str, Any] = field(default_factory=dict)
    key_id: str | None = None  # the key its body is sealed under; None when kept in plain text
    unreadable: str | None = None  # why the message could not be opened (a key not configured)


@dataclass(frozen=True)
class ReapplyResult:
    applied: int
    total: int
    failures: list[tuple[int, str]]

    @property
    def ok(self) -> bool:
        return not self.failures


def _summary_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "state": EventState(row["state"])}


def _filters(
    failed: bool,
    message_type: str | None,
    call: str | None,
    since: datetime | None,
    limit: int | None,
    states: Sequence[EventState | str] = (),
) -> dict[str, Any]:
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    chosen = {EventState(state).value for state in states} | ({EventState.FAILED.value} if failed else set())
    return {
        "states": sorted(chosen) if chosen else list(UNFINISHED),
        "message_type": message_type,
        "call": (as_uuid(call) or call.strip()) if call else None,
        "since": since,
    }


def list_events(
    conn: Connection,
    *,
    failed: bool = False,
    states: Sequence[EventState | str] = (),
    message_type: str | None = None,
    call: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[EventSummary]:
    """Events in ``states`` (and failed ones, with ``failed``; unfinished ones by default), newest first."""
    params = {**_filters(failed, message_type, call, since, limit, states), "limit": limit}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(queries.LIST_EVENTS, params).fetchall()
    return [EventSummary(**_summary_fields(row)) for row in rows]


def matching_event_ids(
    conn: Connection,
    *,
    failed: bool = False,
    message_type: str | None = None,
    call: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[int]:
    """The ids of the events ``list_events`` shows for these filters, newest first: all, or ``limit``."""
    params = {**_filters(failed, message_type, call, since, limit), "after_received_at": None, "after_id": None}
    ids: list[int] = []
    while limit is None or len(ids) < limit:
        page = ID_PAGE if limit is None else min(ID_PAGE, limit - len(ids))
        rows = conn.execute(queries.MATCHING_EVENT_IDS, {**params, "limit": page}).fetchall()
        ids += [row[0] for row in rows]
        if len(rows) < page:
            break
        params["after_id"], params["after_received_at"] = rows[-1]
    return ids


def get_event(conn: Connection, event_id: int, privacy: Privacy) -> EventDetail | None:
    """The whole event, its message opened (``unreadable`` says why when it cannot be)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.GET_EVENT, {"id": event_id}).fetchone()
    if row is None:
        return None
    body, envelope = row.pop("body"), row.pop("envelope")
    fields = _summary_fields(row)
    fields["key_id"] = key_id_of(body) if body is not None else None
    try:
        fields["message"] = privacy.open_message(row["message"], body, envelope)
    except (SealError, KeyUnavailable) as exc:
        fields["message"], fields["unreadable"] = {}, str(exc)
    return EventDetail(**fields)


def _unclaimed(conn: Connection, event_id: int) -> str | None:
    """Why an event could not be claimed (None: it is applied already, nothing to do)."""
    row = conn.execute(queries.EVENT_STATE, {"id": event_id}).fetchone()
    if row is None:
        return "no such event"
    state = row[0]
    if state == EventState.APPLIED:
        return None
    if state == EventState.IGNORED:
        return IGNORED
    return f"{state}, held by another process applying it right now: try again"


def why_not_applied(event: EventDetail | None) -> str | None:
    """Why a stored event is not applied (its recorded error, already described); None if it is."""
    if event is None:
        return "no such event"
    if event.state == EventState.APPLIED:
        return None
    if event.state == EventState.IGNORED:
        return IGNORED
    if event.state == EventState.WAITING:
        return WAITING
    return event.last_error or event.state.value


def _reapply_one(pool: ConnectionPool, event_id: int, privacy: Privacy) -> str | None:
    """Apply one stored event; None when it ends applied, else why not."""
    with pool.connection() as conn:
        outcome = apply_stored_event(conn, event_id, privacy)
        if not outcome.claimed:
            return _unclaimed(conn, event_id)
    if outcome.error is not None:
        return describe(outcome.error)
    if outcome.state == EventState.WAITING:
        return WAITING
    return None  # applied, ignored (a type not mapped), or a duplicate of an applied event


def reapply(pool: ConnectionPool, event_ids: Sequence[int], *, privacy: Privacy) -> ReapplyResult:
    """Re-apply stored events through the worker's code path, one transaction each."""
    ids = list(dict.fromkeys(event_ids))
    failures: list[tuple[int, str]] = []
    for event_id in ids:
        reason = _reapply_one(pool, event_id, privacy)
        if reason is not None:
            failures.append((event_id, reason))
    return ReapplyResult(applied=len(ids) - len(failures), total=len(ids), failures=failures)


@dataclass(frozen=True)
class Queue:
    """Where the events' dead letters are: Dramatiq's Redis, its key namespace, the queue."""

    client: redis.Redis
    namespace: str
    name: str


def discard(conn: Connection, event_ids: Sequence[int], queue: Queue | None = None) -> int:
    """Mark failed events ``ignored`` (error kept), and delete their dead letters from ``queue``.

    Returns how many were failed and now are not.
    """
    if not event_ids:
        return 0
    with conn.transaction():
        rows = conn.execute(queries.DISCARD_FAILED_EVENTS, {"ids": list(event_ids)}).fetchall()
        if queue is not None and rows:
            dead_letters.purge_events(queue.client, queue.namespace, queue.name, {row[0] for row in rows})
    return len(rows)


__all__ = [
    "EventDetail",
    "EventSummary",
    "Queue",
    "ReapplyResult",
    "discard",
    "get_event",
    "list_events",
    "matching_event_ids",
    "reapply",
    "why_not_applied",
]
