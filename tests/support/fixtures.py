"""The one way tests reach the Vapi bodies in ``tests/fixtures/`` (generated; see its README).

Bodies come back as the exact bytes on disk: a test that signs or replays them must not
re-serialise. ``parse_body`` is there for tests that need the dict as well.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

FIXTURES_DIR: Final = Path(__file__).resolve().parent.parent / "fixtures"
CALLS_DIR: Final = FIXTURES_DIR / "calls"
EVENTS_DIR: Final = FIXTURES_DIR / "events"
SCHEMA_PATH: Final = FIXTURES_DIR / "vapi-schema" / "server-messages.schema.json"
SCHEMA_URI: Final = "urn:vapi:server-messages"


class Body(NamedTuple):
    """One recorded delivery: ``id`` is ``calls/<file>:<line>`` or ``events/<file>``."""

    id: str
    raw: bytes
    path: Path


def fixture_path(name: str) -> Path:
    """``inbound_booking``, ``inbound_booking.jsonl``, ``calls/…``, ``events/hang.json`` all work."""
    candidates = [FIXTURES_DIR / name]
    if "/" not in name:
        for folder, suffix in ((CALLS_DIR, ".jsonl"), (EVENTS_DIR, ".json")):
            candidates += [folder / name, folder / f"{name}{suffix}"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no fixture {name!r} under {FIXTURES_DIR}")


def iter_bodies(path: str | Path) -> Iterator[bytes]:
    """A ``.json`` is one body, a ``.jsonl`` one body per line, a directory all its files by name."""
    path = Path(path)
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.suffix in (".json", ".jsonl"):
                yield from iter_bodies(child)
    elif path.suffix == ".jsonl":
        # split on b"\n" only: bytes.splitlines() would also split inside a body on \x1c, \x85 ...
        yield from (line for line in path.read_bytes().split(b"\n") if line)
    elif path.suffix == ".json":
        yield path.read_bytes()
    else:
        raise ValueError(f"not a fixture file: {path}")


def load_call(name: str) -> list[bytes]:
    """Every delivery of one call, in the order Vapi sent them, byte for byte."""
    return list(iter_bodies(fixture_path(name if name.endswith(".jsonl") else f"{name}.jsonl")))


def load_event(name: str) -> bytes:
    return fixture_path(name if name.endswith(".json") else f"{name}.json").read_bytes()


def all_calls() -> list[Path]:
    return sorted(CALLS_DIR.glob("*.jsonl"))


def all_events() -> list[Path]:
    return sorted(EVENTS_DIR.glob("*.json"))


def all_bodies() -> list[Body]:
    bodies = []
    for path in all_calls():
        for line, raw in enumerate(iter_bodies(path), start=1):
            bodies.append(Body(f"calls/{path.name}:{line}", raw, path))
    bodies += [Body(f"events/{path.name}", path.read_bytes(), path) for path in all_events()]
    return bodies


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse with the parser the service uses; raises ``orjson.JSONDecodeError`` on bad bytes."""
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise TypeError("a delivery body is a JSON object")
    return body


def message_types_covered() -> frozenset[str]:
    """Every ``message.type`` in the corpus (bodies that do not parse are skipped)."""
    types = set()
    for body in all_bodies():
        try:
            types.add(parse_body(body.raw)["message"]["type"])
        except (orjson.JSONDecodeError, TypeError, KeyError):
            continue
    return frozenset(types)


# -- Vapi's own schema ------------------------------------------------------------------------


def _as_json_schema(node: Any) -> Any:
    """Read the OpenAPI 3.0 schema objects as JSON Schema (2020-12) says Vapi meant them.

    * ``nullable: true`` adds ``null`` to ``type`` (``assistantVersion`` is documented as null).
    * ``enum`` beside ``type: array`` is a generator slip that repeats the items' enum
      (``serverMessages``); an array can never equal a string, so it is dropped.
    * ``oneOf`` is read as ``anyOf``: Vapi's unions are not exclusive. A bot message matches
      ``UserMessage``, ``SystemMessage`` and ``BotMessage`` (``role`` is a plain string), and a
      Deepgram ``model: "nova-3"`` matches both the enum and the free-string branch.
    * ``pattern`` is written as a JavaScript literal (``/^[a-zA-Z0-9_-]{1,64}$/``): the slashes
      and flags go; the two ``\\p{L}`` patterns Python's ``re`` cannot compile are dropped.
    """
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("type") == "array" and "enum" in out and isinstance(out.get("items"), dict):
        del out["enum"]
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    if isinstance(out.get("pattern"), str) and out["pattern"].startswith("/"):
        body = out["pattern"][1 : out["pattern"].rindex("/")]
        try:
            re.compile(body)
        except re.error:
            del out["pattern"]
        else:
            out["pattern"] = body
    return out


@functools.cache
def vapi_schema() -> dict[str, Any]:
    """The copied schema document, adapted as above (cached; do not mutate)."""
    document = orjson.loads(SCHEMA_PATH.read_bytes())
    adapted: dict[str, Any] = _as_json_schema(document)
    return adapted


def message_schema_name(message_type: str) -> str | None:
    """The ``ServerMessage*`` component whose ``type`` enum holds ``message_type``, if any."""
    return _schema_names_by_type().get(message_type)


@functools.cache
def _schema_names_by_type() -> dict[str, str]:
    schemas = vapi_schema()["components"]["schemas"]
    names: dict[str, str] = {}
    for branch in schemas["ServerMessage"]["properties"]["message"]["anyOf"]:
        name = branch["$ref"].rsplit("/", 1)[1]
        for value in schemas[name]["properties"]["type"]["enum"]:
            if value in names:
                raise ValueError(f"{value!r} is claimed by both {names[value]} and {name}")
            names[value] = name
    return names


@functools.cache
def server_message_validator(schema_name: str = "ServerMessage") -> Validator:
    """A compiled validator for ``components.schemas[schema_name]``, built once per process."""
    return _validator(f"/components/schemas/{schema_name}")


@functools.cache
def _validator(pointer: str) -> Validator:
    resource = Resource.from_contents(vapi_schema(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SCHEMA_URI, resource)
    return Draft202012Validator({"$ref": f"{SCHEMA_URI}#{pointer}"}, registry=registry)


# Repeated on every message, identical within a call, and most of the validation time.
_SHARED_PARTS: Final = ("assistant", "call", "phoneNumber", "customer")


def schema_errors(body: dict[str, Any]) -> list[str]:
    """Why ``body`` is not a valid ``ServerMessage`` (empty when it is), one line per error.

    The message is checked against the branch its ``type`` names, which gives readable errors;
    that equals checking ``ServerMessage`` because every type belongs to exactly one branch.
    The parts every message repeats are checked once per distinct value (``properties`` are
    independent of each other, so this is the same check, only faster).
    """
    message = body.get("message")
    if not isinstance(message, dict):
        return ["body has no `message` object"]
    name = message_schema_name(str(message.get("type")))
    if name is None:
        return [f"message.type {message.get('type')!r} is not a ServerMessage type"]
    required = set(vapi_schema()["components"]["schemas"][name].get("required", ()))
    shared = [key for key in _SHARED_PARTS if key in message and key not in required]
    rest = {key: value for key, value in message.items() if key not in shared}
    errors = [_describe("message", error) for error in server_message_validator(name).iter_errors(rest)]
    for key in shared:
        raw = orjson.dumps(message[key], option=orjson.OPT_SORT_KEYS)
        errors += _part_errors(f"/components/schemas/{name}/properties/{key}", f"message.{key}", raw)
    return errors


@functools.lru_cache(maxsize=256)
def _part_errors(pointer: str, where: str, raw: bytes) -> tuple[str, ...]:
    return tuple(_describe(where, error) for error in _validator(pointer).iter_errors(orjson.loads(raw)))


def _describe(where: str, error: ValidationError) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    return f"{where}{path}: {error.message[:300]}"
