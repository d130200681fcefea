"""Property: any permutation of a call's events, with any duplicates, gives the same row and usage.

The events are a call's webhooks and reconciliation's ``api.call`` Call objects, in any position.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.apply import RECEIVED_AT_MS, apply_bodies
from support.rows import session_rows, usage

from ingest.handlers.api_call import api_call_message
from ingest.mapping.timing import implausible, parse_instant

ASSISTANTS = ("0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a", "7b3e1f20-9c4d-4e8a-b1f2-3a4b5c6d7e8f")
SQUAD = "5d2b8c1e-3f4a-4b6c-9d8e-7f6a5b4c3d2e"
# What message.assistant may say on a call without an assistant id: a squad's members (one
# saved, one inline) or a transient assistant given inline.
MEMBERS = ({"id": ASSISTANTS[1], "name": "Front desk"}, {"name": "Billing"})
TRANSIENT = {"name": "Evening reception", "firstMessage": "Kia ora!"}
REASONS = (
    "customer-ended-call",
    "assistant-ended-call",
    "customer-did-not-answer",
    "voicemail",
    "pipeline-error-openai-llm-failed",
)
WORDS = ("booking", "tomorrow", "invoice", "thanks", "terrible", "great", "refund", "appointment", "sorry", "perfect")


def iso(ms: int) -> str:
    return (
        f"{__import__('datetime').datetime.fromtimestamp(ms / 1000, __import__('datetime').UTC):%Y-%m-%dT%H:%M:%S.%f}"[
            :-3
        ]
        + "Z"
    )


# Each example gets ids of its own (hypothesis replays and shrinks examples against the
# same two databases, so drawn ids would collide with earlier examples' rows).
CALL_ID = "00000000-0000-4000-8000-000000000000"
CLIENT = "client-under-test"


def fresh(events: list[bytes], call_id: str, client: str) -> list[bytes]:
    return [e.replace(CALL_ID.encode(), call_id.encode()).replace(CLIENT.encode(), client.encode()) for e in events]


@st.composite
def call_streams(draw: st.DrawFn) -> tuple[bool, list[bytes]]:
    call_id = CALL_ID
    client = draw(st.sampled_from([None, CLIENT]))
    kind = draw(st.sampled_from(["inboundPhoneCall", "outboundPhoneCall", "webCall"]))
    assistant = draw(st.sampled_from(ASSISTANTS))
    # Who runs the call: a saved assistant (by id), a squad, or a transient inline assistant.
    identity = draw(st.sampled_from(["saved", "squad", "transient"]))
    # What an end-of-call report says of time: its own startedAt/endedAt (today), or, as in
    # 2024, only its messages' times (duration in s or ms), only its timestamp, or nothing.
    report_times = draw(st.sampled_from(["given", "messages", "timestamp", "none"]))
    start = draw(st.integers(1_767_225_600_000, 1_798_761_600_000))  # during 2026
    length = draw(st.integers(5_000, 900_000))
    end = start + length

    def call(with_assistant: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"id": call_id, "orgId": ASSISTANTS[0], "type": kind}
        if with_assistant and identity == "saved":
            body["assistantId"] = assistant
        elif identity == "squad":
            body["squadId"] = SQUAD
        elif with_assistant:
            body["assistant"] = TRANSIENT
        if client:
            body["metadata"] = {"client_id": client}
        if kind != "webCall":
            body["customer"] = {"number": "+64211234567"}
        return body

    def event(message: dict[str, Any]) -> bytes:
        message["call"] = call(draw(st.booleans()) or message["type"] == "end-of-call-report")
        if identity == "squad" and draw(st.booleans()):
            message["assistant"] = draw(st.sampled_from(MEMBERS))
        elif identity == "transient" and draw(st.booleans()):
            message["assistant"] = TRANSIENT
        return orjson.dumps({"message": message})

    events = []
    statuses = draw(st.lists(st.sampled_from(["queued", "ringing", "in-progress", "ended"]), unique=True))
    offsets = {"queued": -3000, "ringing": -1500, "in-progress": 0, "ended": length}
    reason = draw(st.sampled_from(REASONS))
    for status in statuses:
        message: dict[str, Any] = {"type": "status-update", "status": status, "timestamp": start + offsets[status]}
        if status == "ended":
            message["endedReason"] = reason
        events.append(event(message))
    finals = draw(
        st.lists(
            st.tuples(st.sampled_from(["user", "assistant"]), st.lists(st.sampled_from(WORDS), min_size=1, max_size=6)),
            max_size=6,
        )
    )
    for n, (role, words) in enumerate(finals):
        text = " ".join(words).capitalize() + "."
        events.append(
            event(
                {
                    "type": "transcript",
                    "role": role,
                    "transcriptType": "final",
                    "transcript": text,
                    "timestamp": start + 1000 * (n + 1),
                }
            )
        )
    for n in range(draw(st.integers(0, 3))):
        events.append(
            event(
                {
                    "type": "speech-update",
                    "status": "started",
                    "role": "user",
                    "turn": n,
                    "timestamp": start + 700 * n + 1,
                }
            )
        )
    transcript = "".join(f"{'User' if r == 'user' else 'AI'}: {' '.join(w)}\n" for r, w in finals)
    if draw(st.booleans()):
        report: dict[str, Any] = {
            "type": "end-of-call-report",
            "timestamp": end + 4000,
            "endedReason": reason,
            "startedAt": iso(start + draw(st.integers(-500, 500))),
            "endedAt": iso(end + draw(st.integers(-500, 500))),
            "analysis": {"summary": "The caller asked about " + draw(st.sampled_from(WORDS)) + "."},
            "artifact": {"transcript": transcript},
        }
        if report_times != "given":
            del report["startedAt"], report["endedAt"]
        if report_times == "messages":
            report["messages"] = [
                {"role": "system", "message": "prompt", "time": start, "secondsFromStart": 0},
                {
                    "role": "user",
                    "message": "Hello",
                    "time": start + 1200,
                    "secondsFromStart": 1.2,
                    "duration": draw(st.sampled_from([2.5, 2500])),
                },
            ]
        if report_times == "none":
            del report["timestamp"]
        if draw(st.booleans()):
            report["cost"] = draw(st.decimals(0, 5, places=4).map(float))
        if draw(st.booleans()):
            report["durationSeconds"] = length / 1000
        if draw(st.booleans()):
            report["analysis"]["structuredData"] = {
                "sentiment": draw(st.sampled_from(["positive", "negative", "Neutral"])),
                "outcome": "Booked",
                "keywords": ["Booking", "booking", " Tomorrow "],
            }
        events.append(event(report))
    # Reconciliation's Call objects (api.call): a snapshot read while the call was going (its
    # partial cost must not stick), and the ended call as the API returns it, whose times and
    # cost need not equal the report's and which may lack what the report carries.
    if draw(st.booleans()):
        live = {**call(True), "status": "in-progress", "startedAt": iso(start), "updatedAt": iso(start + 2000)}
        events.append(orjson.dumps({"message": api_call_message({**live, "cost": 0.01})}))
    if draw(st.booleans()):
        final: dict[str, Any] = {
            **call(True),
            "status": "ended",
            "endedReason": reason,
            "startedAt": iso(start + draw(st.integers(-500, 500))),
            "endedAt": iso(end + draw(st.integers(-500, 500))),
            "updatedAt": iso(end + draw(st.integers(5_000, 60_000))),
        }
        if draw(st.booleans()):
            final["cost"] = draw(st.decimals(0, 5, places=4).map(float))
        if draw(st.booleans()):
            final["analysis"] = {"summary": "The caller wanted " + draw(st.sampled_from(WORDS)) + "."}
            if draw(st.booleans()):
                final["analysis"]["structuredData"] = {"sentiment": draw(st.sampled_from(["positive", "negative"]))}
        if draw(st.booleans()):
            final["artifact"] = {"transcript": transcript}
        events.append(orjson.dumps({"message": api_call_message(final)}))
    if draw(st.booleans()):
        events.append(event({"type": "call.deleted", "timestamp": end + 86_400_000}))
    if draw(st.booleans()):
        events.append(
            event(
                {
                    "type": "call.artifact.upload",
                    "timestamp": end + 9000,
                    "artifacts": [{"type": "recording-mono", "success": draw(st.booleans())}],
                }
            )
        )
    events.append(event({"type": "hang", "timestamp": start + 2500}))  # always carries identity
    return client is not None, events


def prepare(conn: psycopg.Connection[Any], client: str | None) -> None:
    if client:
        conn.execute(
            "INSERT INTO client_subscriptions (client_id, plan, rate_per_minute) VALUES (%s, 'test', 0.35)", (client,)
        )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(stream=call_streams(), data=st.data())
def test_any_order_with_duplicates_gives_the_same_row_and_usage(
    db: psycopg.Connection[Any],
    db2: psycopg.Connection[Any],
    stream: tuple[bool, list[bytes]],
    data: st.DataObject,
) -> None:
    """Applied as sent, or shuffled with repeats, a generated call ends in identical rows and usage."""
    has_client, template = stream
    call_id = str(uuid.uuid4())
    client = f"client-{call_id[:8]}" if has_client else None
    events = fresh(template, call_id, client or CLIENT)
    shuffled = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    positions = data.draw(st.lists(st.integers(0, len(shuffled)), min_size=len(repeats), max_size=len(repeats)))
    mixed = list(shuffled)
    for position, repeat in zip(positions, repeats, strict=True):
        mixed.insert(position, repeat)

    prepare(db, client)
    prepare(db2, client)
    apply_bodies(db, events)
    apply_bodies(db2, mixed)

    first, second = session_rows(db).get(call_id), session_rows(db2).get(call_id)
    assert first == second
    # An ended Call read from the API is the final word on the end, whatever came before or after it.
    received = parse_instant(RECEIVED_AT_MS)
    assert received is not None
    api_ends = [
        parse_instant(message["call"]["endedAt"])
        for message in (orjson.loads(body)["message"] for body in events)
        if message["type"] == "api.call" and message["call"]["status"] == "ended"
    ]
    if api_ends and api_ends[0] is not None and not implausible(api_ends[0], received):
        assert first is not None
        assert first["metadata"]["provenance"]["ended_at_utc"] == "api"
        assert first["ended_at_utc"] == api_ends[0].isoformat()
    assert [u for u in usage(db) if u[0] == client] == [u for u in usage(db2) if u[0] == client]
