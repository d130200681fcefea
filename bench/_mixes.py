"""The event mixes ``bench/worker.py`` drains, made from the recorded fixtures.

- ``long``: copies of the recorded long call (44 events: status and speech updates, final
  transcripts, conversation updates carrying the growing history, one end-of-call report).
- ``small``: the lifecycle events most calls consist of, 12 per call, 2–5 KB each: three
  status updates, eight final transcripts, one end-of-call report (``era_sip_call.jsonl``:
  its eight events, its four finals sent again half a second later, the report without the
  conversation messages it repeats in its artifact).

Each copy gets a call id of its own; the calls' events are interleaved, as a backlog of
concurrent calls arrives.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calls"
LONG_CALL = FIXTURES / "long_call.jsonl"
SMALL_CALL = FIXTURES / "era_sip_call.jsonl"


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def _call_id(body: bytes) -> bytes:
    return str(orjson.loads(body)["message"]["call"]["id"]).encode()


def _small_template() -> list[bytes]:
    lines = _lines(SMALL_CALL)
    bodies: list[dict[str, Any]] = [orjson.loads(line) for line in lines]
    finals = [body for body in bodies if body["message"]["type"] == "transcript"]
    again = []
    for body in finals:
        message = {**body["message"], "timestamp": body["message"]["timestamp"] + 500}
        again.append({**body, "message": message})
    report = bodies[-1]
    artifact = {key: value for key, value in report["message"]["artifact"].items() if key != "messages"}
    report = {**report, "message": {**report["message"], "artifact": artifact}}
    ordered = [*bodies[:-2], *again, bodies[-2], report]  # the ended status and the report last
    return [orjson.dumps(body) for body in ordered]


def _interleave(template: list[bytes], calls: int) -> list[bytes]:
    template_id = _call_id(template[0])
    ids = [str(uuid.uuid4()).encode() for _ in range(calls)]
    per_call = [[line.replace(template_id, call_id) for line in template] for call_id in ids]
    return [per_call[c][i] for i in range(len(template)) for c in range(calls)]


def long_mix(calls: int) -> list[bytes]:
    """``calls`` copies of the recorded long call, interleaved."""
    return _interleave(_lines(LONG_CALL), calls)


def small_mix(calls: int) -> list[bytes]:
    """``calls`` copies of the 12-event small call, interleaved."""
    return _interleave(_small_template(), calls)


MIXES = {"long": long_mix, "small": small_mix}
EVENTS_PER_CALL = {"long": len(_lines(LONG_CALL)), "small": len(_small_template())}
