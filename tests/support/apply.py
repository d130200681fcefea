"""Applying recorded bodies straight through the worker's code path (no queue)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from ingest.apply import Event, apply_event
from ingest.body import loads_storable, parse_envelope
from ingest.vocabulary import EventState

RECEIVED_AT_MS = 1_790_000_000_000


def apply_bodies(conn: psycopg.Connection[Any], bodies: Iterable[bytes]) -> list[EventState | None]:
    """Each raw body as the endpoint would queue it, then decoded and applied as the worker would."""
    states = []
    for raw in bodies:
        _, queued = parse_envelope(raw)
        states.append(apply_event(conn, Event.from_body(loads_storable(queued), RECEIVED_AT_MS), "NZ"))
    return states
