"""Erasure on request: a caller's sessions lose everything personal, keep their billing figures.

- ``customer_numbers(number, region, key)``: the values ``customer_number`` may hold for a
  caller given in any notation (``+64 21 555 0123``, ``021 555 0123``, ``0215550123``): its
  E.164 form and its pseudonym, which rows erased or anonymised before hold.
  ``ValueError`` for text that is no valid number in ``region``.
- ``find(conn, *, numbers=None, call=None, client=None)`` → ``list[Target]``: the rows to
  erase (locked until the transaction ends) and their raw events, by number or by call id.
  A call id with no row still gives a target: its events go and its tombstone is written.
- ``erase(conn, plan, key, *, audit_id=None)``: for each target, in the caller's
  transaction, after the ``erase`` row of the access log (``recorded_audit_id``: its id goes
  into the tombstones):
  - the tombstone (``erased_calls``, or ``erased_sessions`` for a row without a call id),
    under the advisory lock the worker's lookup shares (``sql/functions/95_erasure.sql``):
    an event of the call applied meanwhile is erased with the rest, one arriving later is
    kept as ignored without its message (``ingest.apply.record_erased``);
  - every ``call_events`` row of it deleted (the raw bodies);
  - in the row: transcript, summary, their sealed originals, keywords and ``user_id`` set
    NULL; ``customer_number`` replaced by its pseudonym; ``metadata`` reduced to the keys in
    ``KEPT_METADATA`` and each ``server_messages`` timeline entry to ``KEPT_TIMELINE``.
  Times, durations, cost, client, assistant, outcome and sentiment stay, so usage and
  ``get_client_call_analytics`` count the call as before (less its keywords).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

from ingest import queries
from ingest.mapping.phone import normalise_number
from ingest.pseudonym import is_pseudonym, pseudonym

Connection = psycopg.Connection[Any]

# What an erased row keeps of ``metadata``: billing, timing and bookkeeping, nothing said or
# dialled. Everything else goes: raw_numbers, recordings (links to the audio), analysis
# (the assistant's free text), transfers (the numbers transferred to), chats, and any key a
# writer other than the service added.
KEPT_METADATA = frozenset(
    {
        "provenance",
        "cost_source",
        "costs",
        "cost_breakdown",
        "raw_cost",
        "performance",
        "assistants",
        "deletion",
        "artifact_uploads",
        "languages",
        "implausible_times",
        "transcript_finals_tried",
    }
)
# What an erased row keeps of each ``server_messages`` timeline entry (``handlers.common.timeline_entry``).
KEPT_TIMELINE = frozenset({"at", "type", "status", "endedReason", "destination", "language", "request"})


@dataclass(frozen=True)
class Target:
    """A row to erase (``row_id`` None: a call id with events only) and its raw events."""

    row_id: str | None
    call_id: str | None
    session_id: str | None
    client_id: str | None
    events: int

    @property
    def key(self) -> str:
        return self.call_id or str(self.session_id)


@dataclass(frozen=True)
class Plan:
    """What an erasure removes: its targets, counted per client."""

    targets: tuple[Target, ...]

    @property
    def sessions(self) -> int:
        return sum(1 for target in self.targets if target.row_id is not None)

    @property
    def events(self) -> int:
        return sum(target.events for target in self.targets)

    def per_client(self) -> dict[str, tuple[int, int]]:
        """client id (``-`` for none) → (sessions, events)."""
        sessions: Counter[str] = Counter()
        events: Counter[str] = Counter()
        for target in self.targets:
            client = target.client_id or "-"
            sessions[client] += target.row_id is not None
            events[client] += target.events
        return {client: (sessions[client], events[client]) for client in sorted(sessions)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "events": self.events,
            "clients": {client: {"sessions": s, "events": e} for client, (s, e) in self.per_client().items()},
        }


def customer_numbers(number: str, region: str, key: bytes) -> tuple[str, str]:
    """(E.164, pseudonym) of a caller's number in any notation; ``ValueError`` if it is none."""
    text = number.strip()
    if is_pseudonym(text):
        raise ValueError("give the caller's number, not a pseudonym")
    e164 = normalise_number(text, region).e164
    if e164 is None:
        raise ValueError(f"not a valid phone number (numbers without a country code are read as {region})")
    return e164, pseudonym(e164, key)


def _events(conn: Connection, call_id: str | None, session_id: str | None) -> int:
    if call_id is not None:
        row = conn.execute(queries.EVENTS_OF_CALL_COUNT, {"call_id": call_id}).fetchone()
    else:
        row = conn.execute(queries.EVENTS_OF_SESSION_COUNT, {"session_id": session_id}).fetchone()
    return int(row[0]) if row else 0


def find(
    conn: Connection, *, numbers: Sequence[str] | None = None, call: str | None = None, client: str | None = None
) -> Plan:
    """The rows of a caller (``numbers``: ``customer_numbers``) or of one call id, locked, with their events."""
    if (numbers is None) == (call is None):
        raise ValueError("erase by number or by call id, not both")
    if call is not None:
        rows = conn.execute(queries.SESSION_OF_CALL, {"call_id": call}).fetchall()
        if not rows:
            found = _events(conn, call, None)
            return Plan((Target(None, call, None, None, found),) if found else ())
    else:
        params = {"numbers": list(numbers or ()), "client": client.strip() if client else None}
        rows = conn.execute(queries.SESSIONS_OF_CUSTOMER, params).fetchall()
    return Plan(
        tuple(
            Target(str(row_id), call_id, session_id, client_id, _events(conn, call_id, session_id))
            for row_id, call_id, session_id, client_id in rows
        )
    )


def recorded_audit_id(conn: Connection) -> int:
    """The id of the access-log row this connection wrote last (the ``erase`` row, for the tombstones)."""
    row = conn.execute(queries.LAST_ACCESS_ID).fetchone()
    assert row is not None
    return int(row[0])


def erase(conn: Connection, plan: Plan, key: bytes, *, audit_id: int | None = None) -> None:
    """Erase every target of ``plan`` in the caller's transaction; ``audit_id`` goes into the tombstones."""
    for target in plan.targets:
        conn.execute(queries.ERASE_LOCK, {"key": target.key})
        if target.call_id is not None:
            conn.execute(queries.TOMBSTONE_CALL, {"call_id": target.call_id, "audit_id": audit_id})
        else:
            conn.execute(queries.TOMBSTONE_SESSION, {"session_id": target.session_id, "audit_id": audit_id})
        conn.execute(queries.DELETE_EVENTS, {"call_id": target.call_id, "session_id": target.session_id})
        if target.row_id is not None:
            _erase_row(conn, target.row_id, key)


def _erase_row(conn: Connection, row_id: str, key: bytes) -> None:
    row = conn.execute(queries.SESSION_FOR_ERASURE, {"id": row_id}).fetchone()
    assert row is not None  # locked by find
    customer, metadata, server_messages = row
    conn.execute(
        queries.ERASE_SESSION,
        {
            "id": row_id,
            "customer_number": pseudonym(customer, key) if customer else None,
            "metadata": _json(kept_metadata(metadata)),
            "server_messages": _json(kept_timeline(server_messages)),
        },
    )


def kept_metadata(metadata: Any) -> dict[str, Any] | None:
    """What an erased row keeps of ``metadata`` (``KEPT_METADATA``)."""
    if not isinstance(metadata, dict):
        return None
    return {key: value for key, value in metadata.items() if key in KEPT_METADATA} or None


def kept_timeline(server_messages: Any) -> dict[str, Any] | None:
    """What an erased row keeps of ``server_messages``: its timeline, each entry reduced to ``KEPT_TIMELINE``."""
    if not isinstance(server_messages, dict) or not isinstance(server_messages.get("timeline"), list):
        return None
    timeline = [
        {key: value for key, value in entry.items() if key in KEPT_TIMELINE}
        for entry in server_messages["timeline"]
        if isinstance(entry, dict)
    ]
    return {"timeline": timeline} if timeline else None


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


__all__ = ["KEPT_METADATA", "KEPT_TIMELINE", "Plan", "Target", "customer_numbers", "erase", "find", "recorded_audit_id"]
