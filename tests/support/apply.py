"""Applying recorded bodies straight through the worker's code path (no queue)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from ingest.apply import apply_event
from ingest.body import loads_storable, parse_envelope
from ingest.event import Event
from ingest.vocabulary import EventState, MessageType
from ingest.web.answers import AnswerSettings, assistant_request, with_answer_recorded
from support.rows import PRIVACY

RECEIVED_AT_MS = 1_796_083_200_000  # 2026-12-01: after every recorded call (a later time is implausible)


# What the test endpoints answer to an assistant-request: era_transient_assistant_request's
# number is routed to its assistant. Live web processes in tests get the same setting.
ASSISTANT_ROUTES = "896cdaa7-1f2b-4ae6-aa07-2eb45fd0e8c7=18003048-2fe5-4a45-9299-d06afbf2ef98"
ANSWER_ENV = {"VAPI_ASSISTANT_ROUTES": ASSISTANT_ROUTES}
ANSWERS = AnswerSettings.from_env(ANSWER_ENV)


def queued_body(raw: bytes) -> bytes:
    """A raw webhook body as the endpoint queues it, with the answer to an assistant-request."""
    message, queued = parse_envelope(raw)
    if message.get("type") == MessageType.ASSISTANT_REQUEST:
        queued = with_answer_recorded(queued, assistant_request(ANSWERS, message))
    return queued


def apply_bodies(conn: psycopg.Connection[Any], bodies: Iterable[bytes]) -> list[EventState | None]:
    """Each raw body as the endpoint would queue it, then decoded and applied as the worker would."""
    states = []
    for raw in bodies:
        event = Event.from_body(loads_storable(queued_body(raw)), RECEIVED_AT_MS)
        states.append(apply_event(conn, event, PRIVACY))
    return states
