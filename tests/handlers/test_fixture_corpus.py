"""The recorded bodies every other test replays are well-formed, on Vapi's schema, and complete."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from support.fixtures import (
    CALLS_DIR,
    EVENTS_DIR,
    FIXTURES_DIR,
    Body,
    all_bodies,
    all_calls,
    all_events,
    fixture_path,
    iter_bodies,
    load_call,
    load_event,
    message_schema_name,
    message_types_covered,
    parse_body,
    schema_errors,
)

# Every type the service must meet at least once (reference §2, plus the legacy and unknown ones).
REQUIRED_TYPES = frozenset(
    {
        "status-update",
        "end-of-call-report",
        "transcript",
        'transcript[transcriptType="final"]',
        "conversation-update",
        "speech-update",
        "hang",
        "user-interrupted",
        "model-output",
        "tool-calls",
        "function-call",
        "assistant-request",
        "transfer-destination-request",
        "transfer-update",
        "phone-call-control",
        "language-change-detected",
        "language-changed",
        "voice-input",
        "knowledge-base-request",
        "call.deleted",
        "call.delete.failed",
        "call.artifact.upload",
        "session.created",
        "session.updated",
        "session.deleted",
        "chat.created",
        "chat.deleted",
        "handoff-destination-request",
        "assistant.started",
    }
)

# Bodies Vapi does send (or did) that its current schema rejects: body id -> (error fragment, why).
# A call file's id without a line number ("calls/x.jsonl") stands for every body of that file.
# The schema allows extra properties, so extra legacy fields (top-level summary, costBreakdown's
# knowledgeBaseCost ...) are on-schema and need no entry here.
OFF_SCHEMA: dict[str, tuple[str, str]] = {
    "calls/inbound_booking.jsonl:35": (
        "toolCallList[0].function.arguments",
        "tool-call arguments as an object: the schema says string, Vapi's docs and live calls show "
        "objects too (reference §2.2)",
    ),
    "events/function-call.json": (
        "not a ServerMessage type",
        "legacy `function-call` (2024 shape, functionCall.parameters): still in serverMessages, no schema",
    ),
    "events/language-changed.json": (
        "not a ServerMessage type",
        "legacy `language-changed`: still in the serverMessages enum, no schema",
    ),
    "events/assistant-started.json": (
        "not a ServerMessage type",
        "`assistant.started` is in the default serverMessages; only a client-message schema exists",
    ),
    "events/api_call.json": (
        "not a ServerMessage type",
        "not a server message: a Call object read from Vapi's API, wrapped by reconciliation as `api.call`",
    ),
    "events/unknown_type.json": (
        "not a ServerMessage type",
        "a made-up future type: stored and answered 2xx, never a 500",
    ),
    "events/eocr_legacy_only.json": (
        "'artifact' is a required property",
        "2024 report: legacy top-level summary/transcript/recordingUrl/messages, no artifact or analysis",
    ),
    "events/eocr_iso_timestamp.json": (
        "message.timestamp",
        "before 2025-03 `timestamp` was an ISO string (reference §1)",
    ),
    # Era calls (reconstructed from Vapi's schemas and changelog, not captured).
    **{
        f"calls/era_2024_report.jsonl:{line}": (
            "not a ServerMessage type",
            "2024 legacy `function-call` (functionCall.name/parameters, `call` beside `message`, ISO "
            "timestamp): no schema today",
        )
        for line in range(1, 5)
    },
    "calls/era_2024_report.jsonl:5": (
        "'artifact' is a required property",
        "2024 report: ISO `timestamp`, no `artifact`, legacy top-level summary/transcript/recordingUrl/messages, "
        "explicit nulls in `call`",
    ),
    "calls/era_web_call.jsonl": (
        "message.call.customer: None is not of type 'object'",
        "web call whose call object has explicit `customer: null` and `phoneNumber: null` (schema: "
        "objects, not nullable)",
    ),
}

# Bodies the service's parser (orjson) must refuse: a clear 4xx, not a stored event.
UNPARSEABLE: dict[str, str] = {
    "events/invalid_lone_surrogate.json": "a lone surrogate escape (\\ud800); orjson rejects it, json accepts it",
}

# Numeric `timestamp`s are epoch milliseconds in 2026 (the one exception is listed in OFF_SCHEMA).
# Era calls (`calls/era_*`) carry their era's: `era_2024_*` ISO strings in 2024, `era_2025_*` epoch-ms
# numbers in 2025 (integral or fractional), every other `era_*` integral epoch ms in 2026.
EPOCH_MS_2025 = (1_735_689_600_000, 1_767_225_600_000)
EPOCH_MS_2026 = (1_767_225_600_000, 1_798_761_600_000)

BODIES = all_bodies()
PARSEABLE = [body for body in BODIES if body.id not in UNPARSEABLE]


def _ids(bodies: list[Body]) -> list[str]:
    return [body.id for body in bodies]


def _off_schema(body_id: str) -> tuple[str, str] | None:
    """The OFF_SCHEMA entry for a body: its own, or its call file's."""
    return OFF_SCHEMA.get(body_id) or OFF_SCHEMA.get(body_id.partition(":")[0] if body_id.startswith("calls/") else "")


def _message(body: Body) -> dict[str, object]:
    message = parse_body(body.raw)["message"]
    assert isinstance(message, dict)
    return message


@pytest.mark.parametrize("path", all_calls(), ids=lambda path: path.name)
def test_call_file_is_one_compact_body_per_line(path: Path) -> None:
    """A call file is UTF-8 JSON lines ending in a newline, without blank lines or CR."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    assert b"\r" not in raw
    assert b"\n\n" not in raw
    raw.decode("utf-8")
    assert all(line.startswith(b'{"message":{') for line in raw[:-1].split(b"\n"))


@pytest.mark.parametrize("path", all_events(), ids=lambda path: path.name)
def test_event_file_is_one_body_without_trailing_newline(path: Path) -> None:
    """An event file is exactly one compact body and nothing after it."""
    raw = path.read_bytes()
    assert raw.startswith(b'{"message":{')
    assert raw.endswith(b"}")
    assert b"\n" not in raw
    raw.decode("utf-8")


@pytest.mark.parametrize("body", PARSEABLE, ids=_ids(PARSEABLE))
def test_body_parses_and_names_its_type(body: Body) -> None:
    """Every body parses with orjson and carries a non-empty `message.type`."""
    message = _message(body)
    assert isinstance(message.get("type"), str)
    assert message["type"]


@pytest.mark.parametrize("body_id", sorted(UNPARSEABLE))
def test_unparseable_body_is_refused_by_orjson(body_id: str) -> None:
    """The deliberately bad bodies fail in the service's parser (though the stdlib accepts them)."""
    raw = next(body.raw for body in BODIES if body.id == body_id)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    json.loads(raw)


@pytest.mark.parametrize("body", PARSEABLE, ids=_ids(PARSEABLE))
def test_body_matches_vapis_schema(body: Body) -> None:
    """Each body is a valid ServerMessage, or is a listed off-schema case that really is off-schema."""
    errors = schema_errors(parse_body(body.raw))
    entry = _off_schema(body.id)
    if entry is not None:
        fragment, _why = entry
        assert errors, f"{body.id} now validates: remove it from OFF_SCHEMA"
        assert any(fragment in error for error in errors), errors
    else:
        assert errors == [], f"{body.id}: " + "\n".join(errors)


def test_off_schema_and_unparseable_lists_name_real_bodies() -> None:
    """The exception lists point at bodies (or call files) that exist (line numbers move when a call changes)."""
    files = {body.id.partition(":")[0] for body in BODIES if body.id.startswith("calls/")}
    assert (set(OFF_SCHEMA) | set(UNPARSEABLE)) <= set(_ids(BODIES)) | files


def test_each_message_type_has_one_schema_branch() -> None:
    """Both transcript spellings resolve, and legacy types have none."""
    assert message_schema_name("transcript") == "ServerMessageTranscript"
    assert message_schema_name('transcript[transcriptType="final"]') == "ServerMessageTranscript"
    assert message_schema_name("end-of-call-report") == "ServerMessageEndOfCallReport"
    assert message_schema_name("function-call") is None


@pytest.mark.parametrize("path", all_calls(), ids=lambda path: path.name)
def test_call_file_is_one_call_in_send_order(path: Path) -> None:
    """All events of a call file share one `call.id` (or session id) and ascending timestamps.

    A 2024 `function-call` body carries `call` beside `message` instead of inside it.
    """
    bodies = [parse_body(raw) for raw in iter_bodies(path)]
    messages = [body["message"] for body in bodies]
    if any("call" in message or "call" in body for message, body in zip(messages, bodies, strict=True)):
        keys = {(message.get("call") or body["call"])["id"] for message, body in zip(messages, bodies, strict=True)}
    else:
        keys = {(message.get("session") or {}).get("id") or message["chat"]["sessionId"] for message in messages}
    assert len(keys) == 1, keys
    stamps = [message["timestamp"] for message in messages]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("body", PARSEABLE, ids=_ids(PARSEABLE))
def test_timestamp_is_epoch_milliseconds(body: Body) -> None:
    """`timestamp` is a 2026 epoch-ms number, except the documented ISO-string report and the era calls."""
    stamp = _message(body)["timestamp"]
    if body.id == "events/eocr_iso_timestamp.json":
        assert isinstance(stamp, str)
        assert stamp.endswith("Z")
    elif body.id.startswith("calls/era_2024_"):
        assert isinstance(stamp, str)
        assert stamp.startswith("2024-")
        assert stamp.endswith("Z")
    elif body.id.startswith("calls/era_2025_"):
        assert isinstance(stamp, int | float)
        assert not isinstance(stamp, bool)
        assert EPOCH_MS_2025[0] <= stamp < EPOCH_MS_2025[1]
    else:
        assert isinstance(stamp, int)
        assert EPOCH_MS_2026[0] <= stamp < EPOCH_MS_2026[1]


def test_corpus_covers_every_message_type() -> None:
    """Every required message type appears at least once."""
    assert REQUIRED_TYPES - message_types_covered() == set()


def test_loader_returns_exact_bytes() -> None:
    """Names resolve with or without folder and suffix; bytes come back unchanged."""
    path = fixture_path("inbound_booking")
    assert path == CALLS_DIR / "inbound_booking.jsonl"
    assert fixture_path("calls/inbound_booking.jsonl") == path
    assert b"\n".join(load_call("inbound_booking.jsonl")) + b"\n" == path.read_bytes()
    assert load_event("function-call") == (EVENTS_DIR / "function-call.json").read_bytes()
    assert list(iter_bodies(EVENTS_DIR)) == [p.read_bytes() for p in all_events()]
    with pytest.raises(FileNotFoundError):
        fixture_path("no-such-fixture")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES_DIR / "make_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_generator_reproduces_the_corpus() -> None:
    """`make_fixtures.py` rebuilds every generated file byte for byte."""
    files: dict[str, bytes] = _generator().render_all()
    assert {path: (FIXTURES_DIR / path).read_bytes() for path in files} == files
