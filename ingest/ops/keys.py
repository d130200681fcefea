"""Sealing everything under the current key: ``ingest keys rotate``.

- ``pending_events(conn, privacy)`` → how many raw events are not sealed under the current
  key (plain ones, ones under an older key).
- ``pending(conn, privacy)`` → ``Pending``: the raw events and the session rows ``rotate``
  will go through (each advances its ``progress`` by one), what its audit row records.
- ``key_usage(conn)`` → ``[KeyUse]``: how many values each key id seals, in every place
  ``rotate`` re-seals (raw events, call envelopes, session originals, raw numbers).
- ``rotate(conn, privacy, *, batch=500, progress=None)`` → ``RotationCounts``: seals the
  ``call_events`` bodies kept in plain text or under an older key, re-seals the originals
  and raw numbers of ``user_sessions``, and redacts rows written before redaction (their
  clear transcript and summary become the sealed originals, the columns take the redacted
  text, keywords are redacted too). A body sealed against its call's envelope (``v2``) is
  re-sealed against that envelope kept under the current key; the old key's envelopes, no
  longer referred to, are forgotten at the end.

It works in short transactions of ``batch`` rows in id order, each committed on its own,
so it runs beside live web and worker processes (a row a worker holds is waited for; a
deadlock or lock timeout retries the page), and a stopped rotation resumes when run again:
every page selects only what is still to do. A value sealed under a key this process does
not hold is counted as ``unopened`` and left as it is: keep every old key configured until
a rotation reports none, then drop them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from ingest import queries
from ingest.event import clear_columns
from ingest.privacy import Privacy, SealedEvent
from ingest.sealing import REFERENCED_VERSION, VERSION, KeyUnavailable, Purpose, SealError, key_id_of

Connection = psycopg.Connection[Any]
Progress = Callable[[int], object]

CONFLICT_ATTEMPTS = 5
# ingest_forget_call_envelopes takes at most this many a call (sql/functions/71_call_envelopes.sql).
FORGET_PAGE_LIMIT = 500


@dataclass
class RotationCounts:
    events: int = 0  # raw events sealed or re-sealed
    sessions: int = 0  # session rows whose originals or raw numbers were (re-)sealed, or that were redacted
    unopened: int = 0  # values sealed under a key this process does not hold: left as they were

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "sessions": self.sessions, "unopened": self.unopened}


def current_prefix(privacy: Privacy, version: str = VERSION) -> str:
    """``v1:<kid>:``, what every value sealed under the current key starts with (``v2:<kid>:``
    for a body sealed against its call's envelope)."""
    current = privacy.keyring.current
    if current is None:
        raise SealError("no encryption key to seal under: set INGEST_ENCRYPTION_KEYS", None)
    return f"{version}:{current}:"


def _prefixes(privacy: Privacy) -> dict[str, bytes]:
    """The prefixes of a body sealed under the current key, as ``EVENTS_TO_RESEAL`` takes them."""
    return {
        "prefix": current_prefix(privacy).encode(),
        "referenced_prefix": current_prefix(privacy, REFERENCED_VERSION).encode(),
    }


def pending_events(conn: Connection, privacy: Privacy) -> int:
    row = conn.execute(queries.EVENTS_TO_RESEAL_COUNT, _prefixes(privacy)).fetchone()
    return int(row[0]) if row else 0


def pending_sessions(conn: Connection, privacy: Privacy) -> int:
    """Session rows with an original or a raw number not under the current key, or written before redaction."""
    params = {"prefix": current_prefix(privacy), "redact": privacy.redact}
    row = conn.execute(queries.SESSIONS_TO_RESEAL_COUNT, params).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Pending:
    """What a rotation will go through: each row advances its progress by one (an envelope is
    re-sealed with the first of its call's events, and advances nothing of its own)."""

    events: int
    sessions: int

    @property
    def total(self) -> int:
        return self.events + self.sessions

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "sessions": self.sessions}


def pending(conn: Connection, privacy: Privacy) -> Pending:
    return Pending(pending_events(conn, privacy), pending_sessions(conn, privacy))


@dataclass(frozen=True)
class KeyUse:
    """How many values each key id seals (None: kept in plain text). ``table`` is
    ``call_events``, ``call_envelopes``, ``user_sessions`` (the sealed originals) or
    ``user_sessions.raw_numbers`` (the raw numbers in ``metadata``)."""

    table: str
    key_id: str | None
    count: int


def key_usage(conn: Connection) -> list[KeyUse]:
    """Values per key id: raw events, envelopes, session originals and raw numbers; what
    ``rotate`` leaves under old keys. An old key may go once it seals nothing here."""
    rows = conn.execute(queries.KEY_USAGE).fetchall()
    return [KeyUse(table, key_id, int(count)) for table, key_id, count in rows]


def _in_pages(conn: Connection, page: Callable[[], int], batch: int) -> None:
    """``page`` (one transaction each) until it takes less than a batch; a page that meets a
    deadlock or a lock timeout was rolled back and is run again."""
    while True:
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                with conn.transaction():
                    taken = page()
                break
            except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable):
                if attempt == CONFLICT_ATTEMPTS:
                    raise
                time.sleep(0.05 * 2**attempt)
        if taken < batch:
            return


def _resealed_event(conn: Connection, privacy: Privacy, message: dict[str, Any], call_id: str | None) -> SealedEvent:
    """``message`` sealed as the worker seals it now: against its call's envelope under the
    current key, kept first; sealed whole when it has none, or its call was erased meanwhile."""
    sealed = privacy.seal_event(message)
    envelope = sealed.envelope
    if envelope is None:
        return sealed
    if envelope.call_id == call_id:
        params = {"call_id": envelope.call_id, "envelope_id": envelope.id, "envelope": envelope.body}
        kept = conn.execute(queries.KEEP_CALL_ENVELOPE, params).fetchone()
        if kept and kept[0]:
            return sealed
    return SealedEvent(privacy.seal_message(message))


def _rotate_events(conn: Connection, privacy: Privacy, counts: RotationCounts, batch: int, progress: Progress) -> None:
    params: dict[str, Any] = {"after": 0, **_prefixes(privacy), "limit": batch}

    def page() -> int:
        rows = conn.execute(queries.EVENTS_TO_RESEAL, params).fetchall()
        for event_id, kept, body, envelope, call_id in rows:
            try:
                message = privacy.open_message(kept, body, envelope)
            except (KeyUnavailable, SealError):
                counts.unopened += 1
                continue
            sealed = _resealed_event(conn, privacy, message, call_id)
            conn.execute(
                queries.RESEAL_EVENT,
                {
                    "id": event_id,
                    "body": sealed.body,
                    "envelope_id": sealed.envelope.id if sealed.envelope else None,
                    **clear_columns(message),
                },
            )
            counts.events += 1
        if rows:
            params["after"] = rows[-1][0]
        progress(len(rows))
        return len(rows)

    _in_pages(conn, page, batch)


def _forget_old_envelopes(conn: Connection, before: datetime, batch: int) -> None:
    """The envelopes the re-sealed events referred to, now unused (retention would forget them later)."""
    while True:
        with conn.transaction():  # each envelope's erasure lock is held to the end of its page
            row = conn.execute(queries.FORGET_CALL_ENVELOPES, {"before": before, "batch": batch}).fetchone()
        if not row or row[0] < min(batch, FORGET_PAGE_LIMIT):
            return


def _resealed(privacy: Privacy, value: str | None, purpose: bytes, prefix: str) -> str | None:
    """``value`` sealed under the current key (opened first when sealed under another, or kept plain)."""
    if value is None or value.startswith(prefix):
        return value
    return privacy.keyring.seal_text(privacy.keyring.open_text(value, purpose), purpose)


def _session_changes(privacy: Privacy, row: tuple[Any, ...], prefix: str) -> dict[str, Any] | None:
    """The new values of a ``SESSIONS_TO_RESEAL`` row, or None when nothing changes."""
    row_id, transcript, summary, transcript_original, summary_original, keywords, raw_numbers = row
    new: dict[str, Any] = {"id": row_id, "keywords": keywords, "raw_numbers": None}
    for column, text, original, purpose in (
        ("call_transcript", transcript, transcript_original, Purpose.TRANSCRIPT),
        ("call_summary", summary, summary_original, Purpose.SUMMARY),
    ):
        new[column], new[f"{column}_original"] = text, _resealed(privacy, original, purpose, prefix)
        if original is None and text is not None and privacy.redact:
            redacted = privacy.redacted(text)
            if redacted != text:  # written before redaction: the clear text becomes the sealed original
                new[column] = redacted
                new[f"{column}_original"] = privacy.keyring.seal_text(text, purpose)
    if privacy.redact and keywords:
        new["keywords"] = list(dict.fromkeys(privacy.redacted(str(word)) for word in keywords))
    if isinstance(raw_numbers, dict):
        sealed = {
            key: value
            if value.startswith(prefix)
            else privacy.keyring.seal_text(
                privacy.keyring.open_text(value, Purpose.RAW_NUMBER) if key_id_of(value) else value,
                Purpose.RAW_NUMBER,
            )
            for key, value in raw_numbers.items()
            if isinstance(value, str)
        }
        if sealed != raw_numbers:
            new["raw_numbers"] = orjson.dumps(sealed).decode()
    before = {
        "call_transcript": transcript,
        "call_summary": summary,
        "call_transcript_original": transcript_original,
        "call_summary_original": summary_original,
        "keywords": keywords,
    }
    unchanged = all(new[key] == value for key, value in before.items()) and new["raw_numbers"] is None
    return None if unchanged else new


def _rotate_sessions(
    conn: Connection, privacy: Privacy, counts: RotationCounts, batch: int, progress: Progress
) -> None:
    prefix = current_prefix(privacy)
    params: dict[str, Any] = {"after": uuid.UUID(int=0), "prefix": prefix, "redact": privacy.redact, "limit": batch}

    def page() -> int:
        rows = conn.execute(queries.SESSIONS_TO_RESEAL, params).fetchall()
        for row in rows:
            try:
                new = _session_changes(privacy, row, prefix)
            except (KeyUnavailable, SealError):
                counts.unopened += 1
                continue
            if new is not None:
                conn.execute(queries.RESEAL_SESSION, new)
                counts.sessions += 1
        if rows:
            params["after"] = rows[-1][0]
        progress(len(rows))
        return len(rows)

    _in_pages(conn, page, batch)


def rotate(conn: Connection, privacy: Privacy, *, batch: int = 500, progress: Progress | None = None) -> RotationCounts:
    """Seal everything under the current key; ``conn`` must be in autocommit mode (each page commits)."""
    counts = RotationCounts()
    step = progress or (lambda _n: None)
    started = datetime.now(UTC)
    _rotate_events(conn, privacy, counts, batch, step)
    _forget_old_envelopes(conn, started, batch)
    _rotate_sessions(conn, privacy, counts, batch, step)
    return counts
