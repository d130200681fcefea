"""Applying one event: record it raw, map it, merge it into its row — in one transaction.

The raw record in ``call_events`` is the gate: its dedupe key makes a second delivery of
the same event a no-op, and because the record and the row change commit together, an
event is applied exactly once however often it is delivered or re-applied. An event
whose row cannot exist yet (no assistant known) waits in ``call_events`` and is applied
by the event that creates the row.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from ingest import queries
from ingest.errors import describe, is_retryable
from ingest.event import Event, is_final_transcript
from ingest.handlers import HANDLERS, Context
from ingest.mapping.event_key import event_key
from ingest.mapping.identity import as_uuid, call_id, indexable, session_id
from ingest.mapping.keywords import extract_keywords
from ingest.mapping.sentiment import sentiment_of
from ingest.mapping.timing import parse_instant
from ingest.mapping.transcript import transcript_from_finals
from ingest.patch import Patch, Source
from ingest.privacy import Privacy
from ingest.sealing import KeyUnavailable
from ingest.vocabulary import CallStatus, EventState, MergeOutcome, MessageType

log = logging.getLogger(__name__)

Connection = psycopg.Connection[Any]

# Events after which a call that ended without a report transcript gets one rebuilt from
# its final transcript events.
REBUILD_SOURCES = (None, Source.TRANSCRIPTS.value)

# An event of an erased call: its ``last_error``, and the flag its reduced message carries.
CALL_ERASED = "call erased"
ERASED_FLAG = "erased"
# What ``ingest_record_and_apply_unless_erased`` says of an erased call's event (not recorded).
ERASED_STATE = "erased"


def _report_expected(message: dict[str, Any]) -> bool:
    """Whether the assistant subscribes to end-of-call reports, which bring the transcript."""
    assistant = message.get("assistant")
    subscribed = assistant.get("serverMessages") if isinstance(assistant, dict) else None
    return isinstance(subscribed, list) and MessageType.END_OF_CALL_REPORT in subscribed


def _closes_call(message: dict[str, Any]) -> bool:
    """Whether, once the call has ended, this event should rebuild its transcript from finals.

    A report without a transcript does, and so does a Call object read from the API (it may
    carry none: its artifact plan decides); so do the end of the call and late final transcripts,
    unless the assistant subscribes to reports: then the report, seconds later, brings the
    transcript, and building one now would be thrown away. If that report never comes,
    the sweeper rebuilds the transcript once the call has been over for a while.
    """
    kind = message.get("type")
    if kind in {MessageType.END_OF_CALL_REPORT, MessageType.API_CALL}:
        return True
    ending = kind == MessageType.STATUS_UPDATE and message.get("status") == CallStatus.ENDED
    return (ending or is_final_transcript(message)) and not _report_expected(message)


Merged = tuple[MergeOutcome, bool, str | None]


def merge(conn: Connection, patch: Patch) -> Merged:
    """``ingest_apply_patch``: (outcome, whether the row has ended, its transcript's source)."""
    row = conn.execute(queries.APPLY_PATCH, {"patch": patch.to_json().decode()}).fetchone()
    assert row is not None
    return MergeOutcome(row[0]), row[1], row[2]


def rebuild_transcript(conn: Connection, key: str, privacy: Privacy) -> None:
    """``call_transcript`` (with sentiment and keywords) from the call's final transcripts.

    A final sealed under a key this process does not hold raises ``KeyUnavailable``: a
    transcript built without it would be missing lines, so the event waits instead.
    """
    rows: list[Any] = []  # (timestamp ms, role, text) as the events gave them
    for kept, body, envelope in conn.execute(queries.FINAL_TRANSCRIPTS, {"call_id": key}):
        final = privacy.open_message(kept, body, envelope)
        if not is_final_transcript(final):
            continue
        instant = parse_instant(final.get("timestamp"))  # epoch ms, or an ISO string in older payloads
        if instant is not None:
            rows.append((instant.timestamp() * 1000, final.get("role"), final.get("transcript")))
    transcript = transcript_from_finals(rows)
    if transcript is None:
        return
    said = [text for _, role, text in rows if role == "user" and isinstance(text, str)]
    sentiment = sentiment_of(said)
    searchable = privacy.redacted(transcript)
    patch = Patch(call_id=key).with_text("call_transcript", transcript, Source.TRANSCRIPTS, searchable)
    patch = patch.with_value("sentiment", sentiment.value if sentiment else None, Source.TRANSCRIPTS)
    patch = patch.with_value("keywords", extract_keywords(searchable or "") or None, Source.TRANSCRIPTS)
    merge(conn, privacy.seal_patch(patch))


def _patch(message: dict[str, Any], context: Context, privacy: Privacy) -> Patch | None:
    """The message's patch, originals sealed; None for a type we do not map or one about no call or session."""
    handler = HANDLERS.get(str(message.get("type")))
    if handler is None:
        return None
    patch = handler(message, context)  # may raise Unmappable: nothing is written then
    return privacy.seal_patch(patch) if patch.call_id or patch.session_id else None


def _follow_up(conn: Connection, message: dict[str, Any], patch: Patch, privacy: Privacy, merged: Merged) -> None:
    """After a merge: apply the events that waited for a new row; rebuild a transcript."""
    outcome, ended, transcript_source = merged
    if outcome == MergeOutcome.INSERTED and _apply_waiting(conn, patch, privacy):
        # the row as the waiting events left it (nothing waited: as the insert made it)
        outcome, ended, transcript_source = merge(conn, Patch(patch.call_id, patch.session_id))
    if patch.call_id and ended and transcript_source in REBUILD_SOURCES and _closes_call(message):
        rebuild_transcript(conn, patch.call_id, privacy)


def apply_message(conn: Connection, message: dict[str, Any], context: Context, privacy: Privacy) -> EventState:
    """Map and merge a recorded message inside the caller's transaction; the state it leaves."""
    patch = _patch(message, context, privacy)
    if patch is None:
        return EventState.IGNORED
    merged = merge(conn, patch)
    if merged[0] == MergeOutcome.MISSING:
        return EventState.WAITING
    _follow_up(conn, message, patch, privacy, merged)
    return EventState.APPLIED


def _apply_waiting(conn: Connection, patch: Patch, privacy: Privacy) -> int:
    """Apply the events that waited for this row to exist; how many there were.

    One sealed under a key this process does not hold keeps waiting, with the reason; the
    sweeper applies it once the key is configured.
    """
    if patch.call_id:
        rows = conn.execute(queries.CLAIM_WAITING_FOR_CALL, {"call_id": patch.call_id}).fetchall()
    else:
        rows = conn.execute(queries.CLAIM_WAITING_FOR_SESSION, {"session_id": patch.session_id}).fetchall()
    for event_id, kept, body, envelope, received_at in rows:
        try:
            message = privacy.open_message(kept, body, envelope)
        except KeyUnavailable as exc:
            conn.execute(queries.SET_EVENT_ERROR, {"id": event_id, "error": describe(exc)})
            continue
        state = apply_message(conn, message, privacy.context(received_at), privacy)
        conn.execute(queries.SET_EVENT_STATE, {"id": event_id, "state": state.value, "error": None})
    return len(rows)


def _erasure_ids(event: Event) -> dict[str, Any]:
    """The ids ``ingest_erased`` looks the event up by: its call's, else its session's (neither: no lookup)."""
    call = as_uuid(call_id(event.message))
    return {"erasure_call_id": call, "erasure_session_id": None if call else session_id(event.message)}


def _erased(conn: Connection, erasure: dict[str, Any]) -> bool:
    """Whether the call (or session) of ``_erasure_ids`` was erased: a lookup of its own."""
    if erasure["erasure_call_id"] is None and erasure["erasure_session_id"] is None:
        return False
    row = conn.execute(queries.ERASED, erasure).fetchone()
    return bool(row and row[0])


def record_erased(conn: Connection, event: Event, privacy: Privacy) -> EventState | None:
    """Keep an erased call's event as ignored, with the reason, its message reduced to its type; None
    when it was kept so already (a duplicate).

    It is recorded as an event with no patch (ignored) whose message is the reduced one, so
    its row, sealed like any other, takes the dedupe gate; a row the endpoint kept for it
    with the whole message is then reduced the same way.
    """
    reduced = Event({"type": event.kind, ERASED_FLAG: True}, event.received_at).row(EventState.IGNORED, privacy)
    raw_call_id = call_id(event.message)
    params = {
        **reduced,
        "call_id": as_uuid(raw_call_id) or indexable(raw_call_id),
        "session_id": indexable(session_id(event.message)),
        "dedupe_key": event_key(event.message),
        "patch": None,
    }
    row = conn.execute(queries.RECORD_AND_APPLY, params).fetchone()
    if row is None:
        return None
    conn.execute(queries.REDUCE_ERASED_EVENT, {**reduced, "id": row[0], "last_error": CALL_ERASED})
    return EventState.IGNORED


@dataclass(frozen=True)
class Prepared:
    """An event ready to be recorded: mapped, sealed, its ``call_events`` row and patch as parameters
    (``queries.RECORD_AND_APPLY_UNLESS_ERASED``'s). Needs no database: the group commit has each
    worker thread prepare its own event while the committer is busy with the batch before."""

    event: Event
    patch: Patch | None
    params: dict[str, Any]


def prepare(event: Event, privacy: Privacy) -> Prepared:
    """Map and seal ``event``; raises what mapping it raises (``Unmappable``)."""
    patch = _patch(event.message, privacy.context(event.received_at), privacy)
    params = {
        **event.row(EventState.PENDING, privacy, with_envelope=True),
        "patch": patch.to_json().decode() if patch else None,
        **_erasure_ids(event),
    }
    return Prepared(event, patch, params)


Recorded = tuple[Any, ...]  # event_id, state, outcome, ended, transcript_source


def settle(conn: Connection, prepared: Prepared, recorded: Recorded, privacy: Privacy) -> EventState | None:
    """What follows recording a prepared event: keep an erased call's event reduced; apply the
    events that waited for a new row; rebuild a transcript. The state the event is left in."""
    _, state, outcome, ended, transcript_source = recorded
    if state == ERASED_STATE:
        return record_erased(conn, prepared.event, privacy)
    if prepared.patch is not None and outcome != MergeOutcome.MISSING:
        merged = (MergeOutcome(outcome), bool(ended), transcript_source)
        _follow_up(conn, prepared.event.message, prepared.patch, privacy, merged)
    return EventState(state)


def apply_event(conn: Connection, event: Event, privacy: Privacy, *, savepoint: bool = True) -> EventState | None:
    """Record and apply ``event`` in one transaction; None when it was already applied.

    An event of a call erased on request (``ingest erase``) is recorded as ignored with
    ``CALL_ERASED`` and a message reduced to its type (``record_erased``): nothing of it is
    kept or applied.

    The common case is one round trip: ``ingest_record_and_apply_unless_erased`` looks the
    call up among the erased ones, records the event, merges its patch and sets its state.
    Applying waited-for events and rebuilding a transcript follow only when the merge calls
    for them. With ``savepoint=False`` the caller's transaction is used as it is (the caller
    rolls it all back on an error).
    """
    with conn.transaction() if savepoint else contextlib.nullcontext():
        try:
            prepared = prepare(event, privacy)
        except Exception:
            # an erased call's event is kept reduced, even when it could never map
            if _erased(conn, _erasure_ids(event)):
                return record_erased(conn, event, privacy)
            raise
        row = conn.execute(queries.RECORD_AND_APPLY_UNLESS_ERASED, prepared.params).fetchone()
        if row is None:
            return None  # a duplicate of an applied (or ignored) event
        return settle(conn, prepared, row, privacy)


@dataclass(frozen=True)
class StoredOutcome:
    """What re-applying a stored event did: not claimed (settled meanwhile, or held by
    another process), applied to ``state``, or failed with ``error`` (recorded)."""

    claimed: bool
    state: EventState | None = None
    error: Exception | None = None


def apply_stored_event(conn: Connection, event_id: int, privacy: Privacy) -> StoredOutcome:
    """Claim an event kept in ``call_events`` (pending, waiting or failed) and apply it.

    The sweeper, ``ingest events reapply`` and the ops page's retry button all go through
    here: the claim (``FOR UPDATE SKIP LOCKED``) keeps two of them off the same event, and a
    failure is recorded with the event, in the same transaction as the claim. An event sealed
    under a key this process does not hold keeps its state, with that error.
    """
    with conn.transaction():
        row = conn.execute(queries.CLAIM_STORED_EVENT, {"id": event_id}).fetchone()
        if row is None:
            return StoredOutcome(claimed=False)
        try:
            event = Event(privacy.open_message(row[0], row[1], row[2]), row[3])
        except Exception as exc:
            conn.execute(queries.SET_EVENT_ERROR, {"id": event_id, "error": describe(exc)})
            return StoredOutcome(claimed=True, error=exc)
        try:
            with conn.transaction():
                state = apply_event(conn, event, privacy)
        except Exception as exc:
            record_failure(conn, event, exc, permanent=not is_retryable(exc), privacy=privacy)
            return StoredOutcome(claimed=True, error=exc)
    return StoredOutcome(claimed=True, state=state)


def record_failure(conn: Connection, event: Event, error: BaseException, *, permanent: bool, privacy: Privacy) -> None:
    """Keep the event and its error, outside the failed transaction.

    Should its own row be refused for its content (a value no column or index can hold, JSON
    no encoder writes), a reduced row keeps the message as JSON text with both errors, failed:
    an accepted event is never only in the dead-letter queue. A database outage is raised.
    """
    text = describe(error)
    state = EventState.FAILED if permanent else EventState.PENDING
    try:
        with conn.transaction():
            conn.execute(queries.RECORD_FAILURE, event.row(state, privacy, text))
        return
    except Exception as exc:
        if conn.closed or (isinstance(exc, psycopg.Error) and is_retryable(exc)):
            raise
        refused = describe(exc, 500)
    log.warning("event kept in a reduced row", extra={"error": refused})
    with conn.transaction():
        conn.execute(
            queries.RECORD_FAILURE, event.reduced_row(EventState.FAILED, privacy, f"{text} (row refused: {refused})")
        )
