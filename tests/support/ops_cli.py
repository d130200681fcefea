"""Seeding call_events the ways the service leaves them, and running `ingest` commands in-process."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ingest import queries
from ingest.apply import record_failure
from ingest.body import loads_storable, parse_envelope
from ingest.event import Event
from ingest.vocabulary import EventState
from support.apply import PRIVACY

RECEIVED_AT_MS = 1_796_083_200_000  # 2026-12-01, as support.apply: after every recorded call


def use_servers(
    monkeypatch: pytest.MonkeyPatch,
    *,
    db_url: str | None = None,
    redis_url: str | None = None,
    namespace: str | None = None,
) -> None:
    """Point ``Settings.from_env()`` (which ``ingest.cli.main`` reads) at the test's servers."""
    for name, value in (("DATABASE_URL", db_url), ("REDIS_URL", redis_url), ("INGEST_REDIS_NAMESPACE", namespace)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")


def event_of(raw: bytes, received_at_ms: int = RECEIVED_AT_MS) -> Event:
    """A recorded body as the worker receives it from the queue."""
    _, queued = parse_envelope(raw)
    return Event.from_body(loads_storable(queued), received_at_ms)


def event_id(conn: psycopg.Connection[Any], event: Event) -> int:
    row = conn.execute(
        "SELECT id FROM call_events WHERE dedupe_key = %s", (event.row(EventState.PENDING, PRIVACY)["dedupe_key"],)
    )
    found = row.fetchone()
    assert found is not None
    return int(found[0])


def store_failed(conn: psycopg.Connection[Any], raw: bytes, error: BaseException, **kw: int) -> int:
    """The event as the worker leaves it when applying raised ``error`` for good."""
    event = event_of(raw, **kw)
    record_failure(conn, event, error, permanent=True, privacy=PRIVACY)
    return event_id(conn, event)


def store_pending(conn: psycopg.Connection[Any], raw: bytes, **kw: int) -> int:
    """The event as the endpoint keeps it while Redis is down."""
    event = event_of(raw, **kw)
    conn.execute(queries.STORE_PENDING_EVENT, event.row(EventState.PENDING, PRIVACY))
    return event_id(conn, event)
