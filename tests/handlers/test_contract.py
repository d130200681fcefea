"""Every handler × every recorded body of its type: pure, deterministic, indifferent to fields it does not know."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from support.fixtures import all_bodies, parse_body

from ingest.errors import Unmappable
from ingest.handlers import HANDLERS, Context, Handler
from ingest.patch import Patch

CONTEXT = Context(received_at=datetime(2026, 6, 1, 0, 0, tzinfo=UTC), phone_region="NZ")

# A field Vapi might add tomorrow, nested so that a handler copying whole objects would show it.
UNKNOWN: dict[str, Any] = {"xFutureField": {"nested": [1, "two", None], "flag": True}}

# Other spellings of a type the corpus holds: Vapi has written the final-transcript type with
# either quote; both must reach the same handler, and the corpus records one of them.
SPELLINGS = {"transcript[transcriptType='final']": 'transcript[transcriptType="final"]'}


def _messages() -> list[tuple[str, dict[str, Any]]]:
    """(body id, message) for every parseable body whose type has a handler."""
    cases = []
    for body in all_bodies():
        try:
            message = parse_body(body.raw)["message"]
        except orjson.JSONDecodeError:
            continue  # the deliberately unparseable bodies never reach a handler
        if message.get("type") in HANDLERS:
            cases.append((body.id, message))
    return cases


CASES = _messages()


def outcome(handler: Handler, message: dict[str, Any]) -> Patch | str:
    """The handler's patch, or the text of the Unmappable it raises (a permanent, recorded failure)."""
    try:
        return handler(message, CONTEXT)
    except Unmappable as exc:
        return f"Unmappable: {exc}"


def with_unknown_fields(message: dict[str, Any]) -> dict[str, Any]:
    extended = {**copy.deepcopy(message), **copy.deepcopy(UNKNOWN)}
    if isinstance(extended.get("call"), dict):
        extended["call"].update(copy.deepcopy(UNKNOWN))
    return extended


@pytest.mark.parametrize(("body_id", "message"), CASES, ids=[body_id for body_id, _ in CASES])
def test_handler_is_pure_and_deterministic(body_id: str, message: dict[str, Any]) -> None:
    """Called twice on the same body, the handler gives equal patches and leaves the message as it was."""
    handler = HANDLERS[message["type"]]
    before = copy.deepcopy(message)
    first = outcome(handler, message)
    assert message == before, f"{body_id}: the handler changed its message"
    assert outcome(handler, message) == first


@pytest.mark.parametrize(("body_id", "message"), CASES, ids=[body_id for body_id, _ in CASES])
def test_handler_ignores_unknown_fields(body_id: str, message: dict[str, Any]) -> None:
    """An unknown field on the message and on message.call raises nothing and changes nothing in the patch."""
    handler = HANDLERS[message["type"]]
    assert outcome(handler, with_unknown_fields(message)) == outcome(handler, message)


def test_every_handler_meets_a_recorded_body() -> None:
    """Each type in the dispatch table has at least one fixture body (or is another spelling of one that has)."""
    recorded = {message["type"] for _, message in CASES}
    for spelling, recorded_as in SPELLINGS.items():
        assert HANDLERS[spelling] is HANDLERS[recorded_as]
    assert set(HANDLERS) - recorded - set(SPELLINGS) == set()
