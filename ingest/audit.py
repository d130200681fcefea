"""The access log: who read session data or acted on it, through which surface (``data_access_log``).

- ``record(conn, *, action, surface, actor, target_kind=None, target=None, target_count=None,
  reason=None, client_id=None, details=None)`` appends one row on ``conn``, inside whatever
  transaction the caller has open, so a read or an action and its row commit (or roll back)
  together. Reads are recorded after they are made and before anything is shown;
  ``target_count`` is then the rows shown. Actions are recorded before they start (those
  spanning several transactions or Redis in a transaction of their own), so an action that
  cannot be recorded does not run; ``target_count`` is then the items asked for.
- ``Auditor(surface, actor).record(conn, action, target_kind, target, …)``: ``record`` for one
  actor on one surface. ``cli()`` is the ingest command's (the OS user, ``cli_actor()``); the
  ops page has its authenticated user's (``ingest.ops.page.routes``).
- ``call_target(key)``: a call id (a UUID) or a session id, as a target; ``by_ids(kind, ids)``:
  items given by id, as the target fields.
- ``list_entries(conn, *, call=None, actor=None, action=None, since=None, limit=50)``: the
  log, newest first (``ingest audit list``).

Rows hold identifiers, counts, filters and flags only. ``details`` must never carry a
transcript, a summary, a phone number, an e-mail address or a message body; ``reason`` is
the operator's own words.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypedDict

import orjson
import psycopg
from psycopg.rows import dict_row

from ingest import queries
from ingest.mapping.identity import as_uuid
from ingest.vocabulary import AuditAction, AuditActorKind, AuditSurface, AuditTargetKind

Connection = psycopg.Connection[Any]
IDS_KEPT = 100  # ids an entry's details list at most; target_count has the whole number


@dataclass(frozen=True)
class Actor:
    """Who: a name and what kind of name it is."""

    name: str
    kind: AuditActorKind


@dataclass(frozen=True)
class Entry:
    """One row of ``data_access_log``."""

    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    surface: str
    target_kind: str | None
    target: str | None
    target_count: int | None
    reason: str | None
    client_id: str | None
    db_role: str
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (``at`` as ISO 8601)."""
        return {**asdict(self), "at": self.at.isoformat()}


def cli_actor() -> Actor:
    """The OS user running the command (``getpass.getuser()``: the login environment, then the
    password database); ``uid:<n>`` for a user neither knows (a container's arbitrary uid)."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        name = ""
    return Actor(name.strip() or f"uid:{os.getuid()}", AuditActorKind.OS_USER)


def call_target(key: str) -> tuple[AuditTargetKind, str]:
    """A call id (any case) as ``call`` and its canonical text; anything else as a ``session`` id."""
    call_id = as_uuid(key)
    return (AuditTargetKind.CALL, call_id) if call_id else (AuditTargetKind.SESSION, key.strip())


class Targets(TypedDict):
    """The target fields of ``record``, for items given by id."""

    target_kind: AuditTargetKind
    target: str | None
    target_count: int
    details: dict[str, Any]


def by_ids(kind: AuditTargetKind, ids: Sequence[int | str]) -> Targets:
    """Items given by id: the one item itself, or ``bulk`` with their number and (the first ``IDS_KEPT`` of) the ids."""
    unique = list(dict.fromkeys(ids))
    if len(unique) == 1:
        return Targets(target_kind=kind, target=str(unique[0]), target_count=1, details={})
    return Targets(
        target_kind=AuditTargetKind.BULK, target=None, target_count=len(unique), details={"ids": unique[:IDS_KEPT]}
    )


def row(
    *,
    action: AuditAction,
    surface: AuditSurface,
    actor: Actor,
    target_kind: AuditTargetKind | None = None,
    target: str | None = None,
    target_count: int | None = None,
    reason: str | None = None,
    client_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters of ``queries.RECORD_ACCESS`` for one entry.

    A ``reveal`` (a sealed value shown in clear) needs its ``reason``: ``ValueError`` without one.
    """
    reason = (reason.strip() or None) if reason is not None else None
    if action == AuditAction.REVEAL and reason is None:
        raise ValueError("a reveal is recorded with its reason")
    return {
        "actor": actor.name,
        "actor_kind": actor.kind.value,
        "action": AuditAction(action).value,
        "surface": AuditSurface(surface).value,
        "target_kind": AuditTargetKind(target_kind).value if target_kind is not None else None,
        "target": target,
        "target_count": target_count,
        "reason": reason,
        "client_id": client_id,
        "details": orjson.dumps(dict(details or {}), default=str).decode(),
    }


def record(conn: Connection, **entry: Any) -> None:
    """Append one row (``row``'s fields) in ``conn``'s current transaction (autocommit: at once)."""
    conn.execute(queries.RECORD_ACCESS, row(**entry))


async def record_async(conn: psycopg.AsyncConnection[Any], **entry: Any) -> None:
    """``record`` on an async connection (the web process's pool)."""
    await conn.execute(queries.RECORD_ACCESS, row(**entry))


@dataclass(frozen=True)
class Auditor:
    """An actor on a surface, recording what it reads and does: ``cli()`` for the ingest command."""

    surface: AuditSurface
    actor: Actor

    def record(
        self,
        conn: Connection,
        action: AuditAction,
        target_kind: AuditTargetKind | None = None,
        target: str | None = None,
        *,
        target_count: int | None = None,
        reason: str | None = None,
        client_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """``record`` as this actor, on this surface."""
        record(
            conn,
            action=action,
            surface=self.surface,
            actor=self.actor,
            target_kind=target_kind,
            target=target,
            target_count=target_count,
            reason=reason,
            client_id=client_id,
            details=details,
        )


def cli() -> Auditor:
    """The ingest command's auditor: surface ``cli``, the OS user as the actor."""
    return Auditor(AuditSurface.CLI, cli_actor())


def list_entries(
    conn: Connection,
    *,
    call: str | None = None,
    actor: str | None = None,
    action: AuditAction | str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[Entry]:
    """Entries newest first, narrowed to one call (or session) id, one actor, one action, a start time."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    params = {
        "call": call_target(call)[1] if call else None,
        "actor": actor,
        "action": AuditAction(action).value if action is not None else None,
        "since": since,
        "limit": limit,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(queries.ACCESS_ENTRIES, params).fetchall()
    return [Entry(**row) for row in rows]


__all__ = [
    "Actor",
    "Auditor",
    "Entry",
    "Targets",
    "by_ids",
    "call_target",
    "cli",
    "cli_actor",
    "list_entries",
    "record",
]
