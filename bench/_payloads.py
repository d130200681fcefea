"""Benchmark bodies built from a recorded call (tests/fixtures/calls/long_call.jsonl).

- ``status``: the call's ``status-update`` (``ended``) with the assistant's full system prompt
  written out where Vapi repeats it (``assistant.model.messages``, ``artifact.messages``,
  ``artifact.messagesOpenAIFormatted``), grown until the body reaches the target size.
- ``report``: the call's ``end-of-call-report`` with the same prompt, and the conversation
  continued turn by turn (times shifted, tool-call ids made unique) in every place a report
  carries it (``messages``, ``artifact.messages``, ``artifact.messagesOpenAIFormatted``, both
  transcripts, turn latencies), with durations and ``endedAt`` kept consistent.

Both are deterministic, valid JSON of the recorded shape, and pass the endpoint's parsing.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "calls" / "long_call.jsonl"

_SUBURBS = [
    ("Mount Maunganui", "Marine Parade"),
    ("Pāpāmoa", "Papamoa Beach Road"),
    ("Tauranga", "Devonport Road"),
    ("Ōtūmoetai", "Bureta Road"),
    ("Bethlehem", "Carmichael Road"),
    ("Welcome Bay", "Welcome Bay Road"),
    ("Matua", "Levers Road"),
    ("Greerton", "Cameron Road"),
]
_POLICIES = """
## Policies you must follow
- Quote rent per week, exactly as listed; never negotiate, discount or promise a lower price.
- Bond is four weeks' rent, lodged with Tenancy Services. A pet bond of up to two weeks' rent
  applies where the landlord accepts pets; say "the landlord will consider" unless the listing
  says pets are allowed.
- Every property meets the Healthy Homes standards (heating, insulation, ventilation, moisture
  and drainage, draught stopping). If asked for the compliance statement, offer to email it.
- Never collect bank details, IRD numbers or driver licence numbers over the phone.
- Applications are made in person at a viewing or online at coastalrealty.example/apply.
- If the caller is an existing tenant with a maintenance issue, take their address and a short
  description and tell them the property manager will call back within one working day; for
  urgent issues (no water, no power, flooding, gas smell, security) give the after-hours line
  07 555 0199 and end the call politely.
- If the caller is upset or asks for a person, offer a call-back from a property manager.

## How to speak
Warm, brief, New Zealand English. One question at a time. Read prices as "nine hundred and
eighty dollars a week". Confirm names by spelling them back and mobile numbers in groups of
three. Use te reo greetings if the caller does (kia ora, mōrena) and close with "ka kite".
"""


def _listing(index: int) -> str:
    suburb, street = _SUBURBS[index % len(_SUBURBS)]
    bedrooms = 2 + index % 3
    price = 620 + (index * 37) % 420
    pets = "pets considered" if index % 2 else "no pets"
    parking = ["single garage", "off-street for two cars", "on-street only", "double garage"][index % 4]
    return (
        f"- {10 + index * 7} {street}, {suburb} (ID {street[:2].upper()}-{10 + index * 7}): {bedrooms} bedrooms, "
        f"{1 + index % 2} bathrooms, {price} dollars a week, available from {1 + index % 28} "
        f"{['July', 'August', 'September'][index % 3]}; {pets}; {parking}; heat pump in the living area.\n"
    )


def system_prompt(base: str, size: int) -> str:
    """The recorded prompt followed by listings and policies, at least ``size`` characters long."""
    text = base + "\n\n## Current listings\n"
    index = 0
    while len(text) + len(_POLICIES) < size:
        text += _listing(index)
        index += 1
    return text + _POLICIES


def _load(kind: str, status: str | None = None) -> dict[str, Any]:
    for line in FIXTURE.read_bytes().splitlines():
        body: dict[str, Any] = orjson.loads(line)
        message = body["message"]
        if message["type"] == kind and (status is None or message.get("status") == status):
            return body
    raise LookupError(f"no {kind} in {FIXTURE}")


def _set_prompt(message: dict[str, Any], prompt: str) -> None:
    message["assistant"]["model"]["messages"][0]["content"] = prompt
    artifact = message["artifact"]
    artifact["messages"][0]["message"] = prompt
    artifact["messagesOpenAIFormatted"][0]["content"] = prompt
    if "messages" in message:  # the report repeats the conversation at the top level
        message["messages"][0]["message"] = prompt


def status_update(target: int) -> bytes:
    body = _load("status-update", "ended")
    message = body["message"]
    base = message["assistant"]["model"]["messages"][0]["content"]
    size = len(base)
    while True:
        _set_prompt(message, system_prompt(base, size))
        data = orjson.dumps(body)
        if len(data) >= target:
            return data
        size += max(64, (target - len(data)) // 3)  # the prompt appears three times


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def end_of_call_report(target: int, prompt_size: int) -> bytes:
    body = _load("end-of-call-report")
    message = body["message"]
    base = message["assistant"]["model"]["messages"][0]["content"]
    _set_prompt(message, system_prompt(base, prompt_size))
    artifact = message["artifact"]
    turns = artifact["messages"][1:]
    openai_turns = artifact["messagesOpenAIFormatted"][1:]
    latencies = list(artifact["performanceMetrics"]["turnLatencies"])
    start_ms = artifact["messages"][0]["time"]
    span_ms = turns[-1].get("endTime", turns[-1]["time"]) - start_ms + 1500
    started = datetime.fromisoformat(message["startedAt"].replace("Z", "+00:00"))
    started_ms = int(started.timestamp() * 1000)
    step = 0
    while len(orjson.dumps(body)) < target:
        cycle, index = divmod(step, len(turns))
        step += 1
        shift = (cycle + 1) * span_ms
        turn, openai = copy.deepcopy(turns[index]), copy.deepcopy(openai_turns[index])
        turn["time"] += shift
        if "endTime" in turn:
            turn["endTime"] += shift
        turn["secondsFromStart"] = round(turn["secondsFromStart"] + shift / 1000, 1)
        for call in turn.get("toolCalls", []) + openai.get("tool_calls", []):
            call["id"] = f"{call['id']}_{cycle + 1}"
        if "toolCallId" in turn:
            turn["toolCallId"] = f"{turn['toolCallId']}_{cycle + 1}"
            openai["tool_call_id"] = turn["toolCallId"]
        artifact["messages"].append(turn)
        message["messages"].append(copy.deepcopy(turn))
        artifact["messagesOpenAIFormatted"].append(openai)
        if turn["role"] in {"bot", "user"}:
            line = f"{'AI' if turn['role'] == 'bot' else 'User'}: {turn['message']}\n"
            artifact["transcript"] += line
            message["transcript"] += line
            if turn["role"] == "bot":
                artifact["performanceMetrics"]["turnLatencies"].append(latencies[index % len(latencies)])
        ended_ms = turn.get("endTime", turn["time"]) + 1200
        duration_ms = ended_ms - started_ms
        message["endedAt"] = _iso(ended_ms)
        message["durationMs"] = duration_ms
        message["durationSeconds"] = round(duration_ms / 1000, 1)
        message["durationMinutes"] = round(duration_ms / 60000, 4)
    return orjson.dumps(body)


def build(status_target: int = 20_000, report_target: int = 200_000) -> dict[str, bytes]:
    """``{"status": ..., "report": ...}``: the two benchmark bodies."""
    status = status_update(status_target)
    prompt = orjson.loads(status)["message"]["assistant"]["model"]["messages"][0]["content"]
    return {"status": status, "report": end_of_call_report(report_target, len(prompt))}


if __name__ == "__main__":
    for name, data in build().items():
        message = orjson.loads(data)["message"]
        print(f"{name}: {len(data)} bytes, type {message['type']}, {len(message['artifact']['messages'])} messages")
